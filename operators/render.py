"""Per shard and language: the visible speakers' lips drawn to the planned shapes, and the shard encoded.

The mouth shape of every frame to re-render was planned for the whole video
(operators/plan_lips.py); each shard draws its own frames from that plan, so
shards of one video render side by side on every worker, and a worker holds
one shard's frames and dub speech, never the video's. Only the mouth box of
a re-rendered frame changes; the rest of it, and every other frame, is
passed through as decoded (planes untouched).

A shard's file is kept with a fingerprint of what it was drawn from (the
source, the planned mouth shapes of its frames, the dub it hears, the lips
and output settings): a resumed job does not draw it again.

Each shard is encoded on its own, in the codec and container that
operators/formats.py picks (H.264 by default, ProRes for ProRes; the
source's chroma and bit depth), with the source's frame times (variable
frame rates stay variable), from its first frame at 0; operators/stitch.py
joins the shards' files without re-encoding. Where no frame of a video needs
new lips, nothing is encoded: mux copies the source's stream, or encodes it
where the container cannot hold it.
"""
from __future__ import annotations

import hashlib
import json
from collections import deque

import numpy as np

from operators import checkpoint, formats
from operators import face_geometry as geometry
from operators import lipsync
from operators import visual
from operators import paths
from operators import uri as uris
from operators.backends import load_renderer
from operators.base import MissingDependency, Operator, Resources, add_model
from operators.faces_file import load as load_faces_file
from operators.lip_model import landmarks_by_frame
from operators.media import MediaError, decoded, plane_arrays
from operators.plan_lips import dub_speech_16k, load_targets
from operators.plan_shards import load_frame_times
from operators.schema import RESULT_SHARD_ROW

RENDERER_AUDIO_WINDOW_S = 0.2
# Frames a rendered mouth takes to fade back to the source where the next frame fails the guard.
GUARD_RAMP_FRAMES = 3


class RenderLips(Operator):
    name = "render"
    reads = ("uri", "lip_targets_uri", "faces_uri", "shards", "shard_index", "frame_times_uri", "segments")
    writes = ("shard_output_uri", "source_notes")
    resources = Resources(num_cpus=1, memory_gb=1.5)
    output_schema = RESULT_SHARD_ROW

    def check_dependencies(self) -> None:
        if self.backend is None and self.config.lips.enabled:
            try:
                load_renderer(self.config.lips)    # a renderer's constructor is cheap; models load in prepare()
            except ValueError as e:
                raise MissingDependency(str(e)) from None

    def _new_renderer(self):
        if self.backend is not None:
            import copy

            return copy.deepcopy(self.backend)
        return load_renderer(self.config.lips)

    def process_row(self, row: dict) -> dict:
        if not row.get("lip_targets_uri"):
            return row                                   # nothing to re-render in this video
        shard = row["shards"][row["shard_index"]]
        start, end = shard["start_frame"], shard["end_frame"]
        targets = load_targets(row["lip_targets_uri"], start, end)
        tracks = {t for t, _ in targets.values()}
        times_pts = load_frame_times(row["frame_times_uri"])
        times = times_pts - times_pts[0]
        # The renderer hears the dub around each frame: the shard's stretch of it, with a margin.
        half_s = RENDERER_AUDIO_WINDOW_S / 2
        speech, origin_s = dub_speech_16k(row["segments"], float(times[start]) - half_s,
                                          float(times[end - 1]) + 2 * half_s)
        fmt = formats.choose(row["video_codec"], row["pixel_format"], row["width"], row["height"],
                             self.config.output, rerendered=True)
        out_uri = paths.rendered_shard(self.work_dir, row["video_id"], row["lang"], row["shard_index"], fmt.suffix)
        print_ = self._fingerprint(row, targets, speech, origin_s, fmt)
        done_uri = out_uri + ".done.json"
        done = json.loads(uris.read_bytes(done_uri)) if self.config.run.resume and uris.exists(done_uri) else None
        if done is not None and done.get("fingerprint") == print_ and uris.exists(out_uri):
            held = done["held"]                          # a resumed job: this shard is drawn already
        else:
            faces = load_faces_file(row["faces_uri"], crops_of=tracks, for_shard=row["shard_index"])
            renderers = {tid: self._prepared_renderer(faces, tid) for tid in sorted(tracks)}
            quality: dict[int, dict[str, float]] = {}
            with uris.local_copy(paths.picture(row)) as src, uris.staged_output(out_uri) as out:
                held = self._encode(src, out, fmt, targets, faces, renderers, speech, origin_s,
                                    start, end, times_pts, quality)
            with uris.staged_output(paths.render_quality(self.work_dir, row["video_id"], row["lang"],
                                                         row["shard_index"])) as local:
                visual.save(local, quality)
            # Written after the shard's file is in place: a killed render leaves no marker, and is redone.
            uris.write_bytes(done_uri, json.dumps({"fingerprint": print_, "held": held}).encode())
        notes = list(row.get("source_notes") or [])
        if held:
            # Damaged data in the middle of the file: the frames that do not decode show the nearest
            # frame that did, so the dub keeps every frame, its timing and the other shards' lips.
            notes.append(f"shard {row['shard_index']} ({shard['start_s']:.2f}-{shard['end_s']:.2f} s): "
                         f"{len(held)} frames could not be decoded (damaged data, frames {_ranges(held)}); "
                         f"each shows the nearest frame that could")
        if tracks:
            add_model(row, self.name, self._new_renderer().model_info())
        return {**row, "shard_output_uri": out_uri, "source_notes": notes}

    def _fingerprint(self, row: dict, targets: dict[int, tuple[int, np.ndarray]], speech: np.ndarray,
                     origin_s: float, fmt: formats.OutputFormat) -> str:
        """What a shard's picture is drawn from: the source, the mouth shapes planned for its frames,
        the dub it hears, and the lips and output settings."""
        h = hashlib.sha256(checkpoint.fingerprint(row, self.config, ("lips", "output")).encode())
        h.update(json.dumps([row["lang"], row["shard_index"], row["shards"][row["shard_index"]],
                             repr(fmt), round(origin_s, 6)], sort_keys=True, default=str).encode())
        for index in sorted(targets):
            tid, lips = targets[index]
            h.update(np.array([index, tid], dtype=np.int64).tobytes())
            h.update(np.ascontiguousarray(lips, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(speech, dtype=np.float32).tobytes())
        return h.hexdigest()[:32]

    def _prepared_renderer(self, faces: dict[str, np.ndarray], tid: int):
        renderer = self._new_renderer()
        crops = faces.get(f"crops_{tid}")
        if crops is None or not len(crops):
            raise RuntimeError(f"no mouth crops kept for face track {tid}")
        lm_by_frame = landmarks_by_frame(faces, tid)
        origins = faces[f"crop_origin_{tid}"]
        crop_landmarks = np.array([lm_by_frame[int(f)] - o for f, o in zip(faces[f"crop_frame_{tid}"], origins)])
        renderer.prepare(list(crops), crop_landmarks)
        return renderer

    def _encode(self, src: str, out: str, fmt: formats.OutputFormat, targets: dict[int, tuple[int, np.ndarray]],
                faces: dict[str, np.ndarray], renderers: dict, speech: np.ndarray, origin_s: float,
                start: int, end: int, times_pts: np.ndarray, quality: dict[int, dict[str, float]]) -> list[int]:
        """Draw and encode frames [start, end); returns the frames that did not decode and were held.

        `quality` receives each re-rendered frame's visual scores against its source frame."""
        import av

        lm_rows = {tid: landmarks_by_frame(faces, tid) for tid in renderers}
        half = int(RENDERER_AUDIO_WINDOW_S / 2 * lipsync.SAMPLE_RATE_HZ)
        times = faces["frame_times_s"]
        with av.open(src) as source:
            in_stream = source.streams.video[0]
            time_base = in_stream.time_base
            # The shard's file starts at 0: stitching lays the shards end to end by their durations.
            first_pts = int(round(float(times_pts[start]) / float(time_base)))
            with av.open(out, "w", format=formats.MUXERS[fmt.container]) as sink:
                stream = sink.add_stream(fmt.encoder, rate=in_stream.average_rate or 25)
                stream.width, stream.height = in_stream.codec_context.width, in_stream.codec_context.height
                stream.pix_fmt = fmt.pixel_format
                stream.time_base = time_base
                stream.codec_context.time_base = time_base
                stream.options = formats.encoder_options(fmt, self.config.output)
                held: list[int] = []
                last = None
                cfg = self.config.lips
                # The last few frames wait here before the encoder: where a frame fails the guard, the
                # rendered ones before it fade back to the source instead of popping.
                waiting: deque = deque()            # [picture, index, (source picture, rgb, rendered, box, track)]
                stopped: dict[int, int] = {}        # track -> the last frame of its line kept as the source

                def put(picture, index: int) -> None:
                    picture.pts = int(round(float(times_pts[index]) / float(time_base))) - first_pts
                    picture.time_base = time_base
                    for packet in stream.encode(picture):
                        sink.mux(packet)

                def push(picture, index: int, drawn=None) -> None:
                    waiting.append([picture, index, drawn])
                    while len(waiting) > GUARD_RAMP_FRAMES:
                        put(*waiting.popleft()[:2])

                def fade_back(track: int) -> None:
                    """The waiting rendered frames of `track`, nearest the broken one most, back to the source."""
                    k = 0
                    for item in reversed(waiting):
                        if item[2] is None or item[2][4] != track:
                            break
                        k += 1
                        source_picture, rgb, new, box, _ = item[2]
                        w = 1.0 - k / (GUARD_RAMP_FRAMES + 1)            # share of the source
                        mixed = np.clip(rgb * w + new * (1.0 - w), 0, 255).astype(np.uint8)
                        item[0] = _with_box(source_picture, mixed, box)

                damaged: list = []
                before = None                           # (index, track, source RGB, rendered RGB)
                for index, _, decoded_frame in decoded(src, start, end, times_pts, damaged=damaged):
                    picture = decoded_frame.reformat(format=fmt.pixel_format)
                    drawn = None
                    if index in targets:
                        tid, lips = targets[index]
                        if stopped.get(tid) == index - 1:
                            stopped[tid] = index                 # the rest of the line stays as it was
                            quality[index] = dict(visual.KEPT)
                        else:
                            lm = lm_rows[tid][index]
                            centre = int((times[index] - origin_s) * lipsync.SAMPLE_RATE_HZ)
                            rgb = decoded_frame.to_ndarray(format="rgb24")
                            new = renderers[tid].render(rgb, lm, lips, speech[max(0, centre - half):centre + half])
                            previous = before[2:] if before is not None and before[:2] == (index - 1, tid) else None
                            scores = visual.frame_scores(rgb, new, lm, lips, previous)
                            box = geometry.mouth_box(lm)
                            if visual.failed_guard(scores, cfg.guard_min_ssim, cfg.guard_max_seam):
                                stopped[tid] = index
                                quality[index] = dict(visual.KEPT)
                                fade_back(tid)
                            else:
                                quality[index] = scores
                                drawn = (picture, rgb, new, box, tid)
                                picture = _with_box(picture, new, box)
                                before = (index, tid, rgb, new)
                    # frames before this one that did not decode hold this one (or the one before them)
                    missing = range(start if last is None else last[1] + 1, index)
                    if missing:
                        while waiting:
                            put(*waiting.popleft()[:2])
                    for i in missing:
                        put(_copied(last[0] if last is not None else picture), i)
                    held.extend(missing)
                    push(picture, index, drawn)
                    last = (picture, index)
                if last is None:
                    raise MediaError(f"frames {start}-{end} of the picture: none could be decoded "
                                     f"({len(damaged)} damaged packets)")
                while waiting:
                    put(*waiting.popleft()[:2])
                last_picture = last[0]
                for i in range(last[1] + 1, end):
                    put(_copied(last_picture), i)
                    held.append(i)
                for packet in stream.encode():
                    sink.mux(packet)
        return held


def _copied(picture):
    """A new frame with the same pictures (a frame handed to the encoder is not sent again)."""
    import av

    out = av.VideoFrame(picture.width, picture.height, picture.format.name)
    for d, s in zip(plane_arrays(out), plane_arrays(picture)):
        d[:] = s
    return out


def _ranges(frames: list[int]) -> str:
    """'3-7, 12' for [3, 4, 5, 6, 7, 12]."""
    spans: list[list[int]] = []
    for f in frames:
        if spans and f == spans[-1][1] + 1:
            spans[-1][1] = f
        else:
            spans.append([f, f])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)


def _with_box(picture, rgb: np.ndarray, box: tuple[int, int, int, int]):
    """A new frame: `picture` with the box taken from the rendered RGB frame, every other sample as decoded.

    Works in the picture's own planar format (any chroma subsampling, 8 or 10 bits, odd sizes): the
    box is shrunk to whole chroma samples, so no chroma sample outside it mixes rendered pixels in.
    """
    import av

    width, height = picture.width, picture.height
    out = av.VideoFrame(width, height, picture.format.name)
    src, dst = plane_arrays(picture), plane_arrays(out)
    for d, s in zip(dst, src):
        d[:] = s
    sub_x = max(-(-width // p.shape[1]) for p in src)       # 2 for subsampled chroma, 1 for 4:4:4
    sub_y = max(-(-height // p.shape[0]) for p in src)
    x0, y0, x1, y1 = box
    x0, y0 = -(-max(0, x0) // sub_x) * sub_x, -(-max(0, y0) // sub_y) * sub_y
    x1 = width if x1 >= width else x1 // sub_x * sub_x
    y1 = height if y1 >= height else y1 // sub_y * sub_y
    if x1 - x0 < sub_x or y1 - y0 < sub_y:
        return out
    # Only the box is converted (a whole 1080p frame took ~15 ms a frame); it starts on whole chroma
    # samples, so each plane of the converted box lands at the box's origin divided by its subsampling.
    crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    patch = av.VideoFrame.from_ndarray(crop, format="rgb24").reformat(format=picture.format.name)
    for d, n in zip(dst, plane_arrays(patch)):
        px, py = -(-width // d.shape[1]), -(-height // d.shape[0])
        r0, c0 = y0 // py, x0 // px
        d[r0:r0 + n.shape[0], c0:c0 + n.shape[1]] = n[:d.shape[0] - r0, :d.shape[1] - c0]
    return out
