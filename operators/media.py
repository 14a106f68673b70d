"""Container-level media work: probing with PyAV, cutting and muxing with ffmpeg."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

from operators.base import RowError


class MediaError(RowError):
    """The media of one video cannot be used: its row fails, the rest of the run goes on."""


def ffmpeg(*args: str, timeout_s: float = 3600) -> str:
    """Run ffmpeg quietly; a failure raises MediaError with the end of its log. Returns its error log."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise MediaError(f"ffmpeg failed ({proc.returncode}): {tail or 'no message'}")
    return proc.stderr


def check_complete(path: str) -> None:
    """Read every packet (no decoding): a truncated upload whose header is intact fails here.

    Such a file probes fine (the header promises the full duration) and ffmpeg
    even exits 0 on it, reporting only "partial file" in its log.
    """
    log = ffmpeg("-i", path, "-map", "0", "-c", "copy", "-f", "null", "-").strip()
    if log:
        raise MediaError(f"damaged or truncated file: {' | '.join(log.splitlines()[-2:])}")


@dataclass(frozen=True)
class Probe:
    duration_s: float
    fps: float
    frame_count: int
    width: int
    height: int
    video_codec: str
    audio_sample_rate_hz: int | None
    audio_channels: int | None
    audio_duration_s: float | None


def probe(path: str) -> Probe:
    import av

    try:
        container = av.open(path)
    except av.error.FFmpegError as e:
        raise MediaError(f"not a readable video file ({type(e).__name__}: {e})") from None
    with container:
        if not container.streams.video:
            raise MediaError("no video stream")
        v = container.streams.video[0]
        fps = float(v.average_rate or v.guessed_rate or 0)
        if fps <= 0:
            raise MediaError("video stream has no frame rate")
        duration_s = _duration(container, v)
        if duration_s is None or duration_s <= 0:
            raise MediaError("cannot tell the video's duration (truncated or still being written?)")
        frames = int(v.frames) if v.frames else round(duration_s * fps)
        a = container.streams.audio[0] if container.streams.audio else None
        return Probe(
            duration_s=duration_s, fps=fps, frame_count=frames,
            width=v.codec_context.width, height=v.codec_context.height,
            video_codec=v.codec_context.name,
            audio_sample_rate_hz=a.codec_context.sample_rate if a else None,
            audio_channels=a.codec_context.layout.nb_channels if a else None,
            audio_duration_s=_duration(container, a) if a else None,
        )


def _duration(container, stream) -> float | None:
    if stream is not None and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


@dataclass
class Frame:
    index: int
    time_s: float          # presentation time from the stream start (frames of a VFR source are uneven)
    pts: int | None
    image: "np.ndarray | None"    # rgb24 (H, W, 3), or yuv420p planes (H * 3 / 2, W); None: not asked for


def frames(path: str, pixel_format: str = "rgb24", only: set[int] | None = None):
    """Decode every frame of the first video stream, in order, as `Frame`s.

    With `only`, frames whose index is not in it come with `image=None`
    (decoded, since H.264 frames depend on each other, but not converted).

    Times are relative to the first frame, so they line up with the audio
    that `ProbeMedia` extracted (which also starts at 0).
    """
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        first = None
        for i, f in enumerate(container.decode(stream)):
            t = float(f.time) if f.time is not None else i / float(stream.average_rate or 25)
            first = t if first is None else first
            image = f.to_ndarray(format=pixel_format) if only is None or i in only else None
            yield Frame(i, t - first, f.pts, image)


def frames_at(path: str, times_s: list[float]) -> list["np.ndarray"]:
    """RGB frames shown at each of `times_s` (from the stream start, like `frames`), seeking rather than
    decoding from the start: the report's frame strips pick a few frames out of long videos.

    Each time gets the last frame that starts at or before it (the first frame before the start).
    """
    import av

    wanted = sorted(range(len(times_s)), key=lambda k: times_s[k])
    out: list = [None] * len(times_s)
    with av.open(path) as container:
        stream = container.streams.video[0]
        base = stream.time_base
        first = float(stream.start_time * base) if stream.start_time is not None else 0.0
        container.seek(int((first + max(0.0, times_s[wanted[0]])) / base), stream=stream, backward=True)
        previous, k = None, 0
        for f in container.decode(stream):
            t = float(f.time) - first
            while k < len(wanted) and t > times_s[wanted[k]] + 1e-6:
                out[wanted[k]] = (previous if previous is not None else f).to_ndarray(format="rgb24")
                k += 1
            if k == len(wanted):
                break
            previous = f
        for j in wanted[k:]:                       # past the last frame: the last frame
            out[j] = previous.to_ndarray(format="rgb24")
    return out
