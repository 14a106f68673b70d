"""operators/audio.py on generated signals: exact plans, measured spectra and loudness."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from operators import audio as A

SR = 16000


def tone(freq_hz: float, duration_s: float, sr: int = SR, amplitude: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = np.arange(round(duration_s * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq_hz * t + phase)).astype(np.float32).reshape(-1, 1)


def band_noise(lo_hz: float, hi_hz: float, n: int, rms: float, seed: int, sr: int = SR) -> np.ndarray:
    sos = butter(6, [lo_hz, hi_hz], btype="bandpass", fs=sr, output="sos")
    x = sosfilt(sos, np.random.default_rng(seed).standard_normal(n))
    return (x * rms / np.sqrt(np.mean(x ** 2))).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x[:, 0] * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sr / len(x))


def db(ratio: float) -> float:
    return 10 * math.log10(ratio)


# ---------------------------------------------------------------- I/O, format

def test_wav_roundtrip_creates_dirs_and_clips(tmp_path):
    stereo = np.stack([tone(440, 0.25)[:, 0] * 0.5, np.full(4000, 1.7, np.float32)], axis=1)
    path = tmp_path / "a" / "b" / "x.wav"
    A.write_wav(path, stereo, SR)
    back, sr = A.read_wav(path)
    assert sr == SR and back.shape == (4000, 2) and back.dtype == np.float32
    np.testing.assert_allclose(back[:, 0], stereo[:, 0], atol=1 / 32768 + 1e-7)
    assert back[:, 1].min() > 0.999  # clipped to full scale, not wrapped to negative


def test_resample_keeps_frequency_and_scales_length():
    x = tone(1000, 1.0, sr=48000)
    y = A.resample(x, 48000, 16000)
    assert y.shape == (16000, 1) and y.dtype == np.float32
    assert peak_hz(y, 16000) == pytest.approx(1000, abs=2)
    assert A.resample(x, 48000, 48000) is x


def test_to_channels():
    mono = tone(300, 0.1)
    stereo = A.to_channels(mono, 2)
    assert stereo.shape == (1600, 2)
    np.testing.assert_array_equal(stereo[:, 0], stereo[:, 1])
    lr = np.stack([np.ones(10), -np.ones(10) * 0.5], axis=1).astype(np.float32)
    np.testing.assert_array_equal(A.to_channels(lr, 1), np.full((10, 1), 0.25, np.float32))
    with pytest.raises(ValueError):
        A.to_channels(np.zeros((10, 2), np.float32), 3)


# ---------------------------------------------------------------- plan_fit

def test_plan_fit_line_that_fits_is_untouched():
    [p] = A.plan_fit([(1.0, 3.0)], [1.5], 10.0, max_speedup=1.3, min_gap_s=0.15)
    assert p == A.FitPlan(rate=1.0, placed_start_s=1.0, placed_end_s=2.5, overflow_s=0.0, cut_s=0.0)


def test_plan_fit_speedup_within_cap_fills_slot_exactly():
    [p] = A.plan_fit([(1.0, 3.0)], [2.4], 10.0, max_speedup=1.3, min_gap_s=0.15)
    assert p == A.FitPlan(rate=1.2, placed_start_s=1.0, placed_end_s=3.0, overflow_s=0.0, cut_s=0.0)


def test_plan_fit_capped_speedup_overflows_into_gap():
    # needs 3.2 / 2.0 = 1.6x; capped at 1.3x -> 3.2 / 1.3 = 2.4615... s, past the slot end by 0.4615... s
    plans = A.plan_fit([(0.0, 2.0), (4.0, 5.0)], [3.2, 0.5], 10.0, max_speedup=1.3, min_gap_s=0.15)
    assert plans[0].rate == 1.3
    assert plans[0].placed_start_s == 0.0
    assert plans[0].placed_end_s == pytest.approx(3.2 / 1.3, abs=1e-12)
    assert plans[0].overflow_s == pytest.approx(3.2 / 1.3 - 2.0, abs=1e-12)
    assert plans[0].cut_s == 0.0
    assert plans[1] == A.FitPlan(1.0, 4.0, 4.5, 0.0, 0.0)


def test_plan_fit_line_past_the_slot_starts_exactly_at_its_start():
    # (0.236 + 3.7414.../1.3) - 3.7414.../1.3 is 0.23600000000000002 in floating point: a hair late
    [p] = A.plan_fit([(0.236, 2.793)], [3.7414543922208425], 10.0, max_speedup=1.3, min_gap_s=0.15)
    assert p.rate == 1.3 and p.placed_start_s == 0.236 and p.lead_s == 0.0


def test_plan_fit_next_line_too_close_cuts():
    plans = A.plan_fit([(0.0, 2.0), (2.3, 3.0)], [3.2, 0.7], 10.0, max_speedup=1.3, min_gap_s=0.15)
    p = plans[0]
    assert p.rate == 1.3
    assert p.placed_end_s == pytest.approx(2.15, abs=1e-12)
    assert p.placed_end_s <= 2.3 - 0.15
    assert p.overflow_s == pytest.approx(0.15, abs=1e-12)
    assert p.cut_s == pytest.approx(3.2 / 1.3 - 2.15, abs=1e-12)
    assert p.cut_s > 0
    assert plans[1] == A.FitPlan(1.0, 2.3, 3.0, 0.0, 0.0)


def test_plan_fit_gap_shorter_than_min_gap_keeps_own_slot():
    [p, _] = A.plan_fit([(0.0, 2.0), (2.1, 3.0)], [3.2, 0.5], 10.0, max_speedup=1.3, min_gap_s=0.15)
    assert (p.placed_end_s, p.overflow_s) == (2.0, 0.0)
    assert p.cut_s == pytest.approx(3.2 / 1.3 - 2.0, abs=1e-12)


def test_plan_fit_last_line_limited_by_video_end():
    # needs 3.0 / 1.5 = 2x; at 1.25x it lasts 2.4 s -> would end at 10.4 s in a 10 s video
    [p] = A.plan_fit([(8.0, 9.5)], [3.0], 10.0, max_speedup=1.25, min_gap_s=0.15)
    assert p.rate == 1.25
    assert p.placed_end_s == 10.0
    assert p.overflow_s == 0.5
    assert p.cut_s == pytest.approx(0.4, abs=1e-12)


def test_plan_fit_rejects_bad_input():
    with pytest.raises(ValueError):
        A.plan_fit([(0.0, 2.0)], [1.0, 2.0], 10.0, 1.3, 0.15)
    with pytest.raises(ValueError):
        A.plan_fit([(0.0, 2.0), (1.5, 3.0)], [1.0, 1.0], 10.0, 1.3, 0.15)


# ---------------------------------------------------------------- stretch, apply_fit, place

def test_time_stretch_keeps_pitch_and_shortens():
    x = tone(440, 2.0, sr=48000, amplitude=0.5)
    y = A.time_stretch(x, 48000, 1.25)
    assert abs(len(y) - len(x) / 1.25) <= 0.010 * 48000
    assert len(y) == round(len(x) / 1.25)  # trimmed/padded to the exact length
    assert peak_hz(y, 48000) == pytest.approx(440, abs=5)
    assert np.sqrt(np.mean(y[4800:-4800] ** 2)) == pytest.approx(0.5 / math.sqrt(2), rel=0.1)


def test_time_stretch_rate_one_is_identity_and_stereo_works():
    x = np.concatenate([tone(440, 0.5), tone(660, 0.5)], axis=1)
    assert A.time_stretch(x, SR, 1.0) is x
    y = A.time_stretch(x, SR, 2.5)  # chained atempo stages
    assert y.shape == (round(8000 / 2.5), 2)
    assert peak_hz(y[:, :1], SR) == pytest.approx(440, abs=10)
    assert peak_hz(y[:, 1:], SR) == pytest.approx(660, abs=10)


def test_apply_fit_cut_line_has_planned_length_and_fades_out():
    speech = tone(300, 3.2, amplitude=0.5)
    [plan, _] = A.plan_fit([(0.0, 2.0), (2.3, 3.0)], [3.2, 0.7], 10.0, max_speedup=1.3, min_gap_s=0.15)
    out = A.apply_fit(speech, SR, plan)
    assert out.shape == (round(2.15 * SR), 1)
    assert np.abs(out[-3:]).max() < 0.01                       # faded to silence
    assert np.abs(out[-int(0.1 * SR):-int(0.04 * SR)]).max() > 0.4  # before the fade, full level
    fitted = A.apply_fit(speech[:round(2.4 * SR)], SR, A.FitPlan(1.2, 1.0, 3.0, 0.0, 0.0))
    assert fitted.shape == (2 * SR, 1)
    assert np.abs(fitted[-int(0.05 * SR):]).max() > 0.4            # not cut: no fade


def test_place_sums_segments_and_cuts_at_end():
    a = np.ones((100, 1), np.float32)
    b = np.full((100, 2), 0.5, np.float32)
    track = A.place([(0.01, a), (0.015, b), (0.095, a)], 1000, 10000, 2)
    assert track.shape == (1000, 2)
    assert track[99, 0] == 0.0 and track[100, 0] == 1.0 and track[150, 1] == 1.5
    assert track[250, 0] == 0.0 and track[949, 0] == 0.0 and track[999, 1] == 1.0


# ---------------------------------------------------------------- mask, background

def test_speech_mask_values():
    m = A.speech_mask([(0.4, 0.6)], 1000, 1000, fade_s=0.1)
    assert m.shape == (1000,) and m.dtype == np.float32
    assert m[400] == 1.0 and m[500] == 1.0 and m[600] == 1.0
    assert m[350] == pytest.approx(0.5, abs=1e-6) and m[650] == pytest.approx(0.5, abs=1e-6)
    assert m[375] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)), abs=1e-6)
    assert m[:301].max() == 0.0 and m[700:].max() == 0.0
    # ramps of close spans meet: the larger weight wins
    m2 = A.speech_mask([(0.1, 0.2), (0.3, 0.4)], 1000, 1000, fade_s=0.1)
    assert m2[250] == pytest.approx(0.5, abs=1e-6) and m2[220] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2)), abs=1e-6)
    hard = A.speech_mask([(0.4, 0.6)], 1000, 1000, fade_s=0.0)
    assert hard.sum() == 201 and hard[399] == 0.0


def _bed_and_speech(duration_s=4.0, span=(1.5, 2.5)):
    n = round(duration_s * SR)
    bed = tone(250, duration_s, amplitude=0.1)[:, 0] + 0.002 * np.random.default_rng(1).standard_normal(n)
    speech = np.zeros(n, np.float32)
    lo, hi = round(span[0] * SR), round(span[1] * SR)
    speech[lo:hi] = band_noise(1000, 3000, hi - lo, rms=0.2, seed=2)
    return bed.astype(np.float32)[:, None], speech[:, None]


def _band_db(x, lo_hz, hi_hz):
    spectrum = np.abs(np.fft.rfft(x[:, 0] * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return 10 * np.log10(spectrum[(f >= lo_hz) & (f <= hi_hz)].sum())


def test_background_spectral_removes_speech_keeps_bed():
    bed, speech = _bed_and_speech()
    source = bed + speech
    span, fade = (1.5, 2.5), 0.08
    out = A.background_estimate(source, SR, [span], "spectral", duck_db=-18.0, fade_s=fade)
    assert out.shape == source.shape and out.dtype == np.float32
    inside = slice(round(1.55 * SR), round(2.45 * SR))
    speech_drop = _band_db(source[inside], 1000, 3000) - _band_db(out[inside], 1000, 3000)
    bed_change = _band_db(out[inside], 230, 270) - _band_db(source[inside], 230, 270)
    assert speech_drop >= 15.0, speech_drop
    assert abs(bed_change) <= 3.0, bed_change
    before, after = round((span[0] - fade) * SR), round((span[1] + fade) * SR) + 1
    np.testing.assert_array_equal(out[:before], source[:before])
    np.testing.assert_array_equal(out[after:], source[after:])


def test_background_duck_lowers_by_duck_db_and_leaves_outside_exact():
    source = tone(250, 3.0, amplitude=0.3)
    out = A.background_estimate(source, SR, [(1.0, 2.0)], "duck", duck_db=-18.0, fade_s=0.08)
    inside = slice(round(1.0 * SR), round(2.0 * SR))
    change = db(np.mean(out[inside] ** 2) / np.mean(source[inside] ** 2))
    assert change == pytest.approx(-18.0, abs=0.5)
    np.testing.assert_array_equal(out[:round(0.92 * SR)], source[:round(0.92 * SR)])
    np.testing.assert_array_equal(out[round(2.08 * SR) + 1:], source[round(2.08 * SR) + 1:])


def test_background_spectral_falls_back_to_duck_without_enough_background():
    bed, speech = _bed_and_speech(duration_s=2.0, span=(0.1, 1.9))
    source = bed + speech
    spans = [(0.1, 1.9)]  # 0.2 s of non-speech in all: too little for a profile
    spectral = A.background_estimate(source, SR, spans, "spectral", duck_db=-18.0, fade_s=0.02)
    ducked = A.background_estimate(source, SR, spans, "duck", duck_db=-18.0, fade_s=0.02)
    np.testing.assert_array_equal(spectral, ducked)
    assert np.array_equal(A.background_estimate(source, SR, [], "spectral", -18.0, 0.08), source)


# ---------------------------------------------------------------- loudness, peak

def test_integrated_lufs_known_value_and_undefined_cases():
    # BS.1770: a full-scale 1 kHz sine in one channel reads -3.01 LUFS
    assert A.integrated_lufs(tone(1000, 3.0, sr=48000), 48000) == pytest.approx(-3.01, abs=0.1)
    assert A.integrated_lufs(np.zeros((48000, 2), np.float32), 48000) == float("-inf")
    assert A.integrated_lufs(tone(1000, 0.3, sr=48000), 48000) == float("-inf")  # shorter than a 400 ms block


def test_loudness_match_gain_brings_quiet_to_reference():
    sr = 48000
    reference = tone(1000, 3.0, sr=sr, amplitude=0.5) + 0.05 * band_noise(200, 4000, 3 * sr, 1.0, seed=3, sr=sr)[:, None]
    quiet = band_noise(300, 3000, 3 * sr, rms=0.01, seed=4, sr=sr)[:, None]
    gain = A.loudness_match_gain_db(quiet, reference, sr)
    assert gain > 20
    matched = A.apply_gain_db(quiet, gain)
    assert A.integrated_lufs(matched, sr) == pytest.approx(A.integrated_lufs(reference, sr), abs=0.5)
    assert A.loudness_match_gain_db(quiet, np.zeros_like(quiet), sr) == 0.0
    np.testing.assert_allclose(A.apply_gain_db(np.full((4, 1), 0.5, np.float32), -6.0206), 0.25, rtol=1e-4)


def test_true_peak_sees_intersample_peaks():
    sr = 48000
    assert A.true_peak_dbfs(tone(997, 1.0, sr=sr), sr) == pytest.approx(0.0, abs=0.5)
    # fs/4 at 45 degrees: every sample is at +-0.707 (-3 dB) but the wave peaks at 1.0
    # (faded in and out: an abrupt start is a real step whose ringing would overshoot)
    quarter = tone(sr / 4, 1.0, sr=sr, phase=math.pi / 4)
    ramp = np.sin(np.linspace(0, np.pi / 2, 480, dtype=np.float32)) ** 2
    quarter[:480, 0] *= ramp
    quarter[-480:, 0] *= ramp[::-1]
    assert 20 * math.log10(np.abs(quarter).max()) == pytest.approx(-3.01, abs=0.01)
    assert A.true_peak_dbfs(quarter, sr) == pytest.approx(0.0, abs=0.1)
    assert A.true_peak_dbfs(np.zeros((100, 1), np.float32), sr) == float("-inf")


def test_limit_peak_brings_hot_track_under_ceiling():
    sr = 48000
    hot = tone(997, 1.0, sr=sr, amplitude=10 ** (3 / 20))
    limited, gain_db = A.limit_peak(hot, sr, ceiling_dbfs=-1.0)
    assert A.true_peak_dbfs(limited, sr) <= -1.0
    assert gain_db == pytest.approx(-4.0, abs=0.1)
    quiet = tone(997, 0.5, sr=sr, amplitude=0.5)
    same, gain0 = A.limit_peak(quiet, sr)
    assert gain0 == 0.0 and same is quiet


def test_loudness_meter_fed_in_pieces_equals_pyloudnorm_on_the_whole():
    import pyloudnorm

    rng = np.random.default_rng(0)
    for sr, channels, seconds in [(48000, 2, 6.3), (16000, 1, 3.0), (44100, 5, 4.0), (48000, 1, 0.45)]:
        n = round(seconds * sr)
        x = (rng.standard_normal((n, channels)) * np.linspace(0.01, 0.3, n)[:, None]).astype(np.float32)
        x[n // 3:n // 2] = 0.0                                   # a silence, gated out
        meter = A.LoudnessMeter(sr)
        for lo in range(0, n, 12345):
            meter.add(x[lo:lo + 12345])
        reference = pyloudnorm.Meter(sr).integrated_loudness(x.astype(np.float64))
        assert meter.lufs() == pytest.approx(reference, abs=0.01)
    assert A.LoudnessMeter(SR).add(np.zeros((SR, 1))).lufs() == float("-inf")


def speech_over_bed(seconds: float, sr: int, spans: list[tuple[float, float]]) -> np.ndarray:
    n = round(seconds * sr)
    x = np.stack([band_noise(200, 3000, n, 0.05, seed=1, sr=sr), band_noise(200, 3000, n, 0.05, seed=2, sr=sr)], 1)
    for a, b in spans:
        lo, hi = round(a * sr), round(b * sr)
        x[lo:hi] += tone(180, (hi - lo) / sr, sr=sr, amplitude=0.4)
    return x


@pytest.mark.parametrize("mode", ["spectral", "duck"])
def test_background_block_by_block_equals_the_whole_track_at_once(mode):
    """The mix cleans a feature's audio in 30 s blocks; here 1.3 s blocks, with spans across block edges
    and one long span over several blocks: the same samples as one pass over the whole track."""
    sr = 16000
    spans = [(0.2, 1.1), (1.25, 1.5), (2.4, 6.9), (8.0, 8.3)]
    x = speech_over_bed(10.0, sr, spans)
    whole = A.background_estimate(x, sr, spans, mode, -18.0, 0.08)
    background = A.Background(A.array_reader(x), len(x), sr, spans, mode, -18.0, 0.08)
    pieces = np.concatenate([background.block(lo, hi) for lo, hi in A.blocks(len(x), sr, 1.3)])
    assert pieces.shape == whole.shape
    assert np.max(np.abs(pieces - whole)) < 1e-5
    assert np.max(np.abs(whole - x)) > 0.1                    # and the speech was taken out


def test_true_peak_of_a_file_read_in_ranges_equals_the_array(tmp_path):
    sr = 48000
    x = np.concatenate([tone(997, 3.0, sr=sr, amplitude=0.3), tone(sr / 4, 0.1, sr=sr, amplitude=0.7, phase=np.pi / 4)])
    A.write_wav(tmp_path / "x.wav", x, sr)
    with A.FileReader(tmp_path / "x.wav") as reader:
        from_file = A.true_peak_of(reader, reader.n_samples, sr)
    assert from_file == pytest.approx(A.true_peak_dbfs(A.read_wav(tmp_path / "x.wav")[0], sr), abs=1e-6)
    # a quarter-rate tone at 45 degrees: samples at 0.7 sin(pi/4) = 0.49, the wave itself peaks at 0.7
    assert from_file == pytest.approx(20 * math.log10(0.7), abs=0.3)


# ---------------------------------------------------------------- plan_fit: no speech cut

POLICY = dict(max_speedup=1.3, min_gap_s=0.15, comfortable_speedup=1.1, max_lead_s=0.3, hard_speedup=1.5)


def test_plan_fit_small_speedup_stays_in_place():
    [p] = A.plan_fit([(1.0, 3.0)], [2.1], 10.0, **POLICY)
    assert (p.placed_start_s, p.placed_end_s, p.lead_s, p.overflow_s) == (1.0, 3.0, 0.0, 0.0)
    assert p.rate == pytest.approx(1.05)


def test_plan_fit_borrows_silence_after_before_speeding_up_more():
    # needs 1.5x in its slot; at 1.1x it lasts 2.727 s and the pause after holds it
    plans = A.plan_fit([(1.0, 3.0), (5.0, 6.0)], [3.0, 0.5], 10.0, **POLICY)
    p = plans[0]
    assert p.rate == pytest.approx(1.1) and p.placed_start_s == 1.0 and p.lead_s == 0.0
    assert p.placed_end_s == pytest.approx(1.0 + 3.0 / 1.1) and p.cut_s == 0.0


def test_plan_fit_borrows_silence_before_when_after_is_taken():
    # next line 0.15 s after: nothing after; the line starts up to 0.3 s early (the previous line ended at 0.2 s)
    plans = A.plan_fit([(0.0, 0.2), (1.0, 3.0), (3.15, 4.0)], [0.2, 2.5, 0.8], 10.0, **POLICY)
    p = plans[1]
    assert p.placed_end_s == 3.0 and p.overflow_s == 0.0
    assert p.placed_start_s == pytest.approx(3.0 - 2.5 / 1.1) and p.lead_s == pytest.approx(1.0 - p.placed_start_s)
    assert p.rate == pytest.approx(1.1) and p.cut_s == 0.0
    assert p.placed_start_s >= plans[0].placed_end_s + 0.15


def test_plan_fit_never_starts_over_the_previous_line():
    plans = A.plan_fit([(0.0, 0.9), (1.0, 3.0), (3.0, 4.0)], [0.9, 2.6, 1.0], 10.0, **POLICY)
    assert plans[1].placed_start_s == 1.0 and plans[1].lead_s == 0.0         # 0.1 s gap < min_gap: no lead
    assert plans[1].rate == pytest.approx(1.3) and plans[1].cut_s == 0.0


def test_plan_fit_over_the_cap_before_any_cut_then_cut_at_the_hard_limit():
    [over] = A.plan_fit([(0.0, 2.0)], [2.8], 2.0, **POLICY)                # room 2.0 s, needs 1.4x
    assert over.rate == pytest.approx(1.4) and over.cut_s == 0.0
    [cut] = A.plan_fit([(0.0, 2.0)], [3.4], 2.0, **POLICY)                 # needs 1.7x: 1.5x and a cut
    assert cut.rate == 1.5 and cut.cut_s == pytest.approx(3.4 / 1.5 - 2.0)


def test_apply_fit_stretches_only_what_native_rate_left():
    # synthesized natively at 1.25x already: 2.0 s of audio for a 2.0 s span is not stretched at all
    speech = tone(300, 2.0, amplitude=0.5)
    plan = A.FitPlan(1.25, 1.0, 3.0, 0.0, 0.0)
    out = A.apply_fit(speech, SR, plan)
    assert out.shape == (2 * SR, 1)
    np.testing.assert_array_equal(out[:, 0], speech.reshape(-1))
