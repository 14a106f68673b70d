import pytest

from operators.score import error_rates


def test_identical_text_scores_zero_ignoring_case_and_punctuation():
    assert error_rates(["La casa es roja."], ["la casa es roja"]) == (0.0, 0.0)


def test_a_silent_dub_scores_one():
    assert error_rates(["La casa es roja."], [""]) == (1.0, 1.0)


def test_rates_pool_words_over_segments():
    wer, cer = error_rates(["uno dos tres", "cuatro"], ["uno dos", "cinco"])
    assert wer == pytest.approx(2 / 4)
    assert error_rates(["", "uno"], ["ruido", "uno"]) == (0.0, 0.0)   # nothing to say, nothing wrong


def test_a_language_whisper_does_not_know_is_dubbed_unscored(tmp_path):
    """Esperanto: Apertium en-eo and espeak-ng make the dub; Whisper has no Esperanto, so no WER, no failure."""
    import subprocess

    from operators.backends.whisper import FasterWhisperASR
    from operators.config import Config
    from operators.score import Score

    wav = str(tmp_path / "line.wav")
    subprocess.run(["espeak-ng", "-v", "eo", "-w", wav, "La domo estas ruĝa."], check=True)
    config = Config.from_dict({"score": {"speaker_similarity": False}})
    op = Score(config, str(tmp_path), str(tmp_path), backend=FasterWhisperASR(config.asr))
    op.setup()
    seg = {"segment_id": "v@0-2000", "start_s": 0.0, "end_s": 2.0, "target_text": "La domo estas ruĝa.",
           "fit_uri": wav, "speech_rate": 1.0, "overflow_s": 0.0, "cut_s": 0.0}
    out = op.process_row({"video_id": "v", "lang": "eo", "segments": [seg], "models": []})
    assert (out["wer"], out["cer"], out["segments_dubbed"]) == (None, None, 1)
    assert out["segments"][0]["back_text"] is None
    assert [m["stage"] for m in out["models"]] == []
