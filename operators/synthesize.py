"""Speak each segment's target text in the target language.

A line too long for its slot, even at the cap (fit.max_speedup) with the
silence around it, is spoken in a shorter wording where the translation
backend offered one (segments.target_alternatives): the best-ranked that
fits, noted in the line. Then a line that must be faster is spoken again
faster, natively, where the backend can (`speaks_faster`): at the rate the
duration fit's plan will ask of it (operators/fit_duration.py), which sounds
better than time-stretching the line afterwards. The rate is recorded per
segment (tts_rate).
"""
from __future__ import annotations

from operators import paths
from operators.fit_duration import fit_plans
from operators import uri as uris
from operators.backends import load_tts
from operators.base import Operator, Resources, RowError, add_model, require_binary
from operators.schema import RESULT


# Below this speed-up a time-stretch is inaudible and a second synthesis not worth its time.
NATIVE_MIN_RATE = 1.03


class Synthesize(Operator):
    name = "synthesize"
    reads = ("segments.target_text", "segments.target_alternatives", "segments.start_s", "segments.end_s", "lang",
             "duration_s")
    writes = ("segments.tts_uri", "segments.tts_duration_s", "segments.tts_rate", "segments.target_text",
              "segments.target_alternatives", "segments.notes", "voice_cloned")
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
            if seg.get("replacement_audio_uri"):
                tts_uri = paths.line_audio(self.work_dir, row["video_id"], lang, i, "tts")
                segments.append({**seg, "tts_uri": tts_uri, "tts_rate": 1.0,
                                 "tts_duration_s": _recording(seg["replacement_audio_uri"], tts_uri)})
                continue
            if not seg["target_text"]:
                segments.append(seg)
                continue
            tts_uri = paths.line_audio(self.work_dir, row["video_id"], lang, i, "tts")
            segments.append({**seg, "tts_uri": tts_uri, "tts_rate": 1.0,
                             "tts_duration_s": self._speak(seg["target_text"], lang, tts_uri, 1.0)})
        if any(s.get("target_alternatives") for s in segments):
            self._shorten(row, segments)
        if self.config.fit.native_rate and getattr(self.backend, "speaks_faster", lambda _: False)(lang):
            for seg, plan in zip(segments, fit_plans(segments, row["duration_s"], self.config.fit)):
                if seg.get("tts_uri") and not seg.get("replacement_audio_uri") and plan.rate > NATIVE_MIN_RATE:
                    seg["tts_rate"] = plan.rate
                    seg["tts_duration_s"] = self._speak(seg["target_text"], lang, seg["tts_uri"], plan.rate)
        add_model(row, self.name, self.backend.model_info(lang))
        cloned = bool(getattr(self.backend, "clones_voice", lambda _: False)(lang))
        return {**row, "segments": segments, "voice_cloned": cloned}

    def _shorten(self, row: dict, segments: list[dict]) -> None:
        """Lines over the cap take the best-ranked shorter wording that fits; failing that, the one that fits best."""
        fit, lang = self.config.fit, row["lang"]
        plans = fit_plans(segments, row["duration_s"], fit)
        for i, (seg, plan) in enumerate(zip(segments, plans)):
            if not seg.get("target_alternatives") or seg.get("replacement_audio_uri") or _fits(plan, fit.max_speedup):
                continue
            original = seg["target_text"]
            best = None
            for k, text in enumerate(seg["target_alternatives"]):
                if len(text) >= len(original):
                    continue
                uri = paths.line_audio(self.work_dir, row["video_id"], lang, i, "tts", wording=k)
                trial = {**seg, "target_text": text, "tts_uri": uri, "tts_rate": 1.0,
                         "tts_duration_s": self._speak(text, lang, uri, 1.0)}
                trial_plan = fit_plans([*segments[:i], trial, *segments[i + 1:]], row["duration_s"], fit)[i]
                if best is None or (trial_plan.cut_s, trial_plan.rate) < (best[1].cut_s, best[1].rate):
                    best = trial, trial_plan
                if _fits(trial_plan, fit.max_speedup):
                    break
            if best is None or (best[1].cut_s, best[1].rate) >= (plan.cut_s, plan.rate):
                continue
            trial, trial_plan = best
            others = [original, *(t for t in seg["target_alternatives"] if t != trial["target_text"])]
            note = (f"shortened to fit its time: {trial['target_text']!r} instead of {original!r} "
                    f"({plan.rate:.2f}x -> {trial_plan.rate:.2f}x)")
            segments[i] = {**trial, "target_alternatives": others, "notes": [*(seg.get("notes") or []), note]}

    def _speak(self, text: str, lang: str, tts_uri: str, rate: float) -> float:
        with uris.staged_output(tts_uri) as local:
            if rate == 1.0:
                return self.backend.synthesize(text, lang, local)
            return self.backend.synthesize(text, lang, local, rate=rate)


def _fits(plan, cap: float) -> bool:
    return plan.cut_s == 0 and plan.rate <= cap + 1e-6


def _recording(audio_uri: str, tts_uri: str) -> float:
    """A line's new recording (ADR) as the line's speech: mono 16-bit wav at its own rate; its duration."""
    from operators import audio
    from operators.media import MediaError, ffmpeg

    if not uris.exists(audio_uri):
        raise MediaError(f"replaced line's recording not found: {uris.redacted(audio_uri)}")
    with uris.local_copy(audio_uri) as src, uris.staged_output(tts_uri) as local:
        ffmpeg("-i", src, "-map", "0:a:0", "-ac", "1", "-c:a", "pcm_s16le", "-f", "wav", local)
        speech, sr = audio.read_wav(local)
    return len(speech) / sr
