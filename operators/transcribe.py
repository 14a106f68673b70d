"""Speech segments of the source: its own subtitles when the catalog has them, else ASR."""
from __future__ import annotations

from operators import subtitles
from operators.backends import load_asr
from operators.base import Operator, Resources, SkipRow, add_model
from operators.schema import VIDEO, empty_segment, segment_id
from operators import uri as uris


class Transcribe(Operator):
    name = "transcribe"
    reads = ("asr_audio_uri", "source_lang", "source_subtitles_uri")
    writes = ("segments", "source_lang", "detected_lang", "lang_probability")
    resources = Resources(num_cpus=1, pool=(1, 2))
    output_schema = VIDEO

    def setup(self) -> None:
        self.backend = self.backend or load_asr(self.config.asr)

    def process_row(self, row: dict) -> dict:
        vid = row["video_id"]
        if row.get("source_subtitles_uri"):
            cues = subtitles.read_cues(row["source_subtitles_uri"])
            segments = [empty_segment(segment_id=segment_id(vid, c.start_s, c.end_s), start_s=c.start_s,
                                      end_s=c.end_s, source_text=c.text, words=[]) for c in cues]
            lang, prob = row["source_lang"], None
        else:
            with uris.local_copy(row["asr_audio_uri"]) as path:
                t = self.backend.transcribe(path, row.get("source_lang"))
            add_model(row, self.name, self.backend.model_info(row.get("source_lang") or t.language))
            segments = [empty_segment(
                segment_id=segment_id(vid, s.start_s, s.end_s), start_s=s.start_s, end_s=s.end_s,
                source_text=s.text,
                words=[{"start_s": w.start_s, "end_s": w.end_s, "text": w.text, "probability": w.probability}
                       for w in s.words]) for s in t.segments]
            lang, prob = t.language, t.language_probability
        segments = [s for s in segments if s["end_s"] > s["start_s"] and s["source_text"].strip()]
        row = {**row, "segments": segments, "detected_lang": lang, "lang_probability": prob,
               "source_lang": row.get("source_lang") or lang}
        if not segments:
            raise SkipRow("no speech found in the source audio")
        return row
