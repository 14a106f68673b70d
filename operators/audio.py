"""Audio primitives for the fit-duration and mix stages.

Pure functions on numpy arrays and local wav files: no Ray, no rows. Audio is
float32 shaped (n_samples, n_channels); times are float seconds. Libraries do
the signal work (soundfile, scipy.signal, pyloudnorm, ffmpeg atempo); what is
written here is the glue none of them provides: the duration-fit plan, the
speech mask and the background estimate under the dub.

scipy.signal and pyloudnorm are imported where used, so importing this module
stays cheap for operators that only read or write wavs.
"""
from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

# Fade applied where a line that still does not fit is cut off: long enough to
# avoid a click, short enough not to swallow the last syllable.
CUT_FADE_S = 0.030

# BS.1770 integrated loudness is defined over 400 ms gating blocks.
LOUDNESS_BLOCK_S = 0.400

# The spectral background needs this much speech-free audio to learn a
# profile from; with less, its median is noise and ducking is safer.
PROFILE_MIN_S = 0.5
# Inside speech each bin is limited to this multiple of the background's
# median magnitude. 1.0, not more: over a broadband bed (noise, ambience) a
# cap of 2x (+6 dB) let the speech's rise and fall within those 6 dB through,
# and Whisper still read the whole original line out of the "background". At
# 1.0 the bed's own peaks above its median are trimmed too, so it dips ~3 dB
# under a line over noise (measured on the demo), where the dub covers it.
PROFILE_HEADROOM = 1.0
# Enough frames for a stable median; beyond this, frames are sampled evenly
# over the whole track so memory stays flat for feature-length audio.
PROFILE_MAX_FRAMES = 4000


def _as_2d(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        return audio.reshape(-1, 1)
    if audio.ndim != 2:
        raise ValueError(f"audio must be shaped (n_samples, n_channels), got shape {audio.shape}")
    return audio


def _fit_length(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """Trim or zero-pad at the end to exactly n_samples."""
    if len(audio) >= n_samples:
        return audio[:n_samples]
    pad = np.zeros((n_samples - len(audio), audio.shape[1]), dtype=audio.dtype)
    return np.concatenate([audio, pad])


# ---------------------------------------------------------------- I/O, format

def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A local audio file as float32 (n_samples, n_channels) and its sample rate."""
    audio, sample_rate_hz = sf.read(str(path), dtype="float32", always_2d=True)
    return audio, int(sample_rate_hz)


def read_mono(path: str | Path, sample_rate_hz: int) -> np.ndarray:
    """A local audio file as float32 mono (n_samples,) at `sample_rate_hz` (channels averaged, resampled)."""
    samples, hz = read_wav(path)
    return resample(to_channels(samples, 1), hz, sample_rate_hz)[:, 0]


class SpanReader:
    """Spans of a local audio file as float32 mono at `sample_rate_hz`, read by seeking (not the whole file).

    `mono(start_s, end_s)` is `read_mono(path, rate)[round(start_s * rate):round(end_s * rate)]` where the
    file is at `rate` already; otherwise the span is read at the file's rate and resampled.
    """

    def __init__(self, path: str | Path, sample_rate_hz: int) -> None:
        self.rate = int(sample_rate_hz)
        self._file = sf.SoundFile(str(path))

    def __enter__(self) -> "SpanReader":
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def mono(self, start_s: float, end_s: float) -> np.ndarray:
        f = self._file
        first = min(max(0, round(start_s * f.samplerate)), f.frames)
        last = min(max(first, round(end_s * f.samplerate)), f.frames)
        f.seek(first)
        samples = f.read(last - first, dtype="float32", always_2d=True)
        return resample(to_channels(samples, 1), f.samplerate, self.rate)[:, 0]


def write_wav(path: str | Path, audio: np.ndarray, sample_rate_hz: int, tags: dict[str, str] | None = None) -> None:
    """Write 16-bit PCM, creating parent folders; `tags` go to the INFO chunk ('comment': ICMT, 'software': ISFT).

    Samples are clipped to [-1, 1] first: libsndfile's float->int conversion
    otherwise wraps out-of-range values around into loud clicks.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.clip(_as_2d(audio), -1.0, 1.0)
    with sf.SoundFile(str(path), "w", int(sample_rate_hz), samples.shape[1], subtype="PCM_16") as f:
        for key, value in (tags or {}).items():
            setattr(f, key, value)        # libsndfile writes strings only if set before the samples
        f.write(samples)


def resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly) along time."""
    audio = _as_2d(audio)
    if int(from_hz) == int(to_hz):
        return audio
    from scipy.signal import resample_poly

    g = math.gcd(int(from_hz), int(to_hz))
    return resample_poly(audio, int(to_hz) // g, int(from_hz) // g, axis=0).astype(np.float32)


def to_channels(audio: np.ndarray, n_channels: int) -> np.ndarray:
    """Mono -> n channels (copied), or any -> mono (mean of channels)."""
    audio = _as_2d(audio)
    have = audio.shape[1]
    if have == n_channels:
        return audio
    if n_channels == 1:
        return audio.mean(axis=1, keepdims=True, dtype=np.float32)
    if have == 1:
        return np.repeat(audio, n_channels, axis=1)
    raise ValueError(f"cannot convert {have} channels to {n_channels}; only mono<->multichannel")


# ---------------------------------------------------------------- duration fit

def time_stretch(audio: np.ndarray, sample_rate_hz: int, rate: float) -> np.ndarray:
    """Change tempo by `rate` keeping pitch (ffmpeg atempo); rate > 1 is faster.

    Raw float32 goes through ffmpeg's stdin/stdout, no temporary files. The
    output is trimmed or zero-padded to exactly round(n / rate) samples
    (atempo itself lands within ~10 ms), so fit plans map to exact lengths.
    """
    audio = _as_2d(audio)
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if rate == 1.0:
        return audio
    n_out = round(len(audio) / rate)
    if len(audio) == 0:
        return audio
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg not found on PATH (apt-get install ffmpeg)")
    # One atempo stage above 2x drops whole chunks of input; chaining stages
    # of at most 2x (or at least 0.5x) keeps every stage an overlap-add.
    stages, rest = [], float(rate)
    while rest > 2.0:
        stages.append(2.0)
        rest /= 2.0
    while rest < 0.5:
        stages.append(0.5)
        rest /= 0.5
    stages.append(rest)
    fmt = ["-f", "f32le", "-ar", str(int(sample_rate_hz)), "-ac", str(audio.shape[1])]
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
           *fmt, "-i", "pipe:0",
           "-filter:a", ",".join(f"atempo={r!r}" for r in stages),
           *fmt, "pipe:1"]
    proc = subprocess.run(cmd, input=np.ascontiguousarray(audio, dtype="<f4").tobytes(),
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg atempo={rate} failed: {proc.stderr.decode(errors='replace').strip()}")
    out = np.frombuffer(proc.stdout, dtype="<f4").reshape(-1, audio.shape[1])
    return _fit_length(out.astype(np.float32), n_out)


@dataclass(frozen=True)
class FitPlan:
    """Where one dubbed line goes and what was done to make it fit."""
    rate: float            # speech-rate increase applied, >= 1.0
    placed_start_s: float
    placed_end_s: float
    overflow_s: float      # time used past the source segment's end, taken from the silence after it
    cut_s: float           # (stretched) speech that still did not fit and was faded out


def plan_fit(slots: list[tuple[float, float]], speech_durations_s: list[float],
             total_duration_s: float, max_speedup: float, min_gap_s: float) -> list[FitPlan]:
    """Place each dubbed line at its source segment's start, making it fit.

    In order of preference: keep it as is; speed it up, at most max_speedup;
    let it run on into the silence after the segment, up to min_gap_s before
    the next line (or the end of the video); cut the rest. Overflow never
    takes a line's own segment away: when the next line starts closer than
    min_gap_s, the line still gets its whole segment.
    """
    if len(slots) != len(speech_durations_s):
        raise ValueError(f"{len(slots)} slots but {len(speech_durations_s)} speech durations")
    if max_speedup < 1.0:
        raise ValueError(f"max_speedup must be >= 1.0, got {max_speedup}")
    for (s0, e0), (s1, _) in zip(slots, slots[1:]):
        if s1 < e0:
            raise ValueError(f"slots must be sorted and non-overlapping: ({s0}, {e0}) then starts {s1}")
    plans = []
    for i, ((start_s, end_s), dur_s) in enumerate(zip(slots, speech_durations_s)):
        slot_s = end_s - start_s
        if dur_s <= slot_s:
            plans.append(FitPlan(1.0, start_s, start_s + dur_s, 0.0, 0.0))
            continue
        needed = dur_s / slot_s if slot_s > 0 else math.inf
        if needed <= max_speedup:
            # Set the end to the slot's end directly rather than start + dur/rate,
            # which floating point would put a hair off it.
            plans.append(FitPlan(needed, start_s, end_s, 0.0, 0.0))
            continue
        stretched_s = dur_s / max_speedup
        limit_s = slots[i + 1][0] - min_gap_s if i + 1 < len(slots) else total_duration_s
        limit_s = max(limit_s, end_s)
        wanted_end_s = start_s + stretched_s
        if wanted_end_s <= limit_s:
            plans.append(FitPlan(max_speedup, start_s, wanted_end_s, wanted_end_s - end_s, 0.0))
        else:
            plans.append(FitPlan(max_speedup, start_s, limit_s, limit_s - end_s, wanted_end_s - limit_s))
    return plans


def apply_fit(speech: np.ndarray, sample_rate_hz: int, plan: FitPlan) -> np.ndarray:
    """The line as placed: stretched by plan.rate, exactly the planned span long.

    Only a cut line (cut_s > 0) loses audio; it ends with a 30 ms fade-out.
    Otherwise the length change is at most rounding (a sample or so).
    """
    out = np.array(time_stretch(speech, sample_rate_hz, plan.rate), dtype=np.float32)
    n_target = round((plan.placed_end_s - plan.placed_start_s) * sample_rate_hz)
    out = _fit_length(out, n_target)
    if plan.cut_s > 0 and n_target > 0:
        n_fade = min(n_target, max(1, round(CUT_FADE_S * sample_rate_hz)))
        fade = 0.5 * (1.0 + np.cos(np.pi * np.arange(1, n_fade + 1) / n_fade))
        out[-n_fade:] *= fade.astype(np.float32)[:, None]
    return out


# ---------------------------------------------------------------- placement, mask

def place(segments: list[tuple[float, np.ndarray]], total_samples: int,
          sample_rate_hz: int, n_channels: int) -> np.ndarray:
    """The dub speech track: each (start_s, audio) added at its start, cut at the end."""
    track = np.zeros((total_samples, n_channels), dtype=np.float32)
    for start_s, audio in segments:
        audio = to_channels(audio, n_channels)
        at = round(start_s * sample_rate_hz)
        lo, hi = max(at, 0), min(at + len(audio), total_samples)
        if lo < hi:
            track[lo:hi] += audio[lo - at:hi - at]
    return track


def speech_mask(spans_s: list[tuple[float, float]], n_samples: int,
                sample_rate_hz: int, fade_s: float) -> np.ndarray:
    """Per-sample weight, shape (n_samples,): 1 inside spans, 0 away from them.

    Raised-cosine ramps of fade_s lie outside the span edges, so the whole
    span is fully covered; where ramps of neighbouring spans meet, the larger
    value wins.
    """
    mask = np.zeros(n_samples, dtype=np.float32)
    sr = sample_rate_hz
    for start_s, end_s in spans_s:
        lo = max(0, math.floor((start_s - fade_s) * sr))
        hi = min(n_samples, math.ceil((end_s + fade_s) * sr) + 1)
        if lo >= hi:
            continue
        t = np.arange(lo, hi) / sr
        dist = np.maximum(np.maximum(start_s - t, t - end_s), 0.0)
        if fade_s > 0:
            weight = np.where(dist < fade_s, 0.5 * (1.0 + np.cos(np.pi * np.minimum(dist / fade_s, 1.0))), 0.0)
        else:
            weight = (dist == 0).astype(np.float64)
        np.maximum(mask[lo:hi], weight.astype(np.float32), out=mask[lo:hi])
    return mask


def _merged_spans(spans_s: list[tuple[float, float]], duration_s: float) -> list[tuple[float, float]]:
    spans = sorted((max(0.0, a), min(duration_s, b)) for a, b in spans_s)
    merged: list[tuple[float, float]] = []
    for a, b in spans:
        if b <= a:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


# ---------------------------------------------------------------- background

def background_estimate(source: np.ndarray, sample_rate_hz: int, spans_s: list[tuple[float, float]],
                        mode: Literal["spectral", "duck"], duck_db: float, fade_s: float) -> np.ndarray:
    """The original audio with its speech removed where the dub will speak.

    "duck" lowers the original by duck_db inside the spans (ramped by fade_s
    outside their edges). "spectral" keeps the background at its level and
    takes out only what rises above it: see _spectral_background. Outside
    the spans and their fades the output is the input, bit for bit.
    """
    if mode not in ("spectral", "duck"):
        raise ValueError(f"mode must be 'spectral' or 'duck', got {mode!r}")
    source = _as_2d(source)
    spans = _merged_spans(spans_s, len(source) / sample_rate_hz)
    if not spans:
        return source.copy()
    mask = speech_mask(spans, len(source), sample_rate_hz, fade_s)
    if mode == "spectral":
        out = _spectral_background(source, sample_rate_hz, spans, mask, fade_s)
        if out is not None:
            return out
    gain = 1.0 + (10.0 ** (duck_db / 20.0) - 1.0) * mask
    return source * gain.astype(np.float32)[:, None]


def _stft_size(sample_rate_hz: int) -> int:
    # ~40 ms: fine enough in frequency to keep a bed's tones apart from speech
    # harmonics, short enough that speech onsets do not smear far.
    return 2 ** round(math.log2(0.04 * sample_rate_hz))


def _spectral_background(source: np.ndarray, sr: int, spans: list[tuple[float, float]],
                         mask: np.ndarray, fade_s: float) -> np.ndarray | None:
    """Limit each STFT bin inside the spans to the background's own level.

    A music or ambience bed is roughly stationary, so its per-frequency
    median magnitude over the speech-free frames is a profile of it. Under
    speech, a bin far above that profile is mostly speech: scaling it down to
    the profile (gain min(1, headroom * profile / |X|), real, so the original
    phase stays) removes the speech and leaves the bed at its level, without
    the hole that ducking digs. The result is crossfaded in with speech_mask,
    so the original is untouched outside the spans. Returns None (the caller
    ducks instead) when there is too little speech-free audio for a profile.
    """
    from scipy.signal import get_window, istft, stft

    nperseg = _stft_size(sr)
    hop = nperseg // 4
    profile = _background_profile(source, sr, spans, fade_s, nperseg, hop)
    if profile is None:
        return None
    out = source.copy()
    # Process only around the spans (plus a frame on each side, where the STFT's
    # edge effects fall under mask == 0): feature-length audio never has to
    # fit in memory as one spectrogram.
    regions: list[list[int]] = []
    for a, b in spans:
        lo = max(0, math.floor((a - fade_s) * sr) - nperseg)
        hi = min(len(source), math.ceil((b + fade_s) * sr) + nperseg)
        if regions and lo <= regions[-1][1]:
            regions[-1][1] = max(regions[-1][1], hi)
        else:
            regions.append([lo, hi])
    window = get_window("hann", nperseg)
    for lo, hi in regions:
        segment = source[lo:hi]
        cleaned = np.empty_like(segment)
        for ch in range(segment.shape[1]):
            _, _, spec = stft(segment[:, ch], nperseg=nperseg, noverlap=nperseg - hop, window=window)
            gain = np.minimum(1.0, PROFILE_HEADROOM * profile[:, ch:ch + 1] / np.maximum(np.abs(spec), 1e-12))
            _, y = istft(spec * gain.astype(np.float32), nperseg=nperseg, noverlap=nperseg - hop, window=window)
            cleaned[:, ch] = _fit_length(y.reshape(-1, 1), len(segment))[:, 0]
        m = mask[lo:hi, None]
        out[lo:hi] = np.where(m > 0, (1.0 - m) * segment + m * cleaned, segment)
    return out


def _background_profile(source: np.ndarray, sr: int, spans: list[tuple[float, float]], fade_s: float,
                        nperseg: int, hop: int) -> np.ndarray | None:
    """Median STFT magnitude (n_bins, n_channels) over frames clear of all spans.

    Spans are widened by fade_s: speech detection edges are loose, and speech
    leaking into the profile would make the removal spare it. Magnitudes are
    scaled like scipy.signal.stft's (divided by the window sum) so they
    compare directly with its output.
    """
    from scipy.signal import get_window

    starts = np.arange(0, len(source) - nperseg + 1, hop)
    span_lo = np.array([(a - fade_s) * sr for a, _ in spans])
    span_hi = np.array([(b + fade_s) * sr for _, b in spans])
    # First span ending after a frame's start; the frame touches speech if that
    # span also begins before the frame ends.
    nxt = np.searchsorted(span_hi, starts, side="right")
    touches = (nxt < len(spans)) & (span_lo[np.minimum(nxt, len(spans) - 1)] < starts + nperseg)
    clear = starts[~touches]
    if len(clear) * hop / sr < PROFILE_MIN_S:
        return None
    if len(clear) > PROFILE_MAX_FRAMES:
        clear = clear[np.linspace(0, len(clear) - 1, PROFILE_MAX_FRAMES).round().astype(int)]
    window = get_window("hann", nperseg)
    frames = source[clear[:, None] + np.arange(nperseg)]          # (frames, nperseg, channels)
    mags = np.abs(np.fft.rfft(frames * window[None, :, None], axis=1)) / window.sum()
    return np.median(mags, axis=0)                                 # (bins, channels)


# ---------------------------------------------------------------- loudness, peak

def integrated_lufs(audio: np.ndarray, sample_rate_hz: int) -> float:
    """EBU R128 / BS.1770 integrated loudness (pyloudnorm), in LUFS.

    Returns float("-inf") when loudness is undefined: audio shorter than one
    400 ms gating block (pyloudnorm would raise; padding with silence would
    understate it), or audio entirely under the -70 LUFS absolute gate
    (silence). Callers treat -inf as "nothing to measure".
    """
    import pyloudnorm

    audio = _as_2d(audio)
    if len(audio) < LOUDNESS_BLOCK_S * sample_rate_hz:
        return float("-inf")
    with np.errstate(divide="ignore", invalid="ignore"):
        lufs = pyloudnorm.Meter(sample_rate_hz).integrated_loudness(audio.astype(np.float64))
    return float(lufs) if np.isfinite(lufs) else float("-inf")


def loudness_match_gain_db(dub_speech: np.ndarray, source_dialogue: np.ndarray, sample_rate_hz: int) -> float:
    """Gain (dB) that brings the dub speech to the source dialogue's integrated loudness.

    0.0 when either loudness is undefined (too short or silent): with nothing
    to compare, leaving the dub as synthesized is the safe choice.
    """
    dub = integrated_lufs(dub_speech, sample_rate_hz)
    ref = integrated_lufs(source_dialogue, sample_rate_hz)
    if not (math.isfinite(dub) and math.isfinite(ref)):
        return 0.0
    return ref - dub


def apply_gain_db(audio: np.ndarray, db: float) -> np.ndarray:
    return (_as_2d(audio) * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


def true_peak_dbfs(audio: np.ndarray, sample_rate_hz: int) -> float:
    """Peak of the signal oversampled 4x (BS.1770 Annex 2), in dBFS; -inf for silence.

    Below 44.1 kHz the oversampling rises so the interpolated rate stays at
    least 176.4 kHz, as 4x at 44.1 kHz gives. Done in blocks so a full-length
    track never has to exist 4x over in memory; each block carries a margin
    of neighbouring samples so the interpolation filter sees real signal, not
    zeros, at block edges.
    """
    from scipy.signal import resample_poly

    audio = _as_2d(audio)
    if len(audio) == 0:
        return float("-inf")
    factor = 4 if sample_rate_hz >= 44100 else math.ceil(176400 / sample_rate_hz)
    block, margin = 1 << 18, 64
    peak = float(np.max(np.abs(audio)))
    for lo in range(0, len(audio), block):
        a, b = max(0, lo - margin), min(len(audio), lo + block + margin)
        up = resample_poly(audio[a:b].astype(np.float64), factor, 1, axis=0)
        keep = up[(lo - a) * factor:(min(len(audio), lo + block) - a) * factor]
        peak = max(peak, float(np.max(np.abs(keep))))
    return 20.0 * math.log10(peak) if peak > 0 else float("-inf")


def limit_peak(audio: np.ndarray, sample_rate_hz: int, ceiling_dbfs: float = -1.0) -> tuple[np.ndarray, float]:
    """Lower the whole track, if needed, so its true peak is at most ceiling_dbfs.

    One gain for the whole track (no compression: the mix keeps its
    dynamics). Returns the audio and the gain applied in dB (0.0 if none).
    The gain undershoots by 0.001 dB so float32 rounding cannot leave the
    result a hair over the ceiling.
    """
    audio = _as_2d(audio)
    peak_dbfs = true_peak_dbfs(audio, sample_rate_hz)
    if peak_dbfs <= ceiling_dbfs:
        return audio, 0.0
    gain_db = ceiling_dbfs - peak_dbfs - 0.001
    return apply_gain_db(audio, gain_db), gain_db


def concat_spans(audio: np.ndarray, sample_rate_hz: int, spans_s: list[tuple[float, float]]) -> np.ndarray:
    """The audio inside the spans, back to back (e.g. the source dialogue alone)."""
    audio = _as_2d(audio)
    pieces = []
    for start_s, end_s in spans_s:
        lo = max(0, round(start_s * sample_rate_hz))
        hi = min(len(audio), round(end_s * sample_rate_hz))
        if lo < hi:
            pieces.append(audio[lo:hi])
    if not pieces:
        return np.zeros((0, audio.shape[1]), dtype=np.float32)
    return np.concatenate(pieces)
