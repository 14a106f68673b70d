"""Fit each dubbed line into the time its source line took, without losing words.

The policy is audio.plan_fit's: speak a little faster in place, then borrow
the silence after and before the line, then speak faster up to the cap
(fit.max_speedup), then past it up to fit.hard_max_speedup (flagged); only
then cut. Where the TTS could speak faster natively, Synthesize already did
(tts_rate); what is left here is a small time-stretch. The rate applied,
native and stretched together, is recorded per segment, with the time
borrowed before (lead_s) and after (overflow_s) and any speech cut (cut_s).
"""
from __future__ import annotations

from operators import audio
from operators import paths
from operators import uri as uris
from operators.base import Operator, Resources
from operators.config import FitConfig
from operators.schema import RESULT


def fit_plans(segments: list[dict], duration_s: float, cfg: FitConfig) -> list[audio.FitPlan]:
    """Every source line is a slot, dubbed or not: a dub may not run into another line either way.

    Durations are at the voice's own rate (tts_duration_s x tts_rate), so a line synthesized faster
    natively is planned as the same line: the plan's rate is the whole speed-up."""
    return audio.plan_fit(
        [(s["start_s"], s["end_s"]) for s in segments],
        [s["tts_duration_s"] * (s.get("tts_rate") or 1.0) if s.get("tts_uri") else 0.0 for s in segments],
        duration_s, cfg.max_speedup, cfg.min_gap_s, comfortable_speedup=cfg.comfortable_speedup,
        max_lead_s=cfg.max_lead_s, hard_speedup=cfg.hard_max_speedup)


class FitDuration(Operator):
    name = "fit_duration"
    reads = ("segments.tts_uri", "segments.tts_rate", "segments.start_s", "segments.end_s", "duration_s")
    writes = ("segments.fit_uri", "segments.speech_rate", "segments.placed_start_s",
              "segments.placed_end_s", "segments.overflow_s", "segments.cut_s", "segments.lead_s")
    resources = Resources(num_cpus=1)
    output_schema = RESULT

    def process_row(self, row: dict) -> dict:
        segments = [dict(s) for s in row["segments"]]
        plans = fit_plans(segments, row["duration_s"], self.config.fit)
        for i, (seg, plan) in enumerate(zip(segments, plans)):
            if not seg.get("tts_uri"):
                continue
            with uris.local_copy(seg["tts_uri"]) as path:
                speech, sr = audio.read_wav(path)
            fitted = audio.apply_fit(speech, sr, plan)
            fit_uri = paths.line_audio(self.work_dir, row["video_id"], row["lang"], i, "fit")
            with uris.staged_output(fit_uri) as local:
                audio.write_wav(local, fitted, sr)
            segments[i] = {**seg, "fit_uri": fit_uri, "speech_rate": plan.rate,
                           "placed_start_s": plan.placed_start_s, "placed_end_s": plan.placed_end_s,
                           "overflow_s": plan.overflow_s, "cut_s": plan.cut_s, "lead_s": plan.lead_s}
        return {**row, "segments": segments}
