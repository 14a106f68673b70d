"""Audio quality scores per (video, language) and per line: duration fit, intelligibility, voice.

Intelligibility is the dub transcribed back (ASR) and compared with the
target text (WER/CER). Voice is the cosine similarity of a voice embedding
of each dubbed line to one of the same line in the source (the speaker who
said it); the result's value is the mean over lines, weighted by length.
"""
from __future__ import annotations

import contextlib
import io
import logging

import jiwer
import numpy as np

from operators import audio
from operators import paths
from operators import uri as uris
from operators.backends import load_asr, load_speaker_encoder
from operators.backends.protocols import ASRBackend, UnsupportedLanguage
from operators.base import Operator, Resources, add_model
from operators.schema import RESULT

log = logging.getLogger(__name__)

VOICE_RATE_HZ = 16000   # what the speaker encoders take (asr_audio_uri is already at this rate)
LINES_PER_PASS = 128    # dubbed lines back-transcribed per batched ASR pass (about 40 Whisper windows)

_NORMALIZE = jiwer.Compose([
    jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip(),
    jiwer.ReduceToListOfListOfWords(),
])
_NORMALIZE_CHARS = jiwer.Compose([
    jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip(),
    jiwer.ReduceToListOfListOfChars(),
])


def error_rates(references: list[str], hypotheses: list[str]) -> tuple[float, float]:
    """(WER, CER) after lower-casing and removing punctuation; an empty hypothesis scores 1.0.

    Pairs whose reference has no words are left out (there is nothing to get wrong).
    """
    pairs = [(r, h) for r, h in zip(references, hypotheses) if _NORMALIZE(r) != [[]]]
    if not pairs:
        return 0.0, 0.0
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    wer = jiwer.wer(refs, hyps, reference_transform=_NORMALIZE, hypothesis_transform=_NORMALIZE)
    cer = jiwer.cer(refs, hyps, reference_transform=_NORMALIZE_CHARS, hypothesis_transform=_NORMALIZE_CHARS)
    return float(wer), float(cer)


def back_transcribe(backend: ASRBackend, audio_paths: list[str], language: str) -> list[str]:
    """Plain text of each clip: in one batched pass where the backend has `transcribe_texts`,
    one `transcribe_text` call per clip otherwise."""
    batched = getattr(backend, "transcribe_texts", None)
    texts = (list(batched(audio_paths, language)) if batched is not None
             else [backend.transcribe_text(p, language) for p in audio_paths])
    if len(texts) != len(audio_paths):
        raise RuntimeError(f"ASR backend returned {len(texts)} texts for {len(audio_paths)} clips")
    return texts


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def weighted_mean(values: list[float | None], weights: list[float]) -> float | None:
    pairs = [(v, w) for v, w in zip(values, weights) if v is not None and w > 0]
    if not pairs:
        return None
    return float(sum(v * w for v, w in pairs) / sum(w for _, w in pairs))


class Score(Operator):
    name = "score"
    reads = ("segments", "lang", "asr_audio_uri")
    writes = ("wer", "cer", "speech_rate_mean", "speech_rate_max", "share_sped_up", "share_at_speed_cap",
              "overflow_s_total", "cut_s_total", "lead_s_total", "lines_over_cap",
              "lines_cut", "speaker_similarity", "segments.back_text", "segments.wer",
              "segments.cer", "segments.speaker_similarity")
    resources = Resources(num_cpus=1, pool=(1, 2))
    output_schema = RESULT

    def setup(self) -> None:
        if self.config.score.back_transcribe:
            self.backend = self.backend or load_asr(self.config.asr)
        self.voices = load_speaker_encoder(self.config.score) if self.config.score.speaker_similarity else None

    def process_row(self, row: dict) -> dict:
        lang = row["lang"]
        segments = [dict(s) for s in row["segments"]]
        dubbed = [s for s in segments if s.get("fit_uri")]
        rates = [s["speech_rate"] for s in dubbed]
        scores = {
            "segments_dubbed": len(dubbed),
            "speech_rate_mean": sum(rates) / len(rates) if rates else None,
            "speech_rate_max": max(rates) if rates else None,
            "share_sped_up": sum(r > 1.0 + 1e-9 for r in rates) / len(rates) if rates else None,
            "share_at_speed_cap": (sum(r >= self.config.fit.max_speedup - 1e-6 for r in rates) / len(rates)
                                   if rates else None),
            "overflow_s_total": sum(s["overflow_s"] for s in dubbed),
            "cut_s_total": sum(s["cut_s"] for s in dubbed),
            "lead_s_total": sum(s.get("lead_s") or 0.0 for s in dubbed),
            "lines_over_cap": sum(r > self.config.fit.max_speedup + 1e-6 for r in rates),
            "lines_cut": sum(s["cut_s"] > 0 for s in dubbed),
        }
        if self.config.score.back_transcribe and dubbed:
            try:
                # Many lines per ASR pass (packed into Whisper's windows), a bounded number at once: a
                # feature's lines need not all be copied out of the work dir together.
                for first in range(0, len(dubbed), LINES_PER_PASS):
                    part = dubbed[first:first + LINES_PER_PASS]
                    with contextlib.ExitStack() as stack:
                        local = [stack.enter_context(uris.local_copy(s["fit_uri"])) for s in part]
                        for s, text in zip(part, back_transcribe(self.backend, local, lang)):
                            s["back_text"] = text
            except UnsupportedLanguage as e:
                # A dub Apertium and espeak-ng can make (eo, an) that Whisper cannot hear: the dub stands,
                # unscored (wer and cer null), rather than failing for want of a judge.
                log.warning("%s -> %s: no back-transcription: %s", row["video_id"], lang, e)
                for s in dubbed:
                    s["back_text"] = s["wer"] = s["cer"] = None
                scores["wer"] = scores["cer"] = None
            else:
                for s in dubbed:
                    s["wer"], s["cer"] = error_rates([s["target_text"]], [s["back_text"]])
                scores["wer"], scores["cer"] = error_rates([s["target_text"] for s in dubbed],
                                                           [s["back_text"] for s in dubbed])
                add_model(row, self.name, self.backend.model_info(lang))
        if self.voices is not None and dubbed and row.get("asr_audio_uri"):
            scores["speaker_similarity"] = self._voice_similarity(row, dubbed)
            add_model(row, self.name, self.voices.model_info())
        return {**row, **scores, "segments": segments}

    def _voice_similarity(self, row: dict, dubbed: list[dict]) -> float | None:
        """Per line: the dub's voice vs the source's in the same line. Sets segments' speaker_similarity."""
        source = self._source_voices(row)
        for s in dubbed:
            with uris.local_copy(s["fit_uri"]) as path:
                dub = self.voices.embed(audio.read_mono(path, VOICE_RATE_HZ))
            original = source.get(s["segment_id"])
            s["speaker_similarity"] = cosine(original, dub) if original is not None and dub is not None else None
        return weighted_mean([s["speaker_similarity"] for s in dubbed],
                             [s["end_s"] - s["start_s"] for s in dubbed])

    def _source_voices(self, row: dict) -> dict[str, np.ndarray | None]:
        """segment_id -> the source voice's embedding in that line (None: too little voice).

        These depend on the video only, not on the language, so they are kept
        in the work folder: the first language of a video computes them, the
        others read them. Two languages scored at once may both compute them;
        the file is written whole either way. The file is named after the
        source track's checksum (fsspec: size and mtime, or the S3 ETag): a
        run extracts the track anew, so a later run never reads stale voices.
        """
        fs, path = uris.filesystem(row["asr_audio_uri"])
        name = f"source_voices.{self.voices.model_info().name}.{fs.checksum(path):x}.npz"
        cache_uri = paths.video_work(self.work_dir, row["video_id"], name)
        known: dict[str, np.ndarray | None] = {}
        if uris.exists(cache_uri):
            with np.load(io.BytesIO(uris.read_bytes(cache_uri))) as data:
                known = {str(k): (None if np.isnan(e).all() else e) for k, e in zip(data["ids"], data["embeddings"])}
        missing = [s for s in row["segments"] if s["segment_id"] not in known]
        if missing:
            # Only the lines' spans are read: a feature's whole track is not held in memory.
            with uris.local_copy(row["asr_audio_uri"]) as path, audio.SpanReader(path, VOICE_RATE_HZ) as source:
                for s in missing:
                    known[s["segment_id"]] = self.voices.embed(source.mono(s["start_s"], s["end_s"]))
            dim = next((len(e) for e in known.values() if e is not None), 0)
            buf = io.BytesIO()
            np.savez(buf, ids=np.array(list(known)),
                     embeddings=np.array([e if e is not None else np.full(dim, np.nan) for e in known.values()]
                                         ).reshape(len(known), dim))
            uris.write_bytes(cache_uri, buf.getvalue())
        return known
