"""A translation too long for its slot: spoken faster natively, into the silence around it, never cut
silently (operators/synthesize.py, operators/fit_duration.py, operators/review.py)."""
import shutil

import numpy as np
import pytest

from operators import audio, review
from operators.config import Config
from operators.fit_duration import FitDuration
from operators.schema import OK
from operators.score import Score
from operators.synthesize import Synthesize

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

LONG = "Buenos días a todos, hoy vamos a hablar de la casa roja que está al lado del río grande."


def _dub(tmp_path, segments, duration_s, **fit):
    base = Config()
    config = base.model_copy(update={"fit": base.fit.model_copy(update=fit),
                                     "tts": base.tts.model_copy(update={"backend": "espeak-ng"})})
    row = {"video_id": "v", "lang": "es", "duration_s": duration_s, "status": OK, "segments": [
        {"segment_id": f"v@{i}", "start_s": a, "end_s": b, "target_text": t, "target_alternatives": alts or None}
        for i, (a, b, t, *alts) in enumerate(segments)]}
    work, out = str(tmp_path / "work"), str(tmp_path / "out")
    synthesize = Synthesize(config, work, out)
    synthesize.setup()
    row = synthesize.process_row(row)
    row = FitDuration(config, work, out).process_row(row)
    score = Score(config.model_copy(update={"score": config.score.model_copy(
        update={"back_transcribe": False, "speaker_similarity": False})}), work, out)
    score.setup()
    return score.process_row(row), config


def test_long_line_is_spoken_faster_natively_into_the_pause_and_kept_whole(tmp_path):
    row, config = _dub(tmp_path, [(1.0, 3.0, LONG), (9.0, 9.5, "Sí.")], 10.0)
    line = row["segments"][0]
    natural_s = line["tts_duration_s"] * line["tts_rate"]
    assert natural_s > 2.0 * config.fit.max_speedup                 # far too long for its 2 s slot
    assert line["tts_rate"] > 1.03                                   # the voice itself spoke faster
    assert line["cut_s"] == 0.0 and line["overflow_s"] > 0.0
    assert line["speech_rate"] <= config.fit.max_speedup
    fitted, sr = audio.read_wav(line["fit_uri"])
    assert len(fitted) == round((line["placed_end_s"] - line["placed_start_s"]) * sr)
    assert line["placed_end_s"] <= 9.0 - config.fit.min_gap_s
    assert row["lines_cut"] == 0 and row["cut_s_total"] == 0.0
    assert review.assess(row, config) == []


def test_line_with_no_room_is_cut_only_past_the_hard_limit_and_flagged(tmp_path):
    row, config = _dub(tmp_path, [(0.2, 0.9, "Hola."), (1.0, 2.5, LONG), (2.55, 3.5, "Adiós.")], 4.0)
    line = row["segments"][1]
    assert line["speech_rate"] == config.fit.hard_max_speedup       # as fast as allowed before cutting
    assert line["cut_s"] > 0.5
    assert (line["placed_start_s"], line["placed_end_s"]) == (1.0, 2.5)   # neighbours keep their time
    assert row["lines_cut"] == 1 and row["lines_over_cap"] == 1
    reasons = review.assess(row, config)
    assert any("speech cut off in 1 line(s)" in r for r in reasons), reasons
    assert any("faster than the 1.3x cap" in r for r in reasons), reasons


def test_without_native_rate_the_line_is_time_stretched_to_the_same_plan(tmp_path):
    native, _ = _dub(tmp_path / "a", [(1.0, 3.0, LONG), (9.0, 9.5, "Sí.")], 10.0)
    stretched, _ = _dub(tmp_path / "b", [(1.0, 3.0, LONG), (9.0, 9.5, "Sí.")], 10.0, native_rate=False)
    a, b = native["segments"][0], stretched["segments"][0]
    assert b["tts_rate"] == 1.0 and b["speech_rate"] == pytest.approx(a["speech_rate"], rel=0.05)
    assert b["placed_end_s"] == pytest.approx(a["placed_end_s"], abs=0.2)
    speech, _ = audio.read_wav(b["fit_uri"])
    assert np.abs(speech).max() > 0.05


SHORT = "Hoy hablamos de la casa roja."


def test_a_line_with_no_room_is_spoken_in_a_shorter_wording_that_fits(tmp_path):
    """The translation backend offered other wordings: the best-ranked shorter one that fits is spoken."""
    longer = LONG + " Y también del puente."
    row, config = _dub(tmp_path, [(0.2, 0.9, "Hola."), (1.0, 2.5, LONG, longer, SHORT), (2.55, 3.5, "Adiós.")], 4.0)
    line = row["segments"][1]
    assert line["target_text"] == SHORT
    assert line["target_alternatives"] == [LONG, longer]              # nothing the backend offered is lost
    assert any(n.startswith(f"shortened to fit its time: {SHORT!r} instead of {LONG!r}") for n in line["notes"])
    assert line["cut_s"] == 0.0 and line["speech_rate"] <= config.fit.max_speedup
    assert row["lines_cut"] == 0 and row["lines_over_cap"] == 0
    assert review.assess(row, config) == []


def test_a_line_that_fits_keeps_its_wording(tmp_path):
    row, _ = _dub(tmp_path, [(1.0, 3.0, LONG, SHORT), (9.0, 9.5, "Sí.")], 10.0)
    line = row["segments"][0]
    assert line["target_text"] == LONG and line["target_alternatives"] == [SHORT]
    assert not any("shortened" in n for n in line.get("notes") or [])
