"""The lip-sync math shared by the lip stages: speech envelope, audio features,
the speaker's audio-to-mouth model and the sync score.

Frames are addressed by their times (float seconds), so variable-frame-rate
sources need no special case. Mouth shapes are the 20 lip points (48-67) in
the normalised face frame of `face_geometry`, flattened to 40 numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from operators import face_geometry as geometry

SAMPLE_RATE_HZ = 16000
MEL_HOP_S = 0.01                  # Whisper's log-mel: 10 ms hop, 80 bands
MEL_BANDS_POOLED = 8              # 80 bands averaged in tens: the spectrum's shape (rounding), few weights to fit
ENERGY_WINDOW_S = 0.025
CONTEXT_STEP_S = 0.02
PCA_COMPONENTS = 6
SILENCE_BELOW_PEAK_DB = 35.0      # envelope this far under the loud end of the speech counts as silence
ENVELOPE_FLOOR_DB = -80.0


def speech_envelope_db(audio: np.ndarray, times_s: np.ndarray, window_s: float,
                       sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """RMS level in dBFS of mono `audio` in a window of `window_s` centred on each time."""
    return envelope_db_of(lambda lo, hi: audio[lo:hi], len(audio), times_s, window_s, sample_rate_hz,
                          block_s=float("inf"))


def envelope_db_of(read, n_samples: int, times_s: np.ndarray, window_s: float,
                   sample_rate_hz: int = SAMPLE_RATE_HZ, block_s: float = 60.0) -> np.ndarray:
    """`speech_envelope_db` of a mono track read in pieces, `read(lo, hi)` -> samples [lo, hi): the
    times are taken about `block_s` of audio at a time, so a feature film's track is never held whole."""
    times_s = np.asarray(times_s, dtype=np.float64)
    out = np.full(len(times_s), ENVELOPE_FLOOR_DB)
    half = max(1, int(round(window_s * sample_rate_hz / 2)))
    centres = np.round(times_s * sample_rate_hz).astype(np.int64)
    order = np.argsort(centres, kind="stable")
    ordered = centres[order]
    step = max(1, int(block_s * sample_rate_hz)) if np.isfinite(block_s) else None
    k = 0
    while k < len(order):
        j = len(order) if step is None else max(k + 1, int(np.searchsorted(ordered, ordered[k] + step)))
        lo = int(np.clip(ordered[k] - half, 0, n_samples))
        hi = int(np.clip(ordered[j - 1] + half, lo, n_samples))
        piece = np.asarray(read(lo, hi), dtype=np.float64).reshape(hi - lo, -1).mean(axis=1)
        csum = np.concatenate([[0.0], np.cumsum(piece * piece)])
        a = np.clip(ordered[k:j] - half, lo, hi) - lo
        b = np.clip(ordered[k:j] + half, lo, hi) - lo
        power = (csum[b] - csum[a]) / np.maximum(b - a, 1)
        out[order[k:j]] = np.maximum(10 * np.log10(np.maximum(power, 1e-12)), ENVELOPE_FLOOR_DB)
        k = j
    return out


def within(times_s: np.ndarray, spans_s: list[tuple[float, float]]) -> np.ndarray:
    """True for the times inside any of the (start_s, end_s) spans."""
    out = np.zeros(len(times_s), dtype=bool)
    for a, b in spans_s:
        out |= (times_s >= a) & (times_s < b)
    return out


def frame_window_s(times_s: np.ndarray, fps: float) -> float:
    """One frame's duration: the envelope of a frame is measured over this window."""
    return float(np.median(np.diff(times_s))) if len(times_s) > 1 else 1.0 / fps


def speech_gate(envelope_db: np.ndarray) -> np.ndarray:
    """True where the envelope is speech: within SILENCE_BELOW_PEAK_DB of its 95th percentile."""
    if envelope_db.size == 0:
        return np.zeros(0, dtype=bool)
    loud = np.percentile(envelope_db, 95)
    return envelope_db > loud - SILENCE_BELOW_PEAK_DB


class AudioFeatures:
    """Level and spectral shape of one audio track, sampled around any frame time.

    Per 10 ms: the RMS level in dB (how far a mouth opens follows it most
    closely) and Whisper's log-mel pooled to MEL_BANDS_POOLED bands (vowel
    colour: rounding, spreading). The features of a frame are these at the
    frame's time and at CONTEXT_STEP_S steps up to `context_s` on each side
    (the mouth moves ahead of the sound it makes and after it). With a few
    hundred frames of a speaker to learn from, few features fit best.
    """

    def __init__(self, audio: np.ndarray, context_s: float):
        audio = np.asarray(audio, dtype=np.float32)
        self._compute(lambda lo, hi: audio[lo:hi], len(audio), context_s, block_s=float("inf"))

    @classmethod
    def of_reader(cls, read, n_samples: int, context_s: float, block_s: float = 60.0) -> "AudioFeatures":
        """The same features of a 16 kHz mono track read in pieces (`read(lo, hi)`), about `block_s` at
        a time: Whisper's log-mel of a whole 30-minute track held about 1 GB at once."""
        features = cls.__new__(cls)
        features._compute(read, n_samples, context_s, block_s)
        return features

    def _compute(self, read, n_samples: int, context_s: float, block_s: float) -> None:
        """Whisper's log-mel, a block of frames at a time. Its frames are independent (400-sample
        windows, 160 apart, the track reflected at both ends), so blocks give the whole track's; the
        one whole-track step, the floor 8 below the loudest band, is taken once all blocks are in."""
        from faster_whisper.feature_extractor import FeatureExtractor

        extractor = FeatureExtractor()
        n_fft, hop = extractor.n_fft, extractor.hop_length
        frames = n_samples // hop
        if n_samples <= n_fft:
            # Shorter than one window (numpy pads it by reflecting again and again): Whisper's own.
            audio = np.asarray(read(0, n_samples), np.float32).reshape(n_samples, -1).mean(axis=1)
            log_mel = extractor(audio, padding=0).T
        else:
            window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
            raw = np.empty((frames, extractor.mel_filters.shape[0]), np.float32)
            per_block = max(1, int(block_s / MEL_HOP_S)) if np.isfinite(block_s) else max(frames, 1)
            for t0 in range(0, frames, per_block):
                t1 = min(frames, t0 + per_block)
                piece = _reflected(read, n_samples, t0 * hop - n_fft // 2, (t1 - 1) * hop + n_fft // 2)
                stft = extractor.stft(piece, n_fft, hop, window=window, return_complex=True,
                                      center=False).astype(np.complex64)                  # (201, t1 - t0)
                mel = extractor.mel_filters @ (np.abs(stft) ** 2)
                raw[t0:t1] = np.log10(np.clip(mel, 1e-10, None)).T
            log_mel = (np.maximum(raw, raw.max() - 8.0) + 4.0) / 4.0 if frames else raw
        pooled = log_mel.reshape(len(log_mel), MEL_BANDS_POOLED, -1).mean(axis=2)          # (T, 8)
        level = envelope_db_of(read, n_samples, np.arange(len(log_mel)) * MEL_HOP_S, ENERGY_WINDOW_S,
                               block_s=block_s)
        self.mel = np.column_stack([level, pooled])
        steps = int(round(context_s / CONTEXT_STEP_S))
        self.offsets = np.arange(-steps, steps + 1) * int(round(CONTEXT_STEP_S / MEL_HOP_S))

    def at(self, times_s: np.ndarray) -> np.ndarray:
        """(len(times_s), taps * 20)."""
        index = np.round(np.asarray(times_s) / MEL_HOP_S).astype(np.int64)
        taps = np.clip(index[:, None] + self.offsets[None, :], 0, len(self.mel) - 1)
        return self.mel[taps].reshape(len(index), -1)


def _reflected(read, n_samples: int, lo: int, hi: int) -> np.ndarray:
    """Mono float32 samples [lo, hi) of a track, reflected past its ends as numpy's 'reflect' pad does
    (sample -k is sample k, sample n-1+k is sample n-1-k)."""
    def mono(a: int, b: int) -> np.ndarray:
        return np.asarray(read(a, b), np.float32).reshape(b - a, -1).mean(axis=1) if b > a else np.zeros(0, np.float32)

    parts = []
    if lo < 0:
        parts.append(mono(1, 1 - lo)[::-1])
    parts.append(mono(max(0, lo), min(n_samples, hi)))
    if hi > n_samples:
        parts.append(mono(n_samples - 1 - (hi - n_samples), n_samples - 1)[::-1])
    return np.concatenate(parts).astype(np.float32)


def normalise_per_track(features: np.ndarray, speech: np.ndarray) -> np.ndarray:
    """Per-dimension mean and spread of the track's speech frames removed.

    The source speaker and the dub voice differ in timbre and level; what
    the model should see is how each voice moves around its own average.
    """
    ref = features[speech] if speech.sum() >= 10 else features
    return (features - ref.mean(axis=0)) / (ref.std(axis=0) + 1e-6)


@dataclass
class LipModel:
    """One speaker's mouth: PCA of their lip shapes, and ridge regression from audio onto it."""
    speaker_id: int
    mean_lips: np.ndarray          # (40,)
    components: np.ndarray         # (k, 40)
    weights: np.ndarray            # (d + 1, k), last row the bias
    gain: np.ndarray               # (k,) restores the spread that regression takes out of its predictions
    rest_lips: np.ndarray          # (40,) the speaker's mouth when silent
    heldout_r2: float              # mouth opening, predicted vs measured, on frames held out of the fit
    frames: int

    kind = "speaker"

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Normalised lip points (n, 20, 2) from normalised features (n, d)."""
        coeffs = (np.hstack([features, np.ones((len(features), 1))]) @ self.weights) * self.gain
        return (self.mean_lips + coeffs @ self.components).reshape(-1, 20, 2)

    def shapes(self, features: np.ndarray, envelope_db: np.ndarray) -> np.ndarray:
        return self.predict(features)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}{k}": np.asarray(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> "LipModel | LoudnessMouth":
        if f"{prefix}open_max" in arrays:
            return LoudnessMouth.from_arrays(arrays, prefix)
        values = {k: arrays[f"{prefix}{k}"] for k in cls.__dataclass_fields__}
        for k in ("speaker_id", "frames"):
            values[k] = int(values[k])
        values["heldout_r2"] = float(values["heldout_r2"])
        return cls(**values)


# The speaker-independent mouth: how far the lower inner lip drops at full voice (face units: eye to eye),
# and the share of that the upper lip rises and the corners drop and come in.
LOUDNESS_OPEN_MAX = 0.22
UPPER_SHARE, CORNER_DROP_SHARE, CORNER_IN_SHARE = 0.25, 0.5, 0.15
LOUDNESS_RANGE_DB = 30.0          # the envelope from this far under its loud end (closed) to the loud end (open)
LOWER = [7, 8, 9, 10, 11, 17, 18, 19]          # 55-59 and 65-67 in the 20 lip points
UPPER = [1, 2, 3, 4, 5, 13, 14, 15]            # 49-53 and 61-63
CORNERS = [0, 6, 12, 16]                       # 48, 54, 60, 64


@dataclass
class LoudnessMouth:
    """A speaker-independent mouth for a face with too little footage to learn its own (or a still photo):
    the speaker's own resting lips, opened by the dub's loudness. It moves like a mouth, not like this
    person's mouth: lips open with the voice and close in its pauses."""
    speaker_id: int
    rest_lips: np.ndarray          # (40,) the speaker's mouth when silent, face frame
    open_max: float                # lower-lip drop at full voice, face units
    heldout_r2: float              # opening from the source's loudness vs measured; nan where nothing moved
    frames: int
    kind = "loudness"

    def shapes(self, features: np.ndarray, envelope_db: np.ndarray) -> np.ndarray:
        if envelope_db.size == 0:
            return np.repeat(self.rest_lips.reshape(1, 20, 2), len(features), axis=0)
        return self.open_by(openness(envelope_db))

    def open_by(self, amount: np.ndarray) -> np.ndarray:
        """Lip points (n, 20, 2) for openness 0..1 per frame."""
        rest = self.rest_lips.reshape(20, 2)
        width = float(np.ptp(rest[:12, 0])) or 1.0
        centre_x = float(rest[:12, 0].mean())
        drop = np.asarray(amount, dtype=np.float64)[:, None] * self.open_max
        out = np.repeat(rest[None], len(drop), axis=0)
        out[:, LOWER, 1] += drop
        out[:, UPPER, 1] -= UPPER_SHARE * drop
        out[:, CORNERS, 1] += CORNER_DROP_SHARE * drop
        inward = np.sign(centre_x - rest[CORNERS, 0])[None, :] * CORNER_IN_SHARE * drop * width
        out[:, CORNERS, 0] += inward
        return out

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}{k}": np.asarray(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> "LoudnessMouth":
        return cls(speaker_id=int(arrays[f"{prefix}speaker_id"]), rest_lips=arrays[f"{prefix}rest_lips"],
                   open_max=float(arrays[f"{prefix}open_max"]), heldout_r2=float(arrays[f"{prefix}heldout_r2"]),
                   frames=int(arrays[f"{prefix}frames"]))


def openness(envelope_db: np.ndarray) -> np.ndarray:
    """0 (closed) to 1 (open) per frame from a speech envelope: the loud end of it open."""
    loud = np.percentile(envelope_db, 95)
    return np.clip((envelope_db - (loud - LOUDNESS_RANGE_DB)) / LOUDNESS_RANGE_DB, 0.0, 1.0) ** 1.5


def fit_loudness_mouth(speaker_id: int, lips: np.ndarray, envelope_db: np.ndarray, speech: np.ndarray) -> LoudnessMouth:
    """The speaker-independent mouth placed on this speaker: their resting lips (the most closed mouth of the
    frames there are, one is enough) and, where some frames speak, their own widest opening as full voice."""
    measured = opening_of_lips(lips)
    quiet = lips[~speech] if (~speech).sum() >= 3 else lips[np.argsort(measured)[:max(1, len(lips) // 5)]]
    rest = quiet.reshape(len(quiet), 40).mean(axis=0)
    rest_open = float(opening_of_lips(rest.reshape(20, 2)))
    open_max = LOUDNESS_OPEN_MAX
    if speech.sum() >= 10 and np.ptp(measured[speech]) > 0.02:
        open_max = float(np.clip(np.percentile(measured[speech], 95) - rest_open, 0.08, 0.4))
    model = LoudnessMouth(speaker_id, rest, open_max, float("nan"), len(lips))
    # Nothing is fitted to the frames but the scale, so the R² over all of them is as good as held out.
    if len(lips) >= 10 and np.ptp(measured) > 0.02 and envelope_db.size == len(lips):
        model.heldout_r2 = r2(measured, opening_of_lips(model.open_by(openness(envelope_db))))
    return model


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    xb = np.hstack([x, np.ones((len(x), 1))])
    reg = alpha * np.eye(xb.shape[1])
    reg[-1, -1] = 0.0                               # the bias is not shrunk
    return np.linalg.solve(xb.T @ xb + reg, xb.T @ y)


def opening_of_lips(lips: np.ndarray) -> np.ndarray:
    """Mouth opening of lip points (..., 20, 2) already in face units."""
    return np.mean([np.linalg.norm(lips[..., a - 48, :] - lips[..., b - 48, :], axis=-1)
                    for a, b in geometry.INNER_GAPS], axis=0)


def r2(measured: np.ndarray, predicted: np.ndarray) -> float:
    var = float(np.var(measured))
    return 1.0 - float(np.mean((measured - predicted) ** 2)) / var if var > 0 else 0.0


def fit_lip_model(speaker_id: int, features: np.ndarray, lips: np.ndarray, speech: np.ndarray,
                  alpha: float, folds: int = 5) -> LipModel:
    """Fit on all frames; `heldout_r2` comes from `folds` contiguous blocks, each predicted by a fit without it.

    `features` (n, d) normalised, `lips` (n, 20, 2) in the face frame, `speech` (n,) bool.
    """
    n = len(lips)
    flat = lips.reshape(n, -1)
    mean = flat.mean(axis=0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    components = vt[:PCA_COMPONENTS]
    coeffs = (flat - mean) @ components.T
    rest = flat[~speech].mean(axis=0) if (~speech).sum() >= 3 else flat[np.argmin(opening_of_lips(lips))]

    measured = opening_of_lips(lips)
    predicted = np.empty(n)
    bounds = np.linspace(0, n, folds + 1).astype(int)
    for a, b in zip(bounds[:-1], bounds[1:]):
        train = np.r_[0:a, b:n]
        w = _ridge(features[train], coeffs[train], alpha)
        part = (mean + np.hstack([features[a:b], np.ones((b - a, 1))]) @ w @ components).reshape(-1, 20, 2)
        predicted[a:b] = opening_of_lips(part)
    weights = _ridge(features, coeffs, alpha)
    fitted = np.hstack([features, np.ones((n, 1))]) @ weights
    # A regression predicts the average mouth for a sound and so moves less than the
    # speaker does; scaling each component back to the speaker's own spread keeps
    # the dub's mouth as lively as theirs (capped: never more than twice).
    gain = np.clip(coeffs.std(axis=0) / np.maximum(fitted.std(axis=0), 1e-9), 1.0, 2.0)
    return LipModel(speaker_id=speaker_id, mean_lips=mean, components=components,
                    weights=weights, gain=gain, rest_lips=rest,
                    heldout_r2=r2(measured, predicted), frames=n)


def sync_curve(mouth: np.ndarray, envelope: np.ndarray, max_offset: int) -> np.ndarray:
    """Pearson r of mouth[t + o] against envelope[t] for o in -max_offset..max_offset.

    Positive o: the mouth moves o frames after the sound. Frames with NaN
    (no face measured) are left out of each pair. Offsets with fewer than
    5 pairs, or no variation, give NaN.
    """
    n = len(envelope)
    out = np.full(2 * max_offset + 1, np.nan)
    for i, o in enumerate(range(-max_offset, max_offset + 1)):
        t = np.arange(max(0, -o), min(n, n - o))
        if len(t) < 5:
            continue
        a, b = mouth[t + o], envelope[t]
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 5 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
            continue
        out[i] = float(np.corrcoef(a[ok], b[ok])[0, 1])
    return out


def sync_score(curves: list[np.ndarray], weights: list[float]) -> tuple[int | None, float | None]:
    """(offset_frames, confidence) from per-segment curves: the weighted mean curve's peak and its r."""
    usable = [(c, w) for c, w in zip(curves, weights) if np.isfinite(c).any() and w > 0]
    if not usable:
        return None, None
    stack = np.array([np.nan_to_num(c, nan=0.0) for c, _ in usable])
    w = np.array([w for _, w in usable], dtype=np.float64)
    mean = (stack * w[:, None]).sum(axis=0) / w.sum()
    max_offset = (len(mean) - 1) // 2
    best = int(np.argmax(mean))
    return best - max_offset, float(mean[best])


def mouth_change(landmarks: dict[int, np.ndarray], frame_idx: np.ndarray) -> float | None:
    """Mean frame-to-frame movement of the 20 lip points, in face units, over consecutive frames of `frame_idx`.

    Lips are taken in the face frame, so head motion does not count. A
    renderer that flickers (shapes or fills that jump between frames) moves
    the measured lips more than the source's own mouth does; the manifest's
    `mouth_change_ratio` is this value on the output over this value on the
    source, in the same frames. None with fewer than 2 consecutive pairs.
    """
    wanted = set(int(i) for i in frame_idx)
    pairs = [i for i in sorted(wanted) if i + 1 in wanted and i in landmarks and i + 1 in landmarks]
    if len(pairs) < 2:
        return None
    before = np.array([geometry.lips_in_face_frame(landmarks[i]) for i in pairs])
    after = np.array([geometry.lips_in_face_frame(landmarks[i + 1]) for i in pairs])
    return float(np.linalg.norm(after - before, axis=-1).mean())
