"""Per language: the visible speaker's lips re-rendered to the dub, and the picture encoded once.

What is re-rendered scales with speech, not with video length: only frames
of a speaker's track inside a dubbed line (widened to where the dub runs
over) plus short ramps get new mouth pixels. The rest of each frame, and
every other frame, is passed through as decoded (yuv420p planes untouched).

Mouth shapes come from the speaker's lip model applied to the dub speech,
in chunks of `lips.chunk_frames` that never cross a track (so never a
shot). Neighbouring chunks share `lips.overlap_frames` frames, where their
mouth shapes are cross-faded, so a chunk join does not jump. Where the dub
is silent the mouth goes to the speaker's rest shape; at the ends of each
rendered span it blends from the measured source shape over
`lips.ramp_frames`, so entering and leaving a line does not jump either.

The encode is in the codec and container that operators/formats.py picks
(H.264 by default, ProRes for ProRes; the source's chroma and bit depth),
with the source's frame times (variable frame rates stay variable), size and
frame count. Where no frame needs new lips, nothing is encoded here: mux
copies the source's stream, or encodes it where the container cannot hold it.
"""
from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass

import numpy as np

from operators import audio, formats
from operators import face_geometry as geometry
from operators import lipsync
from operators import paths
from operators import uri as uris
from operators.backends import load_renderer
from operators.base import MissingDependency, Operator, Resources, add_model
from operators.lip_model import frames_in, landmarks_by_frame, line_span_s, track_series
from operators.media import decoded, plane_arrays
from operators.schema import RESULT
from operators.faces_file import load as load_faces_file

RENDERER_AUDIO_WINDOW_S = 0.2


@dataclass
class Span:
    track_id: int
    frames: np.ndarray             # frame indices, consecutive frames of one track
    segment_ids: list[str]


def load_lip_models(lip_models_uri: str) -> dict[int, lipsync.LipModel]:
    """Track id -> its speaker's lip model (one model, learnt from all that person's tracks, serves each)."""
    with np.load(io.BytesIO(uris.read_bytes(lip_models_uri))) as data:
        models = {int(s): lipsync.LipModel.from_arrays(data, f"s{int(s)}_") for s in data["speaker_ids"]}
        return {int(t): models[int(s)] for t, s in zip(data["track_ids"], data["track_speaker_ids"])}


def dub_speech_16k(segments: list[dict], duration_s: float) -> np.ndarray:
    """The dub's speech alone (no background), mono 16 kHz, as placed in the video's time.

    A second longer than the video, so a window around its last frame is whole.
    """
    n_samples = int(round((duration_s + 1.0) * lipsync.SAMPLE_RATE_HZ))
    placed = []
    for s in segments:
        if s.get("fit_uri"):
            with uris.local_copy(s["fit_uri"]) as p:
                placed.append((s["placed_start_s"], audio.read_mono(p, lipsync.SAMPLE_RATE_HZ)[:, None]))
    return audio.place(placed, n_samples, lipsync.SAMPLE_RATE_HZ, 1)[:, 0]


def plan_spans(segments: list[dict], times: np.ndarray, faces: dict[str, np.ndarray],
               merge_gap_frames: int) -> list[Span]:
    """Frames to re-render per speaker: each dubbed line's source and dub time, on its speaker's track."""
    spans: list[Span] = []
    for s in segments:
        tid = s.get("speaker_track_id")
        if tid is None or not s.get("fit_uri"):
            continue
        start, end = line_span_s(s)
        track_frames = track_series(faces, tid)[0]
        inside = track_frames[(times[track_frames] >= start) & (times[track_frames] < end)]
        if len(inside):
            spans.append(Span(tid, inside, [s["segment_id"]]))
    spans.sort(key=lambda sp: (sp.track_id, sp.frames[0]))
    merged: list[Span] = []
    for sp in spans:
        last = merged[-1] if merged else None
        if last and last.track_id == sp.track_id and sp.frames[0] - last.frames[-1] <= merge_gap_frames + 1:
            track_frames = track_series(faces, sp.track_id)[0]
            between = track_frames[(track_frames >= last.frames[0]) & (track_frames <= max(sp.frames[-1],
                                                                                            last.frames[-1]))]
            merged[-1] = Span(sp.track_id, between, last.segment_ids + sp.segment_ids)
        else:
            merged.append(sp)
    return merged


def chunk_bounds(n: int, chunk: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) chunks covering range(n), neighbours sharing `overlap` items."""
    step = max(1, chunk - overlap)
    bounds, start = [], 0
    while True:
        end = min(n, start + chunk)
        bounds.append((start, end))
        if end >= n:
            return bounds
        start += step


def crossfade_chunks(n: int, bounds: list[tuple[int, int]], chunks: list[np.ndarray]) -> np.ndarray:
    """One sequence from overlapping chunks: in each overlap, a linear fade from one chunk into the next."""
    total = np.zeros((n, *chunks[0].shape[1:]))
    weight = np.zeros(n)
    for k, ((a, b), values) in enumerate(zip(bounds, chunks)):
        w = np.ones(b - a)
        if k > 0 and bounds[k - 1][1] > a:                      # shared with the previous chunk
            m = bounds[k - 1][1] - a
            w[:m] = (np.arange(m) + 1) / (m + 1)
        if k + 1 < len(bounds) and bounds[k + 1][0] < b:        # shared with the next chunk
            m = b - bounds[k + 1][0]
            w[-m:] = np.minimum(w[-m:], np.arange(m, 0, -1) / (m + 1))
        shape = (-1,) + (1,) * (values.ndim - 1)
        total[a:b] += w.reshape(shape) * values
        weight[a:b] += w
    return total / weight.reshape((-1,) + (1,) * (total.ndim - 1))


def edge_ramp(n: int, ramp: int) -> np.ndarray:
    """0 -> 1 over `ramp` frames at the start, 1 -> 0 at the end (never exactly 0 inside a span)."""
    w = np.ones(n)
    if ramp > 0:
        up = (np.arange(1, ramp + 1)) / (ramp + 1)
        k = min(ramp, n)
        w[:k] = np.minimum(w[:k], up[:k])
        w[n - k:] = np.minimum(w[n - k:], up[:k][::-1])
    return w


def target_shapes(span: Span, model: lipsync.LipModel, features: np.ndarray, envelope: np.ndarray,
                  source_lips: np.ndarray, chunk: int, overlap: int, ramp: int) -> np.ndarray:
    """Normalised lip shapes (n, 20, 2) for the span's frames.

    `features` and `envelope` are the dub's, at the span's frames;
    `source_lips` the measured source shapes there.
    """
    from operators.track_faces import smooth

    n = len(span.frames)
    bounds = chunk_bounds(n, chunk, overlap)
    # Each chunk is predicted on its own (as a renderer with state would render it)
    # and smoothed over time within itself; the overlaps hide where they differ.
    chunks = [smooth(model.predict(features[a:b]), 5) for a, b in bounds]
    predicted = crossfade_chunks(n, bounds, chunks)
    gate = lipsync.speech_gate(envelope).astype(np.float64) if envelope.size else np.zeros(0)
    gate = np.convolve(np.pad(gate, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    rest = model.rest_lips.reshape(20, 2)
    shaped = gate[:, None, None] * predicted + (1 - gate[:, None, None]) * rest
    w = edge_ramp(n, ramp)[:, None, None]
    return w * shaped + (1 - w) * source_lips


class RenderLips(Operator):
    name = "render"
    reads = ("uri", "faces_uri", "lip_models_uri", "segments")
    writes = ("rendered_video_uri", "lip_status", "lip_reason", "frames_rerendered", "share_rerendered",
              "segments.lip_frames_rendered")
    resources = Resources(num_cpus=1)
    output_schema = RESULT

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
        cfg = self.config.lips
        segments = [dict(s) for s in row["segments"]]
        unchanged = {**row, "segments": segments, "rendered_video_uri": None, "lip_status": "unchanged",
                     "frames_rerendered": 0, "share_rerendered": 0.0}
        if not cfg.enabled:
            return {**unchanged, "lip_reason": "lip sync disabled in config (lips.enabled = false)"}
        reason = _reasons(segments)
        if not row.get("lip_models_uri") or not any(s.get("speaker_track_id") is not None and s.get("fit_uri")
                                                    for s in segments):
            return {**unchanged, "lip_reason": reason or "no dubbed line has a visible speaker"}

        faces = load_faces_file(row["faces_uri"])
        times = faces["frame_times_s"]
        models = load_lip_models(row["lip_models_uri"])
        speech = dub_speech_16k(segments, max(row["duration_s"], float(times[-1])))
        features = lipsync.AudioFeatures(speech, cfg.context_s)
        envelope = lipsync.speech_envelope_db(speech, times, lipsync.frame_window_s(times, row["fps"]))

        spans = plan_spans(segments, times, faces, 2 * cfg.ramp_frames + cfg.overlap_frames)
        targets: dict[int, tuple[int, np.ndarray]] = {}
        for tid in sorted({sp.track_id for sp in spans}):
            model = models[tid]
            track_spans = [sp for sp in spans if sp.track_id == tid]
            span_frames = np.concatenate([sp.frames for sp in track_spans])
            dub_x = features.at(times[span_frames])
            dub_spans = [(s["placed_start_s"], s["placed_end_s"]) for s in segments if s.get("fit_uri")]
            x = lipsync.normalise_per_track(dub_x, lipsync.within(times[span_frames], dub_spans))
            lm_by_frame = landmarks_by_frame(faces, tid)
            offset = 0
            for sp in track_spans:
                n = len(sp.frames)
                source_lips = np.array([geometry.lips_in_face_frame(lm_by_frame[f]) for f in sp.frames])
                shapes = target_shapes(sp, model, x[offset:offset + n], envelope[sp.frames], source_lips,
                                       cfg.chunk_frames, cfg.overlap_frames, cfg.ramp_frames)
                offset += n
                for f, shape in zip(sp.frames.tolist(), shapes):
                    targets[f] = (tid, geometry.lips_in_image(lm_by_frame[f], shape))

        # A renderer per track, not per speaker: it fills the mouth from crops of the same shot, whose
        # light, size and angle match; the speaker's other shots would be worse material.
        renderers = {tid: self._prepared_renderer(faces, tid) for tid in {t for t, _ in targets.values()}}
        fmt = formats.choose(row["video_codec"], row["pixel_format"], row["width"], row["height"],
                             self.config.output, rerendered=True)
        rendered_video_uri = paths.rendered_video(self.work_dir, row["video_id"], row["lang"], fmt.suffix)
        with uris.local_copy(row["uri"]) as src, uris.staged_output(rendered_video_uri) as out:
            written = self._encode(src, out, fmt, targets, faces, renderers, speech)
        if written != len(times):           # the frames face tracking saw, one for one
            raise RuntimeError(f"re-rendered video has {written} frames, the source {len(times)}")
        add_model(row, self.name, next(iter(renderers.values())).model_info())

        rendered_frames = set(targets)
        for s in segments:
            if s.get("speaker_track_id") is not None and s.get("fit_uri"):
                idx = frames_in(times, *line_span_s(s))
                s["lip_frames_rendered"] = int(sum(int(i) in rendered_frames for i in idx))
        return {**row, "segments": segments, "rendered_video_uri": rendered_video_uri,
                "lip_status": "rendered", "lip_reason": reason,
                "frames_rerendered": len(targets), "share_rerendered": len(targets) / len(times)}

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
                faces: dict[str, np.ndarray], renderers: dict, speech: np.ndarray) -> int:
        import av

        lm_rows = {tid: landmarks_by_frame(faces, tid) for tid in renderers}
        half = int(RENDERER_AUDIO_WINDOW_S / 2 * lipsync.SAMPLE_RATE_HZ)
        times = faces["frame_times_s"]
        with av.open(src) as source:
            in_stream = source.streams.video[0]
            time_base = in_stream.time_base
            with av.open(out, "w", format=formats.MUXERS[fmt.container]) as sink:
                stream = sink.add_stream(fmt.encoder, rate=in_stream.average_rate or 25)
                stream.width, stream.height = in_stream.codec_context.width, in_stream.codec_context.height
                stream.pix_fmt = fmt.pixel_format
                stream.time_base = time_base
                stream.codec_context.time_base = time_base
                stream.options = formats.encoder_options(fmt, self.config.output)
                written = 0
                for index, _, decoded_frame in decoded(src):
                    picture = decoded_frame.reformat(format=fmt.pixel_format)
                    if index in targets:
                        tid, lips = targets[index]
                        lm = lm_rows[tid][index]
                        centre = int(times[index] * lipsync.SAMPLE_RATE_HZ)
                        rgb = decoded_frame.to_ndarray(format="rgb24")
                        new = renderers[tid].render(rgb, lm, lips, speech[max(0, centre - half):centre + half])
                        picture = _with_box(picture, new, geometry.mouth_box(lm))
                    picture.pts = decoded_frame.pts if decoded_frame.pts is not None else index
                    picture.time_base = time_base
                    for packet in stream.encode(picture):
                        sink.mux(packet)
                    written += 1
                for packet in stream.encode():
                    sink.mux(packet)
        return written


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


def _reasons(segments: list[dict]) -> str | None:
    """Why lines were left as they were, counted: '2 lines: speaker not visible: ...'."""
    counts = Counter(s["lip_reason"].split(" (")[0] for s in segments if s.get("lip_reason") and s.get("fit_uri"))
    if not counts:
        return None
    return "; ".join(f"{n} line{'s' if n > 1 else ''}: {why}" for why, n in counts.most_common())
