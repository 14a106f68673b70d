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


def check_complete(path: str) -> list[str]:
    """Read every packet (no decoding): a truncated or structurally broken file fails here.

    A truncated upload whose header is intact probes fine (the header promises
    the full duration) and ffmpeg even exits 0 on it, reporting only "partial
    file" in its log: any message of the demuxer (or of ffmpeg itself) fails
    the video. Damage inside packets (corrupt bytes in the middle of an intact
    container: the codec parsers' messages) does not: the shards whose picture
    cannot be decoded fail on their own, with their time range, and the rest of
    the video is dubbed. Returns those parser messages (empty for a clean file).
    """
    import av

    with av.open(path) as container:
        demuxer = container.format.name
    log = ffmpeg("-i", path, "-map", "0", "-c", "copy", "-f", "null", "-").strip()
    lines = log.splitlines() if log else []
    structural = [line for line in lines if not _is_parser_message(line, demuxer)]
    if structural:
        raise MediaError(f"damaged or truncated file: {' | '.join(structural[-2:])}")
    return lines


def _is_parser_message(line: str, demuxer: str) -> bool:
    """A log line of a bitstream parser ("[NULL @ 0x...]", "[h264 @ 0x...]"), not of the demuxer or ffmpeg."""
    if not line.startswith("[") or " @ 0x" not in line.split("]", 1)[0]:
        return False
    name = line[1:line.index(" @ 0x")]
    return name != demuxer and "#" not in name and "/" not in name


@dataclass(frozen=True)
class Probe:
    duration_s: float              # the picture's: first frame's start to last frame's end
    fps: float
    frame_count: int
    width: int
    height: int
    video_codec: str
    pixel_format: str
    audio_sample_rate_hz: int | None
    audio_channels: int | None
    audio_duration_s: float | None
    # Where the first audio sample plays, in seconds after the first frame (negative: before it).
    # Containers place each stream on its own clock; players line them up by these start times.
    audio_start_offset_s: float | None
    audio_track: int | None = None  # the audio track described, 0-based among the file's audio tracks


def choose_audio_track(tracks: list[tuple[str | None, bool]], wanted: str | None, source_lang: str | None) -> int:
    """Which audio track to dub, 0-based; tracks are (language tag, default disposition) in file order.

    `wanted` (the catalog's `audio_track`) is a track number or a language; a
    language picks the first track tagged with it. Without it, the first track
    in the source language, else the track marked default, else the first.
    A wanted track that is not there is this video's error, naming what is there.
    """
    from operators import languages

    listing = ", ".join(f"{i} {tag or 'untagged'}" for i, (tag, _) in enumerate(tracks)) or "none"
    if wanted is not None and wanted.isdigit():
        if int(wanted) >= len(tracks):
            raise MediaError(f"audio track {wanted} does not exist: the file's audio tracks are {listing}")
        return int(wanted)
    if wanted is not None:
        want = languages.base(wanted)
        for i, (tag, _) in enumerate(tracks):
            if languages.from_track_tag(tag) == want:
                return i
        raise MediaError(f"no audio track is tagged {wanted!r}: the file's audio tracks are {listing}")
    if source_lang:
        for i, (tag, _) in enumerate(tracks):
            if languages.from_track_tag(tag) == languages.base(source_lang):
                return i
    return next((i for i, (_, default) in enumerate(tracks) if default), 0)


def probe(path: str, audio_track: str | None = None, source_lang: str | None = None) -> Probe:
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
        video_start_s = _start(v)
        tracks = [(s.metadata.get("language"), bool(s.disposition & av.stream.Disposition.default))
                  for s in container.streams.audio]
        k = choose_audio_track(tracks, audio_track, source_lang) if tracks else None
        a = container.streams.audio[k] if tracks else None
        frames, duration_s = int(v.frames or 0), _duration(container, v)
        audio_duration_s = _duration(container, a) if a else None
        if not frames:
            # Matroska and WebM keep no frame count, and their durations are the file's (every stream's
            # end, from the earliest start), not the stream's: count and time the packets instead.
            spans = _packet_spans(container, [v, a] if a else [v])
            frames, duration_s = spans[v.index]
            audio_duration_s = spans[a.index][1] if a else None
        if duration_s is None or duration_s <= 0 or not frames:
            raise MediaError("cannot tell the video's duration (truncated or still being written?)")
        return Probe(
            duration_s=duration_s, fps=fps, frame_count=frames,
            width=v.codec_context.width, height=v.codec_context.height,
            video_codec=v.codec_context.name, pixel_format=v.codec_context.pix_fmt or "",
            audio_sample_rate_hz=a.codec_context.sample_rate if a else None,
            audio_channels=a.codec_context.layout.nb_channels if a else None,
            audio_duration_s=audio_duration_s,
            audio_start_offset_s=_start(a) - video_start_s if a else None,
            audio_track=k,
        )


def _start(stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _packet_spans(container, streams) -> dict[int, tuple[int, float | None]]:
    """Per stream index: its packets and the time from the first one's start to the last one's end
    (demuxed, not decoded)."""
    count = {s.index: 0 for s in streams}
    first: dict[int, float] = {}
    end: dict[int, float] = {}
    for packet in container.demux(*streams):
        if packet.pts is None or not packet.size:
            continue
        i, t = packet.stream.index, float(packet.pts * packet.time_base)
        count[i] += 1
        first[i] = min(first.get(i, t), t)
        end[i] = max(end.get(i, t), t + float((packet.duration or 0) * packet.time_base))
    return {i: (n, end[i] - first[i] if n and end[i] > first[i] else None) for i, n in count.items()}


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


def decoded(path: str, start_frame: int = 0, end_frame: int | None = None,
            frame_times_pts_s: "np.ndarray | None" = None, damaged: list | None = None,
            preview: bool = False):
    """(index, time_s, av.VideoFrame) for every frame of the first video stream, in order.

    Times are relative to the first frame, so they line up with the audio that
    `ProbeMedia` extracted (which starts with the first frame, its own start
    offset applied). The frames are the decoder's: copy before writing into them.

    With a range, only frames [start_frame, end_frame) come out: the decoder
    seeks to the keyframe before the start (a shard of a long video does not
    decode everything before it), and `frame_times_pts_s` (every frame's
    presentation time, from `frame_times`) tells each decoded frame's index.

    A packet that does not decode (damaged data) raises, unless a `damaged`
    list is given: then its time (s, or None) is added to the list, the
    decoder goes on with the next packet, and the frames it could not make
    are missing from what comes out (the caller sees the gap in the indices).

    `preview`: for a low-resolution look (shot detection), the H.264/HEVC
    decoder skips its loop filter (8% of the decode's CPU); edges come out
    slightly blockier.
    """
    import av
    import numpy as np

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if preview:
            stream.codec_context.options = {"skip_loop_filter": "all"}
        if start_frame == 0 and end_frame is None and damaged is None:
            first = None
            for i, f in enumerate(_frames(container, stream, damaged)):
                t = float(f.time) if f.time is not None else i / float(stream.average_rate or 25)
                first = t if first is None else first
                yield i, t - first, f
            return
        if frame_times_pts_s is None:
            raise ValueError("decoding a range of frames needs the frame times")
        times = frame_times_pts_s
        end_frame = len(times) if end_frame is None else min(end_frame, len(times))
        # Half the shortest frame interval: a decoded frame's time names its index without ambiguity.
        tolerance = float(np.min(np.diff(times))) / 2 if len(times) > 1 else 0.5
        if start_frame > 0:
            container.seek(int(times[start_frame] / stream.time_base), stream=stream, backward=True)
        for f in _frames(container, stream, damaged):
            if f.time is None:
                continue
            t = float(f.time)
            i = int(np.searchsorted(times, t - tolerance))
            if i >= end_frame:
                break
            if i < start_frame or abs(times[i] - t) > tolerance:
                continue
            yield i, t - float(times[0]), f


def _frames(container, stream, damaged: list | None):
    import av

    if damaged is None:
        yield from container.decode(stream)
        return
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            damaged.append(float(packet.pts * stream.time_base) if packet.pts is not None else None)
            continue
        yield from frames


def frame_times(path: str) -> "np.ndarray":
    """Presentation time (s) of every frame of the first video stream, in order, from its packets
    (demuxed, not decoded: seconds for a feature film)."""
    return seek_index(path)[0]


def seek_index(path: str) -> tuple["np.ndarray", "np.ndarray"]:
    """(`frame_times(path)`, the indices of the keyframes among them), from the packets: where a decode
    that seeks to a frame starts (`decoded` with a range goes back to the keyframe before it)."""
    import av
    import numpy as np

    with av.open(path) as container:
        stream = container.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None and p.size]
        base = float(stream.time_base)
    pts = np.array([p for p, _ in packets], dtype=np.float64)
    order = np.argsort(pts, kind="stable")
    keyframe = np.array([k for _, k in packets], dtype=bool)[order]
    return pts[order] * base, np.flatnonzero(keyframe)


def frames(path: str, pixel_format: str = "rgb24", only: set[int] | None = None, start_frame: int = 0,
           end_frame: int | None = None, frame_times_pts_s: "np.ndarray | None" = None):
    """Decode frames of the first video stream, in order, as `Frame`s (times and range as in `decoded`).

    With `only`, frames whose index is not in it come with `image=None`
    (decoded, since H.264 frames depend on each other, but not converted).
    "gray" frames are `luma`'s.
    """
    for i, t, f in decoded(path, start_frame, end_frame, frame_times_pts_s):
        image = None
        if only is None or i in only:
            image = luma(f) if pixel_format == "gray" else f.to_ndarray(format=pixel_format)
        yield Frame(i, t, f.pts, image)


def plane_arrays(frame) -> list["np.ndarray"]:
    """Writable views of a planar frame's planes, (height, width) each, uint8 or uint16 (10-bit and up)."""
    import numpy as np

    deep = max(c.bits for c in frame.format.components) > 8
    dtype = np.dtype("<u2") if deep else np.dtype(np.uint8)
    return [np.frombuffer(p, dtype).reshape(p.height, p.line_size // dtype.itemsize)[:, :p.width]
            for p in frame.planes]


def luma(frame) -> "np.ndarray":
    """A frame's brightness as a new contiguous uint8 (H, W) array: a copy of its Y plane where it is an
    8-bit YUV frame (no conversion; limited range), else swscale's grayscale."""
    import numpy as np

    name = frame.format.name
    if name.startswith(("yuv", "yuvj", "nv12", "nv21")) and max(c.bits for c in frame.format.components) == 8:
        return np.array(plane_arrays(frame)[0], copy=True, order="C")
    return frame.to_ndarray(format="gray")


def small_bgr(frame, width: int, height: int) -> "np.ndarray":
    """A frame scaled to (width, height), BGR as OpenCV takes it. 8-bit 4:2:0 frames are scaled plane
    by plane and converted at the small size (a tenth of converting 1080p first); others by swscale."""
    import cv2
    import numpy as np

    if frame.format.name != "yuv420p" or width % 2 or height % 2:
        return frame.reformat(width=width, height=height, format="bgr24").to_ndarray()
    y, u, v = plane_arrays(frame)[:3]
    half = (width // 2, height // 2)
    # I420's layout: Y, then U and V (each a quarter of Y), as OpenCV's limited-range BT.601 converter reads it.
    i420 = np.concatenate([cv2.resize(y, (width, height), interpolation=cv2.INTER_LINEAR).ravel(),
                           cv2.resize(u, half, interpolation=cv2.INTER_LINEAR).ravel(),
                           cv2.resize(v, half, interpolation=cv2.INTER_LINEAR).ravel()])
    return cv2.cvtColor(i420.reshape(height * 3 // 2, width), cv2.COLOR_YUV2BGR_I420)


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
