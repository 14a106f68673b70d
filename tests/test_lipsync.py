"""The lip-sync math on constructed input where the right answer is known."""
import numpy as np
import pytest

from operators import face_geometry as geometry
from operators import lipsync
from operators.plan_lips import chunk_bounds, crossfade_chunks, edge_ramp


def test_envelope_is_rms_in_dbfs():
    sr = lipsync.SAMPLE_RATE_HZ
    t = np.arange(sr) / sr
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)                     # RMS 0.5/sqrt(2): -9.03 dBFS
    audio = np.concatenate([tone, np.zeros(sr)])
    env = lipsync.speech_envelope_db(audio, np.array([0.5, 1.5]), 0.04)
    assert env[0] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.05)
    assert env[1] == lipsync.ENVELOPE_FLOOR_DB


@pytest.mark.parametrize("delay", [-4, 0, 3])
def test_sync_curve_finds_a_known_delay(delay):
    rng = np.random.default_rng(0)
    envelope = np.convolve(rng.standard_normal(300), np.ones(4) / 4, mode="same")
    mouth = np.roll(envelope, delay)                              # the mouth moves `delay` frames later
    curve = lipsync.sync_curve(mouth, envelope, 15)
    offset, confidence = lipsync.sync_score([curve], [1.0])
    assert offset == delay
    assert confidence == pytest.approx(1.0, abs=0.05)


def test_sync_score_weights_segments_and_ignores_empty_ones():
    a = np.zeros(31)
    a[15 + 2] = 0.9
    b = np.zeros(31)
    b[15 - 5] = 0.6
    assert lipsync.sync_score([a, b], [3.0, 1.0])[0] == 2
    assert lipsync.sync_score([a, b], [1.0, 3.0])[0] == -5
    assert lipsync.sync_score([np.full(31, np.nan)], [1.0]) == (None, None)


def test_lip_model_learns_a_mouth_that_follows_the_audio():
    """Mouth opening driven by the loudness of a synthetic voice: the model predicts it on held-out frames."""
    sr, fps = lipsync.SAMPLE_RATE_HZ, 25
    rng = np.random.default_rng(1)
    n_frames = 400
    loud = np.clip(np.convolve(rng.random(n_frames), np.ones(5) / 5, mode="same") * 2 - 0.6, 0, 1)
    times = np.arange(n_frames) / fps
    samples = np.arange(int(n_frames / fps * sr)) / sr
    amp = np.interp(samples, times, loud)
    voice = amp * np.sin(2 * np.pi * 150 * samples) * (1 + 0.5 * np.sin(2 * np.pi * 3 * samples))
    features = lipsync.AudioFeatures(voice, context_s=0.04)
    env = lipsync.speech_envelope_db(voice, times, 1 / fps)
    gate = lipsync.speech_gate(env)
    x = lipsync.normalise_per_track(features.at(times), gate)
    closed = np.zeros((20, 2))
    closed[:, 0] = np.linspace(-0.5, 0.5, 20)
    lips = np.repeat(closed[None], n_frames, axis=0)
    lips[:, 17:20, 1] += 0.4 * loud[:, None]                      # inner lower lip (65-67) drops with loudness
    model = lipsync.fit_lip_model(0, x, lips, gate, alpha=10.0)
    assert model.heldout_r2 > 0.6
    predicted = lipsync.opening_of_lips(model.predict(x))
    assert np.corrcoef(predicted, lipsync.opening_of_lips(lips))[0, 1] > 0.8
    restored = lipsync.LipModel.from_arrays(model.to_arrays("t0_"), "t0_")
    np.testing.assert_allclose(restored.predict(x[:5]), model.predict(x[:5]))


def test_face_frame_is_invariant_to_position_scale_and_roll():
    rng = np.random.default_rng(2)
    face = rng.random((68, 2)) * 100
    angle, scale, shift = 0.3, 1.7, np.array([40.0, -12.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = face @ rot.T * scale + shift
    np.testing.assert_allclose(geometry.lips_in_face_frame(moved), geometry.lips_in_face_frame(face), atol=1e-9)
    assert geometry.mouth_opening(moved) == pytest.approx(geometry.mouth_opening(face))
    np.testing.assert_allclose(geometry.lips_in_image(moved, geometry.lips_in_face_frame(face)), moved[48:68])


def test_mouth_box_is_even_and_contains_the_lips():
    lm = np.zeros((68, 2))
    lm[48:68] = np.column_stack([np.linspace(101, 141, 20), np.linspace(201, 221, 20)])
    x0, y0, x1, y1 = geometry.mouth_box(lm)
    assert all(v % 2 == 0 for v in (x0, y0, x1, y1))
    assert x0 < 101 and x1 > 141 and y0 < 201 and y1 > 221


def test_chunks_cover_everything_and_crossfade_without_jumps():
    bounds = chunk_bounds(20, 8, 2)
    assert bounds == [(0, 8), (6, 14), (12, 20)]
    assert chunk_bounds(5, 8, 2) == [(0, 5)]
    values = [np.full(b - a, float(k)) for k, (a, b) in enumerate(bounds)]
    blended = crossfade_chunks(20, bounds, values)
    np.testing.assert_allclose(blended[[0, 5, 8, 11, 14, 19]], [0, 0, 1, 1, 2, 2])
    assert 0 < blended[6] < blended[7] < 1                          # the overlap fades, it does not step
    assert np.abs(np.diff(blended)).max() < 0.5


def test_edge_ramp():
    np.testing.assert_allclose(edge_ramp(8, 3), [0.25, 0.5, 0.75, 1, 1, 0.75, 0.5, 0.25])
    assert edge_ramp(4, 0).tolist() == [1, 1, 1, 1]


def test_mouth_change_is_one_for_the_same_mouth_and_grows_with_flicker():
    rng = np.random.default_rng(5)
    face = rng.random((68, 2)) * 100
    opening = 0.5 + 0.5 * np.sin(np.arange(60) / 4.0)              # a mouth that opens and closes smoothly
    source = {}
    for i, o in enumerate(opening):
        lm = face.copy()
        lm[57:60] += [0.0, 8.0 * o]                                  # lower lip down
        lm[65:68] += [0.0, 8.0 * o]
        source[i] = lm
    frames = np.arange(10, 50)
    # Moved across the picture (head motion) it is still the same mouth: ratio 1.
    panned = {i: lm + [3.0 * i, 0.0] for i, lm in source.items()}
    assert lipsync.mouth_change(panned, frames) / lipsync.mouth_change(source, frames) == pytest.approx(1.0)
    # Every other frame's lips jump by 2 px: a flickering render.
    flicker = {i: lm + (i % 2) * np.r_[np.zeros((48, 2)), np.full((20, 2), 2.0)] for i, lm in source.items()}
    assert lipsync.mouth_change(flicker, frames) / lipsync.mouth_change(source, frames) > 2.0
    assert lipsync.mouth_change(source, np.array([3, 7])) is None    # no consecutive frames


def test_features_and_envelope_read_in_blocks_equal_the_whole_tracks():
    """FitLipModel reads a feature film's 16 kHz track a block at a time: the same numbers as whole."""
    rng = np.random.default_rng(1)
    n = 16000 * 75 + 123                                  # not a whole number of blocks, frames or windows
    level = np.repeat(rng.uniform(0.0, 0.3, n // 1600 + 1), 1600)[:n]
    track = (rng.standard_normal(n) * level).astype(np.float32)

    def read(lo, hi):
        return track[lo:hi, None]                         # (samples, 1), as audio.FileReader gives

    from faster_whisper.feature_extractor import FeatureExtractor

    # The reference is Whisper's own log-mel of the whole track, pooled, beside the level.
    mel = FeatureExtractor()(track, padding=0)
    level = lipsync.speech_envelope_db(track, np.arange(mel.shape[1]) * lipsync.MEL_HOP_S, lipsync.ENERGY_WINDOW_S)
    reference = np.column_stack([level, mel.reshape(lipsync.MEL_BANDS_POOLED, -1, mel.shape[1]).mean(axis=1).T])
    for features in (lipsync.AudioFeatures(track, context_s=0.1),
                     lipsync.AudioFeatures.of_reader(read, n, context_s=0.1, block_s=7.3)):
        assert features.mel.shape == reference.shape
        assert np.abs(features.mel - reference).max() < 1e-4
    times = rng.uniform(-0.5, n / 16000 + 0.5, 3000)      # unsorted, some past either end
    assert np.abs(lipsync.envelope_db_of(read, n, times, 0.04, block_s=3.1)
                  - lipsync.speech_envelope_db(track, times, 0.04)).max() < 1e-4


def _voice_and_mouth(n_frames: int, seed: int = 1):
    sr, fps = lipsync.SAMPLE_RATE_HZ, 25
    rng = np.random.default_rng(seed)
    loud = np.clip(np.convolve(rng.random(n_frames), np.ones(5) / 5, mode="same") * 2 - 0.6, 0, 1)
    times = np.arange(n_frames) / fps
    samples = np.arange(int(n_frames / fps * sr)) / sr
    voice = np.interp(samples, times, loud) * np.sin(2 * np.pi * 150 * samples)
    env = lipsync.speech_envelope_db(voice, times, 1 / fps)
    closed = np.zeros((20, 2))
    closed[:12, 0] = np.cos(np.linspace(0, 2 * np.pi, 12, endpoint=False)) * 0.5      # outer ring
    closed[12:, 0] = np.cos(np.linspace(0, 2 * np.pi, 8, endpoint=False)) * 0.35      # inner ring, shut
    closed[:, 1] = 1.0
    lips = np.repeat(closed[None], n_frames, axis=0)
    lips[:, [7, 8, 9, 17, 18, 19], 1] += 0.3 * loud[:, None]
    return env, lips, loud


def test_a_speaker_with_little_footage_gets_a_mouth_that_opens_with_the_voice():
    """Twenty frames are too few to learn a mouth from; the speaker-independent mouth opens with the dub's
    loudness from the speaker's own resting lips, closes in its pauses, and is scored on the frames there are."""
    env, lips, loud = _voice_and_mouth(20)
    model = lipsync.fit_loudness_mouth(3, lips, env, loud > 0.05)
    assert model.kind == "loudness" and model.frames == 20
    np.testing.assert_allclose(model.rest_lips.reshape(20, 2)[12:, 1], 1.0, atol=0.05)    # shut, from its quiet frames
    dub_env, _, dub_loud = _voice_and_mouth(200, seed=7)
    shapes = model.shapes(np.zeros((200, 4)), dub_env)
    opening = lipsync.opening_of_lips(shapes)
    assert np.corrcoef(opening, dub_loud)[0, 1] > 0.8
    assert opening[dub_loud == 0].max() < 0.05 and opening.max() > 0.15
    restored = lipsync.LipModel.from_arrays(model.to_arrays("s3_"), "s3_")
    np.testing.assert_allclose(restored.shapes(np.zeros((5, 4)), dub_env[:5]), model.shapes(np.zeros((5, 4)), dub_env[:5]))


def test_tight_mode_widens_the_excursions_from_the_resting_mouth():
    from operators.plan_lips import Span, target_shapes

    env, lips, loud = _voice_and_mouth(100)
    model = lipsync.fit_loudness_mouth(0, lips, env, loud > 0.05)
    span = Span(0, np.arange(100), [])
    args = (span, model, np.zeros((100, 4)), env, lips, 50, 8, 0)
    rest = lipsync.opening_of_lips(model.rest_lips.reshape(1, 20, 2))[0]
    natural = lipsync.opening_of_lips(target_shapes(*args)) - rest
    tight = lipsync.opening_of_lips(target_shapes(*args, gain=1.35)) - rest
    speaking = natural > 0.02
    np.testing.assert_allclose(tight[speaking] / natural[speaking], 1.35, rtol=0.02)
