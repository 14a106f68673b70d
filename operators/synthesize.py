"""Speak each segment's target text in the target language."""
from __future__ import annotations

from operators import paths
from operators import uri as uris
from operators.backends import load_tts
from operators.base import Operator, Resources, RowError, add_model, require_binary
from operators.schema import RESULT


class Synthesize(Operator):
    name = "synthesize"
    reads = ("segments.target_text", "lang")
    writes = ("segments.tts_uri", "segments.tts_duration_s", "voice_cloned")
    resources = Resources(num_cpus=1, pool=(1, 2))
    output_schema = RESULT

    def check_dependencies(self) -> None:
        # espeak-ng is the voice of every language without a Piper voice, and Piper phonemizes with its data.
        if self.backend is None and self.config.tts.backend in ("auto", "espeak-ng"):
            require_binary("espeak-ng", "espeak-ng")

    def setup(self) -> None:
        self.backend = self.backend or load_tts(self.config.tts)

    def process_row(self, row: dict) -> dict:
        lang = row["lang"]
        if not self.backend.supports(lang):
            raise RowError(f"no voice for language {lang!r} in the {self.config.tts.backend!r} TTS backend")
        segments = []
        for i, seg in enumerate(row["segments"]):
            if not seg["target_text"]:
                segments.append(seg)
                continue
            tts_uri = paths.line_audio(self.work_dir, row["video_id"], lang, i, "tts")
            with uris.staged_output(tts_uri) as local:
                duration_s = self.backend.synthesize(seg["target_text"], lang, local)
            segments.append({**seg, "tts_uri": tts_uri, "tts_duration_s": duration_s})
        add_model(row, self.name, self.backend.model_info(lang))
        cloned = bool(getattr(self.backend, "clones_voice", lambda _: False)(lang))
        return {**row, "segments": segments, "voice_cloned": cloned}
