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
from typing import Callable, Literal

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
    """Write 16-bit PCM, creating parent folders; `tags` go to the INFO chunk ('comment': ICMT, 'software': ISFT)."""
    audio = _as_2d(audio)
    write_wav_blocks(path, [audio], sample_rate_hz, audio.shape[1], tags)


def write_wav_blocks(path: str | Path, pieces, sample_rate_hz: int, n_channels: int,
                     tags: dict[str, str] | None = None) -> None:
    """Write consecutive pieces of audio as one 16-bit PCM file (a feature's mix, block by block).

    Samples are clipped to [-1, 1] first: libsndfile's float->int conversion
    otherwise wraps out-of-range values around into loud clicks.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(str(path), "w", int(sample_rate_hz), int(n_channels), subtype="PCM_16") as f:
        for key, value in (tags or {}).items():
            setattr(f, key, value)        # libsndfile writes strings only if set before the samples
        for piece in pieces:
            f.write(np.clip(_as_2d(piece), -1.0, 1.0))


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
    cut_s: float           # (sped-up) speech that still did not fit and was faded out
    lead_s: float = 0.0    # time used before the source segment's start, taken from the silence before it


def plan_fit(slots: list[tuple[float, float]], speech_durations_s: list[float],
             total_duration_s: float, max_speedup: float, min_gap_s: float, *,
             comfortable_speedup: float | None = None, max_lead_s: float = 0.0,
             hard_speedup: float | None = None) -> list[FitPlan]:
    """Place each dubbed line over its source segment, making it fit without losing words.

    In order of preference:
    1. keep it as is, at the segment's start;
    2. speak faster in place, up to `comfortable_speedup` (barely audible);
    3. at that rate, run on into the silence after the segment (up to
       min_gap_s before the next line or the video's end), then start up to
       `max_lead_s` early in the silence before it (never closer than
       min_gap_s to the previous line, source or dub);
    4. speak faster over all that room, up to max_speedup;
    5. past the cap, up to `hard_speedup`: the line is whole but rushed (the
       review flags it);
    6. only then cut what is left, faded out.
    A line never takes another line's time: when its neighbours are closer
    than min_gap_s it still gets its whole segment. The defaults (comfortable
    = cap, no lead, hard = cap) are the plain cap-overflow-cut policy.
    Lines of duration 0 (not dubbed) keep their slot as a boundary.
    """
    if len(slots) != len(speech_durations_s):
        raise ValueError(f"{len(slots)} slots but {len(speech_durations_s)} speech durations")
    if max_speedup < 1.0:
        raise ValueError(f"max_speedup must be >= 1.0, got {max_speedup}")
    comfortable = max_speedup if comfortable_speedup is None else min(max(comfortable_speedup, 1.0), max_speedup)
    hard = max_speedup if hard_speedup is None else max(hard_speedup, max_speedup)
    for (s0, e0), (s1, _) in zip(slots, slots[1:]):
        if s1 < e0:
            raise ValueError(f"slots must be sorted and non-overlapping: ({s0}, {e0}) then starts {s1}")
    plans: list[FitPlan] = []
    taken_until_s = None           # the previous line's end, source or dub, whichever is later
    for i, ((start_s, end_s), dur_s) in enumerate(zip(slots, speech_durations_s)):
        plan = _fit_one(start_s, end_s, dur_s, comfortable, max_speedup, hard,
                        earliest_s=_earliest_start(start_s, taken_until_s, min_gap_s, max_lead_s),
                        latest_s=max(slots[i + 1][0] - min_gap_s if i + 1 < len(slots) else total_duration_s, end_s))
        plans.append(plan)
        taken_until_s = max(end_s, plan.placed_end_s, taken_until_s or 0.0)
    return plans


def _earliest_start(start_s: float, taken_until_s: float | None, min_gap_s: float, max_lead_s: float) -> float:
    floor_s = 0.0 if taken_until_s is None else taken_until_s + min_gap_s
    return min(start_s, max(start_s - max_lead_s, floor_s))


def _fit_one(start_s: float, end_s: float, dur_s: float, comfortable: float, cap: float, hard: float,
             earliest_s: float, latest_s: float) -> FitPlan:
    slot_s = end_s - start_s
    if dur_s <= slot_s:
        return FitPlan(1.0, start_s, start_s + dur_s, 0.0, 0.0)
    if slot_s > 0 and dur_s / slot_s <= comfortable:
        # The end is the slot's end itself, not start + dur/rate, which floating point puts a hair off it.
        return FitPlan(dur_s / slot_s, start_s, end_s, 0.0, 0.0)
    length_s = dur_s / comfortable
    placed_end_s = min(start_s + length_s, latest_s)
    # min(): (start + length) - length lands a hair after the start in floating point
    placed_start_s = max(min(placed_end_s - length_s, start_s), earliest_s)
    if placed_end_s - placed_start_s >= length_s - 1e-9:
        return _placed(comfortable, placed_start_s, placed_end_s, start_s, end_s, 0.0)
    room_s = latest_s - earliest_s
    rate = dur_s / room_s if room_s > 0 else math.inf
    if rate <= hard:
        return _placed(rate, earliest_s, latest_s, start_s, end_s, 0.0)
    return _placed(hard, earliest_s, latest_s, start_s, end_s, dur_s / hard - room_s)


def _placed(rate: float, placed_start_s: float, placed_end_s: float, start_s: float, end_s: float,
            cut_s: float) -> FitPlan:
    return FitPlan(rate, placed_start_s, placed_end_s, max(0.0, placed_end_s - end_s), cut_s,
                   max(0.0, start_s - placed_start_s))


def apply_fit(speech: np.ndarray, sample_rate_hz: int, plan: FitPlan) -> np.ndarray:
    """The line as placed: sped up to last the planned span (plus what is cut), exactly that long.

    The stretch is measured from the audio itself (its length against the span and the cut), so
    speech the TTS already made faster natively is only stretched by what is left (it may be a
    little under 1). Only a cut line (cut_s > 0) loses audio; it ends with a 30 ms fade-out.
    Otherwise the length change is at most rounding (a sample or so).
    """
    speech = _as_2d(speech)
    full_s = plan.placed_end_s - plan.placed_start_s + plan.cut_s
    rate = len(speech) / sample_rate_hz / full_s if full_s > 0 else 1.0
    out = np.array(speech if abs(rate - 1.0) < 1e-4 else time_stretch(speech, sample_rate_hz, rate),
                   dtype=np.float32)
    n_target = round((plan.placed_end_s - plan.placed_start_s) * sample_rate_hz)
    out = _fit_length(out, n_target)
    if plan.cut_s > 0 and n_target > 0:
        n_fade = min(n_target, max(1, round(CUT_FADE_S * sample_rate_hz)))
        fade = 0.5 * (1.0 + np.cos(np.pi * np.arange(1, n_fade + 1) / n_fade))
        out[-n_fade:] *= fade.astype(np.float32)[:, None]
    return out


# ---------------------------------------------------------------- readers

# A track read by sample range: read(lo, hi) -> float32 (hi - lo, n_channels). The mix works
# block by block through one, so a feature's audio never has to be in memory whole.
Reader = Callable[[int, int], np.ndarray]


def array_reader(audio: np.ndarray) -> Reader:
    audio = _as_2d(audio)
    return lambda lo, hi: audio[lo:hi]


class FileReader:
    """A local audio file read by seeking: `reader(lo, hi)`, float32, optionally only some channels."""

    def __init__(self, path: str | Path, channels: list[int] | None = None) -> None:
        self._file = sf.SoundFile(str(path))
        self._channels = channels
        self.sample_rate_hz = int(self._file.samplerate)
        self.n_samples = int(self._file.frames)
        self.n_channels = len(channels) if channels is not None else int(self._file.channels)

    def __enter__(self) -> "FileReader":
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        lo, hi = min(max(0, lo), self.n_samples), min(max(0, hi), self.n_samples)
        self._file.seek(lo)
        samples = self._file.read(max(0, hi - lo), dtype="float32", always_2d=True)
        return samples[:, self._channels] if self._channels is not None else samples


def blocks(n_samples: int, sample_rate_hz: int, block_s: float = 30.0):
    """(lo, hi) sample ranges of about block_s covering [0, n_samples)."""
    step = max(1, round(block_s * sample_rate_hz))
    for lo in range(0, n_samples, step):
        yield lo, min(n_samples, lo + step)


# ---------------------------------------------------------------- placement, mask

def place(segments: list[tuple[float, np.ndarray]], total_samples: int,
          sample_rate_hz: int, n_channels: int, start_sample: int = 0) -> np.ndarray:
    """The dub speech track over samples [start_sample, start_sample + total_samples):
    each (start_s, audio) added at its start, cut at the ends."""
    track = np.zeros((total_samples, n_channels), dtype=np.float32)
    for start_s, audio in segments:
        audio = to_channels(audio, n_channels)
        at = round(start_s * sample_rate_hz) - start_sample
        lo, hi = max(at, 0), min(at + len(audio), total_samples)
        if lo < hi:
            track[lo:hi] += audio[lo - at:hi - at]
    return track


def speech_mask(spans_s: list[tuple[float, float]], n_samples: int,
                sample_rate_hz: int, fade_s: float, start_sample: int = 0) -> np.ndarray:
    """Per-sample weight over samples [start_sample, start_sample + n_samples): 1 inside spans, 0 away.

    Raised-cosine ramps of fade_s lie outside the span edges, so the whole
    span is fully covered; where ramps of neighbouring spans meet, the larger
    value wins.
    """
    mask = np.zeros(n_samples, dtype=np.float32)
    sr = sample_rate_hz
    for start_s, end_s in spans_s:
        lo = max(start_sample, math.floor((start_s - fade_s) * sr))
        hi = min(start_sample + n_samples, math.ceil((end_s + fade_s) * sr) + 1)
        if lo >= hi:
            continue
        t = np.arange(lo, hi) / sr
        dist = np.maximum(np.maximum(start_s - t, t - end_s), 0.0)
        if fade_s > 0:
            weight = np.where(dist < fade_s, 0.5 * (1.0 + np.cos(np.pi * np.minimum(dist / fade_s, 1.0))), 0.0)
        else:
            weight = (dist == 0).astype(np.float64)
        view = mask[lo - start_sample:hi - start_sample]
        np.maximum(view, weight.astype(np.float32), out=view)
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
    """The original audio with its speech removed where the dub will speak (see Background), all at once."""
    source = _as_2d(source)
    background = Background(array_reader(source), len(source), sample_rate_hz, spans_s, mode, duck_db, fade_s)
    return np.array(background.block(0, len(source)), dtype=np.float32)


def _stft_size(sample_rate_hz: int) -> int:
    # ~40 ms: fine enough in frequency to keep a bed's tones apart from speech
    # harmonics, short enough that speech onsets do not smear far.
    return 2 ** round(math.log2(0.04 * sample_rate_hz))


class Background:
    """The original audio with its speech removed where the dub will speak, block by block.

    "duck" lowers the original by duck_db inside the spans (ramped by fade_s
    outside their edges). "spectral" keeps the background at its level and
    takes out only what rises above it: each STFT bin inside the spans is
    limited to the background's own level. A music or ambience bed is roughly
    stationary, so its per-frequency median magnitude over the speech-free
    frames is a profile of it; under speech, a bin far above that profile is
    mostly speech, and scaling it down to the profile (gain min(1, headroom *
    profile / |X|), real, so the original phase stays) removes the speech and
    leaves the bed at its level, without the hole that ducking digs. The
    result is crossfaded in with speech_mask, so outside the spans and their
    fades the output is the input, bit for bit. With too little speech-free
    audio for a profile, "spectral" ducks instead.

    `block(lo, hi)` gives the samples that processing the whole track at once
    would give there (to float rounding): each speech region's STFT is taken
    over the block and one STFT window on either side, on the region's own
    frame grid. The profile is learnt once, from frames sampled over the
    whole track, so memory stays flat for feature-length audio.
    """

    def __init__(self, read: Reader, n_samples: int, sample_rate_hz: int, spans_s: list[tuple[float, float]],
                 mode: Literal["spectral", "duck"], duck_db: float, fade_s: float) -> None:
        if mode not in ("spectral", "duck"):
            raise ValueError(f"mode must be 'spectral' or 'duck', got {mode!r}")
        self.read, self.n_samples, self.sr, self.fade_s = read, n_samples, sample_rate_hz, fade_s
        self.spans = _merged_spans(spans_s, n_samples / sample_rate_hz)
        self.duck_gain = 10.0 ** (duck_db / 20.0)
        self.nperseg = _stft_size(sample_rate_hz)
        self.hop = self.nperseg // 4
        self.profile = None
        if mode == "spectral" and self.spans:
            self.profile = _background_profile(read, n_samples, sample_rate_hz, self.spans, fade_s,
                                               self.nperseg, self.hop)
        # The STFT is taken only around the spans (plus a window on each side, where its edge
        # effects fall under mask == 0).
        self.regions: list[list[int]] = []
        for a, b in self.spans:
            lo = max(0, math.floor((a - fade_s) * sample_rate_hz) - self.nperseg)
            hi = min(n_samples, math.ceil((b + fade_s) * sample_rate_hz) + self.nperseg)
            if self.regions and lo <= self.regions[-1][1]:
                self.regions[-1][1] = max(self.regions[-1][1], hi)
            else:
                self.regions.append([lo, hi])

    def block(self, lo: int, hi: int) -> np.ndarray:
        source = self.read(lo, hi)
        mask = speech_mask(self.spans, hi - lo, self.sr, self.fade_s, start_sample=lo)
        if not mask.any():
            return source
        if self.profile is None:
            return source * (1.0 + (self.duck_gain - 1.0) * mask)[:, None].astype(np.float32)
        out = np.array(source, dtype=np.float32)
        for r_lo, r_hi in self.regions:
            if r_hi <= lo or r_lo >= hi:
                continue
            # from a whole number of hops past the region's start, at least a window before the block
            a = max(r_lo, r_lo + (lo - self.nperseg - r_lo) // self.hop * self.hop)
            b = min(r_hi, hi + self.nperseg)
            segment = self.read(a, b)
            cleaned = self._cleaned(segment)
            k0, k1 = max(lo, r_lo), min(hi, r_hi)
            seg, clean = segment[k0 - a:k1 - a], cleaned[k0 - a:k1 - a]
            m = mask[k0 - lo:k1 - lo, None]
            out[k0 - lo:k1 - lo] = np.where(m > 0, (1.0 - m) * seg + m * clean, seg)
        return out

    def _cleaned(self, segment: np.ndarray) -> np.ndarray:
        from scipy.signal import get_window, istft, stft

        window = get_window("hann", self.nperseg)
        noverlap = self.nperseg - self.hop
        cleaned = np.empty_like(segment)
        for ch in range(segment.shape[1]):
            _, _, spec = stft(segment[:, ch], nperseg=self.nperseg, noverlap=noverlap, window=window)
            gain = np.minimum(1.0, PROFILE_HEADROOM * self.profile[:, ch:ch + 1] / np.maximum(np.abs(spec), 1e-12))
            _, y = istft(spec * gain.astype(np.float32), nperseg=self.nperseg, noverlap=noverlap, window=window)
            cleaned[:, ch] = _fit_length(y.reshape(-1, 1), len(segment))[:, 0]
        return cleaned


def _background_profile(read: Reader, n_samples: int, sr: int, spans: list[tuple[float, float]], fade_s: float,
                        nperseg: int, hop: int) -> np.ndarray | None:
    """Median STFT magnitude (n_bins, n_channels) over frames clear of all spans; None if too few.

    Spans are widened by fade_s: speech detection edges are loose, and speech
    leaking into the profile would make the removal spare it. Magnitudes are
    scaled like scipy.signal.stft's (divided by the window sum) so they
    compare directly with its output.
    """
    from scipy.signal import get_window

    starts = np.arange(0, n_samples - nperseg + 1, hop)
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
    window = get_window("hann", nperseg)[None, :, None]
    first = read(0, 0)
    mags = np.empty((len(clear), nperseg // 2 + 1, first.shape[1]), dtype=np.float32)
    for lo in range(0, len(clear), 256):                                  # in chunks: temporaries stay small
        frames = np.stack([read(int(s), int(s) + nperseg) for s in clear[lo:lo + 256]])
        mags[lo:lo + 256] = np.abs(np.fft.rfft(frames * window, axis=1)) / window.sum()
    profile = np.empty(mags.shape[1:], dtype=np.float32)                  # (bins, channels)
    for lo in range(0, mags.shape[1], 64):
        profile[lo:lo + 64] = np.median(mags[:, lo:lo + 64], axis=0)
    return profile


# ---------------------------------------------------------------- loudness, peak

# BS.1770 channel weights, by position (L, R, C, Ls, Rs), as pyloudnorm applies them.
_CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)


class LoudnessMeter:
    """EBU R128 / BS.1770-4 integrated loudness of audio fed in pieces, as if they were one signal.

    pyloudnorm measures one whole array (in float64, with filtered copies);
    a feature's dialogue does not fit that. This meter keeps only the
    K-weighting filters' state (pyloudnorm's filters) and the energy of each
    100 ms step, and gates at the end: 400 ms blocks with 75 % overlap, the
    -70 LUFS absolute gate and the -10 LU relative gate. tests/test_mix.py
    checks it against pyloudnorm's integrated_loudness.
    """

    STEP_S = 0.1
    STEPS_PER_BLOCK = 4
    CHUNK = 1 << 16

    def __init__(self, sample_rate_hz: int) -> None:
        import pyloudnorm

        # pyloudnorm's K-weighting stages (high shelf, then high pass) for this rate
        self._stages = [(f.b, f.a, f.passband_gain) for f in pyloudnorm.Meter(sample_rate_hz)._filters.values()]
        self._state: list[np.ndarray] | None = None
        self._step = round(self.STEP_S * sample_rate_hz)
        self._partial: np.ndarray | None = None       # energy of the unfinished step, per channel
        self._partial_n = 0
        self._steps: list[np.ndarray] = []
        self.n_samples = 0
        self.sample_rate_hz = sample_rate_hz

    def add(self, audio: np.ndarray) -> "LoudnessMeter":
        from scipy.signal import lfilter

        audio = _as_2d(audio)
        if len(audio) > self.CHUNK:                     # long spans in pieces: the float64 copies stay small
            for lo in range(0, len(audio), self.CHUNK):
                self.add(audio[lo:lo + self.CHUNK])
            return self
        x = audio.astype(np.float64)
        if len(x) == 0:
            return self
        if self._state is None:
            self._state = [np.zeros((max(len(a), len(b)) - 1, x.shape[1])) for b, a, _ in self._stages]
            self._partial = np.zeros(x.shape[1])
        for i, (b, a, gain) in enumerate(self._stages):
            x, self._state[i] = lfilter(b, a, x, axis=0, zi=self._state[i])
            x = x * gain
        energy = x * x
        self.n_samples += len(x)
        pos = 0
        while pos < len(energy):
            take = min(self._step - self._partial_n, len(energy) - pos)
            self._partial += energy[pos:pos + take].sum(axis=0)
            self._partial_n += take
            pos += take
            if self._partial_n == self._step:
                self._steps.append(self._partial)
                self._partial, self._partial_n = np.zeros_like(self._partial), 0
        return self

    def lufs(self) -> float:
        """Integrated loudness in LUFS; -inf when undefined (under one 400 ms block, or all below -70 LUFS)."""
        if len(self._steps) < self.STEPS_PER_BLOCK:
            return float("-inf")
        steps = np.array(self._steps)                                           # (steps, channels)
        sums = np.cumsum(np.vstack([np.zeros((1, steps.shape[1])), steps]), axis=0)
        z = (sums[self.STEPS_PER_BLOCK:] - sums[:-self.STEPS_PER_BLOCK]) / (self.STEPS_PER_BLOCK * self._step)
        weights = np.array(_CHANNEL_WEIGHTS[:z.shape[1]])
        with np.errstate(divide="ignore"):
            block_lufs = -0.691 + 10.0 * np.log10(z @ weights)
        gated = block_lufs >= -70.0
        if not gated.any():
            return float("-inf")
        relative = -0.691 + 10.0 * np.log10(z[gated].mean(axis=0) @ weights) - 10.0
        gated &= block_lufs > relative
        if not gated.any():
            return float("-inf")
        return float(-0.691 + 10.0 * np.log10(z[gated].mean(axis=0) @ weights))


def integrated_lufs(audio: np.ndarray, sample_rate_hz: int) -> float:
    """EBU R128 / BS.1770 integrated loudness in LUFS (LoudnessMeter), of one array.

    Returns float("-inf") when loudness is undefined: audio shorter than one
    400 ms gating block (padding with silence would understate it), or audio
    entirely under the -70 LUFS absolute gate (silence). Callers treat -inf as
    "nothing to measure".
    """
    return LoudnessMeter(sample_rate_hz).add(audio).lufs()


def loudness_match_gain_db(dub_speech: np.ndarray, source_dialogue: np.ndarray, sample_rate_hz: int) -> float:
    """Gain (dB) that brings the dub speech to the source dialogue's integrated loudness.

    0.0 when either loudness is undefined (too short or silent): with nothing
    to compare, leaving the dub as synthesized is the safe choice.
    """
    return gain_to_match_db(integrated_lufs(dub_speech, sample_rate_hz),
                            integrated_lufs(source_dialogue, sample_rate_hz))


def gain_to_match_db(dub_lufs: float, reference_lufs: float) -> float:
    if not (math.isfinite(dub_lufs) and math.isfinite(reference_lufs)):
        return 0.0
    return reference_lufs - dub_lufs


def apply_gain_db(audio: np.ndarray, db: float) -> np.ndarray:
    return (_as_2d(audio) * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


def true_peak_dbfs(audio: np.ndarray, sample_rate_hz: int) -> float:
    """Peak of the signal oversampled 4x (BS.1770 Annex 2), in dBFS; -inf for silence (see true_peak_of)."""
    audio = _as_2d(audio)
    return true_peak_of(array_reader(audio), len(audio), sample_rate_hz)


def true_peak_of(read: Reader, n_samples: int, sample_rate_hz: int) -> float:
    """True peak in dBFS of a track read by range.

    Below 44.1 kHz the oversampling rises so the interpolated rate stays at
    least 176.4 kHz, as 4x at 44.1 kHz gives. Done in blocks so a full-length
    track never has to exist 4x over in memory; each block carries a margin
    of neighbouring samples so the interpolation filter sees real signal, not
    zeros, at block edges.
    """
    from scipy.signal import resample_poly

    if n_samples == 0:
        return float("-inf")
    factor = 4 if sample_rate_hz >= 44100 else math.ceil(176400 / sample_rate_hz)
    block, margin = 1 << 16, 64
    peak = 0.0
    for lo in range(0, n_samples, block):
        a, b = max(0, lo - margin), min(n_samples, lo + block + margin)
        samples = read(a, b).astype(np.float64)
        peak = max(peak, float(np.max(np.abs(samples), initial=0.0)))
        up = resample_poly(samples, factor, 1, axis=0)
        keep = up[(lo - a) * factor:(min(n_samples, lo + block) - a) * factor]
        peak = max(peak, float(np.max(np.abs(keep), initial=0.0)))
    return 20.0 * math.log10(peak) if peak > 0 else float("-inf")


def limit_peak(audio: np.ndarray, sample_rate_hz: int, ceiling_dbfs: float = -1.0) -> tuple[np.ndarray, float]:
    """Lower the whole track, if needed, so its true peak is at most ceiling_dbfs.

    One gain for the whole track (no compression: the mix keeps its
    dynamics). Returns the audio and the gain applied in dB (0.0 if none).
    """
    audio = _as_2d(audio)
    gain_db = peak_limit_gain_db(true_peak_dbfs(audio, sample_rate_hz), ceiling_dbfs)
    return (apply_gain_db(audio, gain_db), gain_db) if gain_db else (audio, 0.0)


def peak_limit_gain_db(peak_dbfs: float, ceiling_dbfs: float) -> float:
    """The gain that brings a true peak to the ceiling (0.0 if under it). It undershoots by
    0.001 dB so float32 rounding cannot leave the result a hair over the ceiling."""
    return 0.0 if peak_dbfs <= ceiling_dbfs else ceiling_dbfs - peak_dbfs - 0.001
