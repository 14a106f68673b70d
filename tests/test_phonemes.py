"""The phoneme aligner behind lips.mode "tight": where the lips close in a dub."""
import numpy as np
import pytest

from operators import lipsync, phonemes
from operators.plan_lips import Span, closed_lips, closure_weights, target_shapes

TEXT = "Mi mamá bebe poco en Bogotá, pero ambos comen pan."


def _bilabials(spans):
    return [(a, b) for a, b, name in spans if name.rstrip(":;#-'") in phonemes.BILABIALS]


def test_espeak_reports_the_bilabials_of_a_spanish_line():
    speech, spans = phonemes.phoneme_spans(TEXT, "es")
    assert speech.size / phonemes.ALIGN_RATE_HZ == pytest.approx(spans[-1][1], abs=0.3)
    names = [name for _, _, name in spans]
    # m-i m-a-m-a b-e-B-e p-o-k-o ...: the /b/ between vowels is a fricative (B), not a closure.
    assert names[:6] == ["m", "i", "m", "a", "m", "a"]
    assert "B" in names
    assert len(_bilabials(spans)) == 12


def test_closures_are_found_in_a_faster_take_with_silence_before_it():
    """The dub is the same line spoken 37% faster, 0.25 s into its clip: its own phoneme events are the truth."""
    fast, spans = phonemes.phoneme_spans(TEXT, "es", words_per_min=240)
    lead = 0.25
    dub = np.concatenate([np.zeros(int(lead * 16000), np.float32), fast, np.zeros(3000, np.float32)])
    truth = np.array(_bilabials(spans)) + lead
    found = np.array(phonemes.bilabial_spans(TEXT, "es", dub))
    assert found.shape == truth.shape
    assert np.abs(found - truth).max() <= 0.03


def test_no_aligner_for_a_language_espeak_cannot_speak():
    assert phonemes.bilabial_spans("kia ora", "xx", np.zeros(16000, np.float32)) is None
    assert phonemes.bilabial_spans("sin labios", "es", np.zeros(16000, np.float32)) == []


def test_closed_lips_meet_and_keep_their_thickness():
    rng = np.random.default_rng(1)
    lips = np.zeros((1, 20, 2))
    lips[0, :, 0] = np.linspace(-1, 1, 20)
    lips[0, [1, 2, 3, 4, 5], 1] = -0.3      # outer upper
    lips[0, [7, 8, 9, 10, 11], 1] = 0.35    # outer lower
    lips[0, [13, 14, 15], 1] = -0.1         # inner upper
    lips[0, [17, 18, 19], 1] = 0.15         # inner lower
    lips += rng.normal(0, 0.005, lips.shape)
    shut = closed_lips(lips, np.array([1.0]))
    assert lipsync.opening_of_lips(shut)[0] < 0.01 < lipsync.opening_of_lips(lips)[0]
    upper_thickness = lips[0, 2:5, 1].mean() - lips[0, 13:16, 1].mean()
    assert shut[0, 2:5, 1].mean() - shut[0, 13:16, 1].mean() == pytest.approx(upper_thickness, abs=0.02)
    np.testing.assert_allclose(shut[0, [0, 6, 12, 16]], lips[0, [0, 6, 12, 16]])      # the corners stay
    half = closed_lips(lips, np.array([0.5]))
    assert lipsync.opening_of_lips(half)[0] == pytest.approx(lipsync.opening_of_lips(lips)[0] / 2, rel=0.05)


def test_tight_shapes_shut_the_mouth_on_the_closure_frames_only():
    rng = np.random.default_rng(0)
    n = 50
    t = np.arange(n) / 25
    env = np.where((t > 0.2) & (t < 1.8), -20.0 + 5 * np.sin(t * 20), -70.0)
    opening = np.clip((env + 40) / 30, 0, 1)
    lips = np.zeros((n, 20, 2))
    lips[:, :, 0] = np.linspace(-1, 1, 20)
    lips[:, [13, 14, 15], 1] = -0.05 - 0.1 * opening[:, None]
    lips[:, [17, 18, 19], 1] = 0.05 + 0.1 * opening[:, None]
    lips += rng.normal(0, 0.002, lips.shape)
    model = lipsync.fit_loudness_mouth(0, lips, env, env > -50)
    closures = [(0.62, 0.70), (1.21, 1.27), (1.64, 1.66)]
    w = closure_weights(t, closures, 1 / 25)
    # Frames (± 20 ms) covered by at least half a closure, the 20 ms one widened to a frame, are shut.
    assert set(np.flatnonzero(w > 0.999)) == {16, 17, 31, 41}
    assert w[30] == pytest.approx(0.5) and w[32] == pytest.approx(0.5) and w[42] == pytest.approx(0.5)
    assert w[15] == pytest.approx(0, abs=1e-9)
    args = (Span(0, np.arange(n), []), model, np.zeros((n, 4)), env, lips, 50, 8, 0)
    plain = lipsync.opening_of_lips(target_shapes(*args, gain=1.35))
    shut = lipsync.opening_of_lips(target_shapes(*args, gain=1.35, closure=w))
    assert shut[[16, 17, 31, 41]].max() < 0.01 < plain[[16, 17, 31, 41]].min()
    untouched = w == 0
    np.testing.assert_allclose(shut[untouched], plain[untouched])
