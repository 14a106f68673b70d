"""Fit each dubbed line into the time its source line took.

Speed-up is capped (fit.max_speedup); what still does not fit takes the
silence after the line, never the next line's time; the rate applied is
recorded per segment.
"""
from __future__ import annotations

from operators import audio
from operators import paths
from operators import uri as uris
from operators.base import Operator, Resources
from operators.schema import RESULT


class FitDuration(Operator):
    name = "fit_duration"
    reads = ("segments.tts_uri", "segments.start_s", "segments.end_s", "duration_s")
    writes = ("segments.fit_uri", "segments.speech_rate", "segments.placed_start_s",
              "segments.placed_end_s", "segments.overflow_s", "segments.cut_s")
    resources = Resources(num_cpus=1)
    output_schema = RESULT

    def process_row(self, row: dict) -> dict:
        dubbed = [i for i, s in enumerate(row["segments"]) if s.get("tts_uri")]
        segments = [dict(s) for s in row["segments"]]
        # Every source line is a slot, dubbed or not: a dub may not run into the next line either way.
        plans = audio.plan_fit(
            [(s["start_s"], s["end_s"]) for s in segments],
            [s["tts_duration_s"] if s.get("tts_uri") else 0.0 for s in segments],
            row["duration_s"], self.config.fit.max_speedup, self.config.fit.min_gap_s)
        for i in dubbed:
            seg, plan = segments[i], plans[i]
            with uris.local_copy(seg["tts_uri"]) as path:
                speech, sr = audio.read_wav(path)
            fitted = audio.apply_fit(speech, sr, plan)
            fit_uri = paths.line_audio(self.work_dir, row["video_id"], row["lang"], i, "fit")
            with uris.staged_output(fit_uri) as local:
                audio.write_wav(local, fitted, sr)
            segments[i] = {**seg, "fit_uri": fit_uri, "speech_rate": plan.rate,
                           "placed_start_s": plan.placed_start_s, "placed_end_s": plan.placed_end_s,
                           "overflow_s": plan.overflow_s, "cut_s": plan.cut_s}
        return {**row, "segments": segments}
