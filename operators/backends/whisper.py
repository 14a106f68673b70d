"""ASR with faster-whisper (CTranslate2): English-only model for English, multilingual otherwise."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from operators import languages
from operators.backends.protocols import ModelInfo, SpeechSegment, Transcription, UnsupportedLanguage, Word
from operators.config import ASRConfig

if TYPE_CHECKING:
    from operators.models import ResolvedModel


class FasterWhisperASR:
    """Models resolve through operators.models and load on first use, once each.

    Picklable until the first call: only the config and empty caches are held.
    """

    SAMPLE_RATE_HZ = 16000   # what Whisper and silero VAD take

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
        model = self._model(language)
        segments, _ = model.transcribe(
            audio_path, language=self._whisper_language(language), beam_size=self.config.beam_size,
            word_timestamps=False, vad_filter=False, condition_on_previous_text=False)
        return " ".join(t for t in (s.text.strip() for s in segments) if t)
