"""Lip-sync score of the finished video, measured from its pixels.

For every dubbed line with a visible speaker, the speaker's landmarks are
measured again on the decoded output (the renderer's own shapes are not
trusted), smoothed like the source's, and the mouth opening is
cross-correlated with the dub speech envelope over +-`score.sync_max_offset_frames`.
The offset of the peak is `sync_offset_frames` (positive: the mouth moves
after the sound) and the Pearson r there is `sync_confidence`. The same
score of the source against its own audio (`source_sync_*`, from the lip
model stage) is the reference: a good dub is near offset 0 with a
confidence close to the source's.

Mouth stability: the frame-to-frame movement of the measured lips (face
frame, so head motion does not count) in each re-rendered line, over the
same of the source in the same frames (`mouth_change_ratio`; 1 = as steady
as the source, well above 1 = a flickering render).
"""
from __future__ import annotations

import numpy as np

from operators import face_geometry as geometry
from operators import lipsync
from operators import paths
from operators import visual
from operators import uri as uris
from operators.backends import load_faces
from operators.backends.protocols import FaceBox
from operators.base import Operator, Resources
from operators.lip_model import frames_in, landmarks_by_frame, line_span_s, segment_sync, track_series
from operators.media import frames, seek_index
from operators.plan_lips import dub_speech_16k, load_targets
from operators.schema import RESULT
from operators.faces_file import load as load_faces_file
from operators.track_faces import smooth


def box_around(landmarks: np.ndarray) -> FaceBox:
    """A detector-like box from landmarks: the face's width, from the brows' height to the chin."""
    x0, y0 = landmarks.min(axis=0)
    x1, y1 = landmarks.max(axis=0)
    return FaceBox(float(x0), float(y0), float(x1), float(y1))


def decode_ranges(wanted: list[int], keyframes: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame ranges that cover the sorted frame indices `wanted`, one decode each.

    A decode from a seek starts at the keyframe before its first frame. Where
    that keyframe is not past the end of the range before, a seek would
    decode frames that the range before can reach by going on, so it goes on.
    """
    ranges: list[list[int]] = []
    for f in wanted:
        if ranges and f <= ranges[-1][1]:
            ranges[-1][1] = max(ranges[-1][1], f + 1)
            continue
        k = int(np.searchsorted(keyframes, f, side="right")) - 1
        seek_from = int(keyframes[k]) if k >= 0 else 0
        if ranges and seek_from <= ranges[-1][1]:
            ranges[-1][1] = f + 1
        else:
            ranges.append([f, f + 1])
    return [(a, b) for a, b in ranges]


class ScoreSync(Operator):
    name = "sync"
    reads = ("video_out_uri", "faces_uri", "segments", "lip_targets_uri", "shards")
    writes = ("sync_offset_frames", "sync_confidence", "mouth_change_ratio", "segments.sync_offset_frames",
              "segments.sync_confidence", "segments.mouth_change_ratio", "segments.visual_ssim",
              "segments.visual_seam", "segments.visual_flicker", "segments.mouth_shape_error", "visual_ssim_min",
              "visual_seam_max", "visual_flicker_max", "mouth_shape_error_max", "frames_kept_by_guard",
              "segments.notes", "segments.lip_frames_rendered", "segments.lip_reason")
    resources = Resources(num_cpus=1, pool=(1, 2))
    output_schema = RESULT

    def setup(self) -> None:
        self.backend = self.backend or load_faces(self.config.faces)

    def process_row(self, row: dict) -> dict:
        segments = [dict(s) for s in row["segments"]]
        scored = [s for s in segments if s.get("speaker_track_id") is not None and s.get("fit_uri")]
        if not scored or not row.get("video_out_uri"):
            return {**row, "segments": segments}
        max_offset = self.config.score.sync_max_offset_frames
        faces = load_faces_file(row["faces_uri"], with_crops=False)
        times = faces["frame_times_s"]
        # The dub's envelope where lines are scored, from the dub speech around each line only.
        window_s = lipsync.frame_window_s(times, row["fps"])
        envelope = np.full(len(times), lipsync.ENVELOPE_FLOOR_DB)
        for s in scored:
            t0, t1 = s["placed_start_s"] - 1.0, s["placed_end_s"] + 1.0
            speech, origin_s = dub_speech_16k(segments, t0, t1)
            idx = frames_in(times, max(0.0, t0), t1)
            envelope[idx] = lipsync.speech_envelope_db(speech, times[idx] - origin_s, window_s)

        # Which frames to measure, on which track: each line's dub time and source time, widened by the search.
        wanted: dict[int, int] = {}
        speakers = {s["speaker_track_id"] for s in scored}
        track_frames = {tid: set(track_series(faces, tid)[0].tolist()) for tid in speakers}
        for s in scored:
            tid = s["speaker_track_id"]
            lo = frames_in(times, *line_span_s(s))
            if not len(lo):
                continue
            for f in range(max(0, lo[0] - max_offset), min(len(times), lo[-1] + max_offset + 1)):
                if f in track_frames[tid]:
                    wanted[f] = tid
        source_lm = {tid: landmarks_by_frame(faces, tid) for tid in set(wanted.values())}
        measured: dict[int, dict[int, np.ndarray]] = {tid: {} for tid in source_lm}
        with uris.local_copy(row["video_out_uri"]) as path:
            # Only the scored lines' frames are decoded (from a seek each), converted and measured: the
            # stage's cost follows the dubbed lines with a visible speaker, not the video's length.
            times_pts, keyframes = seek_index(path)
            only = set(wanted)
            pixel_format = "gray" if getattr(self.backend, "accepts_gray", False) else "rgb24"
            for start, end in decode_ranges(sorted(only), keyframes):
                for frame in frames(path, pixel_format, only=only, start_frame=start, end_frame=end,
                                    frame_times_pts_s=times_pts):
                    tid = wanted.get(frame.index)
                    if frame.image is not None:
                        box = box_around(source_lm[tid][frame.index])
                        measured[tid][frame.index] = self.backend.landmarks(frame.image, box)

        openings, rendered_lm = {}, {}
        for tid, by_frame in measured.items():
            idx = np.array(sorted(by_frame))
            opening = np.full(len(times), np.nan)
            rendered_lm[tid] = {}
            if len(idx):
                # smoothed like the source's landmarks, so the two compare like for like
                lm = smooth(np.array([by_frame[i] for i in idx]), self.config.faces.smooth_frames)
                opening[idx] = geometry.mouth_opening(lm)
                rendered_lm[tid] = dict(zip(idx.tolist(), lm))
            openings[tid] = opening

        changes = []   # (rendered, source, frames) per re-rendered line
        quality = self._quality(row) if any(s.get("lip_frames_rendered") for s in scored) else {}
        targets = load_targets(row["lip_targets_uri"]) if quality and row.get("lip_targets_uri") else {}
        for s in scored:
            if not s.get("lip_frames_rendered"):
                continue
            tid = s["speaker_track_id"]
            idx = frames_in(times, *line_span_s(s))
            s.update(visual.line_scores(quality, idx))
            kept = sum(1 for f in idx if quality.get(int(f), {}).get("kept"))
            if kept:
                # The render guard shipped the source's frames from a broken one to the line's end.
                guard = self.config.lips
                s["lip_frames_rendered"] = max(0, s["lip_frames_rendered"] - kept)
                s["notes"] = [*(s.get("notes") or []),
                              f"lips: {kept} frame(s) left as they were: the render broke the face there (SSIM "
                              f"around the mouth < {guard.guard_min_ssim} or a seam > {guard.guard_max_seam})"]
                if not s["lip_frames_rendered"]:
                    s["lip_reason"] = "the renderer could not draw this face well (render guard): left as it was"
            s["mouth_shape_error"] = shape_error(idx, tid, targets, rendered_lm.get(tid, {}), source_lm.get(tid, {}))
            rendered = lipsync.mouth_change(rendered_lm.get(tid, {}), idx)
            source = lipsync.mouth_change(source_lm.get(tid, {}), idx)
            if rendered is not None and source:
                s["mouth_change_ratio"] = rendered / source
                changes.append((rendered, source, len(idx)))
        change_ratio = (sum(r * n for r, _, n in changes) / sum(src * n for _, src, n in changes)
                        if changes else None)

        curves, weights = [], []
        for s in scored:
            idx = frames_in(times, s["placed_start_s"], s["placed_end_s"])
            if len(idx) < 5:
                continue
            curve = segment_sync(openings[s["speaker_track_id"]], envelope, idx, max_offset)
            s["sync_offset_frames"], s["sync_confidence"] = lipsync.sync_score([curve], [1.0])
            curves.append(curve)
            weights.append(s["placed_end_s"] - s["placed_start_s"])
        offset, confidence = lipsync.sync_score(curves, weights)
        return {**row, "segments": segments, "sync_offset_frames": offset, "sync_confidence": confidence,
                "mouth_change_ratio": change_ratio, **worst_lines(segments),
                "frames_kept_by_guard": sum(1 for q in quality.values() if q.get("kept"))}

    def _quality(self, row: dict) -> dict[int, dict[str, float]]:
        """Every shard's per-frame visual scores (operators/render.py writes them beside its shard)."""
        out: dict[int, dict[str, float]] = {}
        for k in range(len(row.get("shards") or [])):
            uri = paths.render_quality(self.work_dir, row["video_id"], row["lang"], k)
            if uris.exists(uri):
                with uris.local_copy(uri) as local:
                    out.update(visual.load(local))
        return out


def shape_error(idx: np.ndarray, tid: int, targets: dict[int, tuple[int, np.ndarray]],
                measured: dict[int, np.ndarray], source: dict[int, np.ndarray]) -> float | None:
    """Median over a line's re-rendered frames of the mean distance between the lips measured on the
    output and the lips asked for, in face units (the source face's eye-to-eye distance)."""
    errors = [float(np.linalg.norm(measured[f][geometry.LIPS] - targets[f][1], axis=1).mean()
                    / geometry.face_scale(source[f]))
              for f in map(int, idx) if f in targets and targets[f][0] == tid and f in measured and f in source]
    return float(np.median(errors)) if errors else None


def worst_lines(segments: list[dict]) -> dict[str, float | None]:
    """The result's visual scores: its worst line's, each."""
    def pick(key: str, fn) -> float | None:
        values = [s[key] for s in segments if s.get(key) is not None]
        return fn(values) if values else None

    return {"visual_ssim_min": pick("visual_ssim", min), "visual_seam_max": pick("visual_seam", max),
            "visual_flicker_max": pick("visual_flicker", max), "mouth_shape_error_max": pick("mouth_shape_error", max)}
