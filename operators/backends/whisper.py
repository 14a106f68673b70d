"""ASR with faster-whisper (CTranslate2): English-only model for English, multilingual otherwise."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from operators import languages
from operators.backends.protocols import ModelInfo, SpeechSegment, Transcription, UnsupportedLanguage, Word
from operators.config import ASRConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

    from operators.models import ResolvedModel


class FasterWhisperASR:
    """Models resolve through operators.models and load on first use, once each.

    Picklable until the first call: only the config and empty caches are held.
    """

    SAMPLE_RATE_HZ = 16000   # what Whisper and silero VAD take
    WINDOW_S = 30            # Whisper's input: shorter audio is padded to this
    # Back-transcription packs clips into windows of at most this much audio. Not the whole 30 s: on 24
    # espeak-ng German lines (2026-11), 30 s windows of about 9 lines each made Whisper skip 5 lines of one
    # and repeat a phrase into others (pooled WER 0.53, per line 0.41); 10 s windows of about 3 lines gave
    # 0.31, at a third of the per-line CPU time.
    PACK_MAX_S = 10.0
    PACK_GAP_S = 1.0         # silence between packed clips: enough for Whisper to hear them as separate lines
    # Speech runs at about 3 words (4-6 tokens) a second: a clip's text is bounded at this many tokens a second.
    CLIP_TOKENS_PER_S = 12
    AUDIBLE_PEAK = 1e-3      # -60 dBFS: a clip this quiet throughout has nothing to transcribe

    def __init__(self, config: ASRConfig | None = None) -> None:
        self.config = config or ASRConfig()
        self._resolved: dict[str, ResolvedModel] = {}
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        # Models, locks and resolved paths belong to the node that made them:
        # a copy sent to another node resolves and loads again there.
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    # --- model choice ------------------------------------------------------------

    def model_name(self, language: str | None) -> str:
        """English-only model for English; the multilingual one for detection and the rest."""
        if language is not None and languages.base(language) == "en":
            return self.config.model_en
        return self.config.model_multilingual

    def _resolve(self, name: str) -> ResolvedModel:
        if name not in self._resolved:
            from operators.models import resolve

            self._resolved[name] = resolve(name)
        return self._resolved[name]

    def model_info(self, language: str | None) -> ModelInfo:
        return self._resolve(self.model_name(language)).info

    def device(self) -> str:
        if self.config.device != "auto":
            return self.config.device
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"

    def _model(self, language: str | None):
        name = self.model_name(language)
        with self._lock:
            if name not in self._models:
                from faster_whisper import WhisperModel

                resolved = self._resolve(name)
                self._models[name] = WhisperModel(
                    str(resolved.path), device=self.device(), compute_type=self.config.compute_type,
                    cpu_threads=self.config.cpu_threads, local_files_only=True)
            return self._models[name]

    @staticmethod
    def _whisper_language(language: str | None) -> str | None:
        if language is None:
            return None
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        code = languages.normalize(language)
        for candidate in (code, languages.base(code), {"nb": "no"}.get(languages.base(code))):
            if candidate in _LANGUAGE_CODES:
                return candidate
        raise UnsupportedLanguage(f"Whisper does not know language {language!r}")

    # --- ASRBackend --------------------------------------------------------------

    def transcribe(self, audio_path: str, language: str | None) -> Transcription:
        """Speech segments with word timestamps; `language=None` detects it (multilingual model)."""
        from faster_whisper.audio import decode_audio

        model = self._model(language)
        # Decoded once here, for both the decoder and the line-split VAD below.
        audio = decode_audio(audio_path, sampling_rate=self.SAMPLE_RATE_HZ)
        segments, info = model.transcribe(
            audio, language=self._whisper_language(language), beam_size=self.config.beam_size,
            word_timestamps=True, vad_filter=self.config.vad)
        out = []
        for seg in segments:   # a generator: decoding happens while iterating
            text = seg.text.strip()
            if not text:
                continue
            words = tuple(Word(start_s=float(w.start), end_s=float(w.end), text=w.word.strip(),
                               probability=float(w.probability))
                          for w in (seg.words or ()) if w.word.strip())
            out.append(SpeechSegment(start_s=float(seg.start), end_s=float(seg.end),
                                     text=text, words=words))
        return Transcription(language=info.language, language_probability=float(info.language_probability),
                             segments=tuple(out), speech_spans=self._speech_spans(audio) if self.config.vad else ())

    def _speech_spans(self, audio) -> tuple[tuple[float, float], ...]:
        """Silero VAD (shipped in faster-whisper) with pauses as short as the line split needs."""
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        rate = self.SAMPLE_RATE_HZ
        options = VadOptions(min_silence_duration_ms=round(self.config.split_pause_s * 1000), speech_pad_ms=50)
        return tuple((t["start"] / rate, t["end"] / rate) for t in get_speech_timestamps(audio, options, rate))

    def transcribe_text(self, audio_path: str, language: str | None) -> str:
        """Plain text of a whole clip, for back-transcription scores.

        No VAD: a dubbed line is all speech, and VAD would cut a quiet first word.
        """
        return self._clip_text(audio_path, language)

    def _clip_text(self, audio, language: str | None) -> str:
        """One clip (a path or 16 kHz samples) decoded alone: one pass at temperature 0, at most
        `CLIP_TOKENS_PER_S` tokens a second of audio. Where Whisper loops on a clip (a phrase repeated
        to its 448-token limit, then again at each fallback temperature), that cost 11 s a clip on 2
        cores (5 of 104 lines of a 5-minute dub: 56 s of the 164 s of back-transcription)."""
        from faster_whisper.audio import decode_audio

        if isinstance(audio, str):
            audio = decode_audio(audio, sampling_rate=self.SAMPLE_RATE_HZ)
        model = self._model(language)
        # (per 30 s window: a longer clip is decoded window by window)
        max_tokens = int(self.CLIP_TOKENS_PER_S * min(len(audio) / self.SAMPLE_RATE_HZ, self.WINDOW_S)) + 16
        segments, _ = model.transcribe(
            audio, language=self._whisper_language(language), beam_size=self.config.beam_size,
            word_timestamps=False, vad_filter=False, condition_on_previous_text=False,
            temperature=0.0, max_new_tokens=max_tokens)
        return " ".join(t for t in (s.text.strip() for s in segments) if t)

    def transcribe_texts(self, audio_paths: Sequence[str], language: str | None) -> list[str]:
        """Plain text of each of many short clips (a dub's lines), in one batched pass.

        Whisper pads every input to a 30 s window, so one call per 2-3 s line
        spends most of its encoder on padding. Here the clips are laid end to
        end with PACK_GAP_S of silence between them, packed into windows of at
        most PACK_MAX_S, and the windows decoded together (BatchedInferencePipeline,
        `asr.batch_size` at a time); each word goes back to the clip whose span
        (gap halves included) holds its midpoint. A clip too long for a window
        alone, or an audible clip that got no word (Whisper skipped it), is
        transcribed by itself, as `transcribe_text` does.

        Not word for word what one call per clip gives: a line decoded after
        others of its window is heard with their context, and there is no
        temperature fallback. On 12 Piper and 12 espeak-ng lines (2026-11),
        11 of 12 English lines came out the same, and the Spanish WER pooled
        over the lines fell from 0.43 to 0.21 (espeak-ng heard in context).
        """
        import numpy as np
        from faster_whisper import BatchedInferencePipeline
        from faster_whisper.audio import decode_audio

        rate = self.SAMPLE_RATE_HZ
        clips = [decode_audio(p, sampling_rate=rate) for p in audio_paths]
        texts = [""] * len(clips)
        half_gap = np.zeros(round(self.PACK_GAP_S * rate / 2), dtype=np.float32)
        window_samples = round(self.PACK_MAX_S * rate)
        # Lay the packable clips end to end, each between two half gaps; a window never splits a clip.
        pieces, spans, windows = [], {}, []       # spans: clip -> (start, end) samples, gap halves included
        at = window_start = 0
        for i, clip in enumerate(clips):
            n = len(clip) + 2 * len(half_gap)
            if n > self.WINDOW_S * rate:
                texts[i] = self._clip_text(clip, language)
                continue
            if at > window_start and at + n - window_start > window_samples:
                windows.append((window_start, at))
                window_start = at
            pieces += [half_gap, clip, half_gap]
            spans[i] = (at, at + n)
            at += n
        if not spans:
            return texts
        windows.append((window_start, at))
        segments, _ = BatchedInferencePipeline(self._model(language)).transcribe(
            np.concatenate(pieces), language=self._whisper_language(language), beam_size=self.config.beam_size,
            word_timestamps=True, vad_filter=False, batch_size=self.config.batch_size,
            clip_timestamps=[{"start": a / rate, "end": b / rate} for a, b in windows])
        order = sorted(spans, key=lambda i: spans[i][0])
        starts = np.array([spans[i][0] for i in order])
        words: dict[int, list[str]] = {i: [] for i in spans}
        for seg in segments:
            # Whisper's own rule for a window without speech (the sequential decoder drops these too).
            if seg.no_speech_prob > 0.6 and seg.avg_logprob < -1.0:
                continue
            for w in seg.words or ():
                k = int(np.searchsorted(starts, (w.start + w.end) / 2 * rate, side="right")) - 1
                words[order[max(k, 0)]].append(w.word)
        for i, ws in words.items():
            texts[i] = "".join(ws).strip()
            if not texts[i] and len(clips[i]) and float(np.abs(clips[i]).max()) > self.AUDIBLE_PEAK:
                texts[i] = self._clip_text(clips[i], language)
        return texts
