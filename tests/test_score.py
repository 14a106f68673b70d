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
