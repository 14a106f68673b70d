"""What a reviewer would see in a re-rendered mouth, measured per frame from the pixels.

A renderer only changes the mouth box (face_geometry.mouth_box). Per
re-rendered frame, against the source frame at the same time:

- `ssim`: structural similarity (SSIM, scikit-image) of the box outside the
  lips, in luma: the skin, chin, neck and collar around the mouth should
  keep their structure. A smear, a ghost or a chin pulled out of shape lowers
  it; a new mouth inside the lips does not.
- `seam`: how abruptly the change stops at the box's edge: the gradient
  (Sobel, luma levels per pixel) of the difference image around the box
  border, averaged along rings at each distance from it, the highest ring. A renderer that fades into the frame scores near 0;
  a pasted patch draws its outline.
- `flicker`: how much what the renderer changed around the lips changes from
  frame to frame (mean |(dub - source) now - (dub - source) a frame before|,
  luma levels, the same box on both frames): the skin boiling or popping
  while the source's own motion, and the mouth itself, do not count.

The re-measured mouth against the shape asked for is the sync stage's
(operators/sync.py): it measures the finished video's landmarks anyway.
"""
from __future__ import annotations

import numpy as np

from operators import face_geometry as geometry

# The lips and a margin around them (a share of the mouth's width) are where the mouth is meant to change.
LIPS_MARGIN = 0.15
SEAM_BAND_PX = 3
KEYS = ("ssim", "seam", "flicker", "kept")    # kept: 1 where the render guard shipped the source frame


def _gray(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)


def _lips_mask(shape: tuple[int, int], offset: np.ndarray, *lips: np.ndarray) -> np.ndarray:
    import cv2

    mask = np.zeros(shape, np.uint8)
    width = max(float(np.ptp(np.asarray(lips[0])[:, 0])), 1.0)
    for points in lips:
        outer = np.asarray(points, np.float64)[:12] - offset
        cv2.fillPoly(mask, [np.round(outer).astype(np.int32)], 255)
    grow = max(1, int(round(LIPS_MARGIN * width)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    return cv2.dilate(mask, kernel) > 0


def frame_scores(source: np.ndarray, dub: np.ndarray, landmarks: np.ndarray, target_lips: np.ndarray,
                 previous: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
    """Scores of one re-rendered RGB frame against its source frame (both full frames, same size).

    `previous`: (source, dub) of the frame before in the same line, for the flicker; None at a line's start.
    """
    import cv2
    from skimage.metrics import structural_similarity

    height, width = source.shape[:2]
    x0, y0, x1, y1 = geometry.mouth_box(landmarks)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return {"ssim": np.nan, "seam": np.nan, "flicker": np.nan, "kept": 0.0}
    src, out = _gray(source[y0:y1, x0:x1]), _gray(dub[y0:y1, x0:x1])
    _, ssim_map = structural_similarity(src, out, data_range=255.0, full=True, win_size=7)
    around = ~_lips_mask(src.shape, np.array([x0, y0]), landmarks[geometry.LIPS], target_lips)
    ssim = float(ssim_map[around].mean()) if around.any() else np.nan

    seam = _seam(source, dub, (x0, y0, x1, y1))
    flicker = np.nan
    if previous is not None and around.any():
        prev_src, prev_out = (_gray(p[y0:y1, x0:x1]) for p in previous)
        flicker = float(np.abs((out - src) - (prev_out - prev_src))[around].mean())
    return {"ssim": ssim, "seam": seam, "flicker": flicker, "kept": 0.0}


KEPT = {"ssim": 1.0, "seam": 0.0, "flicker": float("nan"), "kept": 1.0}


def _seam(source: np.ndarray, dub: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Mean gradient of the difference image in a band straddling the box's edge (luma levels per px)."""
    import cv2

    height, width = source.shape[:2]
    x0, y0, x1, y1 = box
    b = SEAM_BAND_PX
    gx0, gy0, gx1, gy1 = max(0, x0 - b - 1), max(0, y0 - b - 1), min(width, x1 + b + 1), min(height, y1 + b + 1)
    diff = _gray(dub[gy0:gy1, gx0:gx1]) - _gray(source[gy0:gy1, gx0:gx1])
    gradient = np.hypot(cv2.Sobel(diff, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(diff, cv2.CV_32F, 0, 1, ksize=3)) / 8
    yy, xx = np.mgrid[gy0:gy1, gx0:gx1]
    to_edge = np.minimum.reduce([np.abs(xx - x0), np.abs(xx - (x1 - 1)), np.abs(yy - y0), np.abs(yy - (y1 - 1))])
    inside_span = (xx >= x0 - b) & (xx < x1 + b) & (yy >= y0 - b) & (yy < y1 + b)
    # The band's rings (by distance to the edge, either side): a hard edge is a peak in one or two of them.
    rings = [gradient[(to_edge == d) & inside_span] for d in range(b + 1)]
    rings = [r.mean() for r in rings if r.size]
    return float(max(rings)) if rings else float("nan")


def failed_guard(scores: dict[str, float], min_ssim: float, max_seam: float) -> bool:
    """A frame too broken to ship (lips.guard_*): the face around the mouth lost its structure, or a seam."""
    return bool((np.isfinite(scores["ssim"]) and scores["ssim"] < min_ssim)
                or (np.isfinite(scores["seam"]) and scores["seam"] > max_seam))


def line_scores(per_frame: dict[int, dict[str, float]], frames: np.ndarray) -> dict[str, float | None]:
    """A line's visual scores from its re-rendered frames (`frames`): the worst-but-one-in-twenty frame's
    SSIM, seam and flicker (a few bad frames are what a reviewer sees)."""
    rows = [per_frame[int(f)] for f in frames if int(f) in per_frame]

    def worst(key: str, q: float) -> float | None:
        values = np.array([r[key] for r in rows if np.isfinite(r[key])])
        return float(np.percentile(values, q)) if len(values) else None

    return {"visual_ssim": worst("ssim", 5), "visual_seam": worst("seam", 95), "visual_flicker": worst("flicker", 95)}


def save(path: str, per_frame: dict[int, dict[str, float]]) -> None:
    """The per-frame scores of one shard's re-rendered frames, as a small npz (local path)."""
    idx = np.array(sorted(per_frame), dtype=np.int64)
    np.savez(path, frame=idx, **{k: np.array([per_frame[int(i)][k] for i in idx], dtype=np.float32)
                                 for k in KEYS})


def load(path: str) -> dict[int, dict[str, float]]:
    with np.load(path) as z:
        return {int(f): {k: float(z[k][j]) if k in z else 0.0 for k in KEYS} for j, f in enumerate(z["frame"])}
