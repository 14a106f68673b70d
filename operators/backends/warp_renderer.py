"""The offline lip renderer: the mouth warped to the new shape and filled from the speaker's own frames.

Per frame, inside the mouth box only:

1. Warp. A thin-plate spline moves the 20 lip points from where they are to
   where the dub wants them; the chin follows the lower lip part of the way;
   points on the box border and the nose stay put, so nothing moves at the
   box's edge.
2. Fill. A warp cannot show what the source frame does not have: an open
   mouth's dark inside and teeth where the source mouth is closed, or closed
   lips where it is open. The speaker's own frame whose inner-lip shape is
   closest to the target (from a bank of their mouth crops) is warped onto
   the target lips, shifted to the frame's colour (the median over a ring of
   skin around the lips), and blended with a feathered mask over the target's
   lips and the source's own (where the source opened wider, what the warp
   leaves of its mouth would show as a second lip).
3. Blend. The result fades into the untouched frame towards the box border.

A speaker whose frames never show an open mouth (a talking photo, a face
seen only silent) has no inside of a mouth to copy: where the target opens
wider than any mouth of the bank, the inside of the target's inner lips is
shaded dark, in the lips' own hue, as a mouth's shadowed inside looks.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from operators import face_geometry as geometry
from operators.backends.protocols import ModelInfo

MAX_BANK = 300
# The spline is evaluated on a grid of about this many cells along the box's longer side, and
# interpolated between (a smooth field: at 1080p a 4 px grid cost 14 ms a warp and looked the same).
GRID_CELLS = 32
MIN_GRID_STEP_PX = 4
BORDER_POINTS_PER_SIDE = 16       # pinned points (no movement) along each side of the box
CHIN_FOLLOWS = 0.6                # share of the lower lip's movement the chin takes
INNER = slice(12, 20)             # inner-lip points (60-67) within the 20 lip points
# A target this much wider open (face units) than any mouth of the bank shows a shaded inside.
UNSEEN_OPENING = 0.02
MOUTH_INSIDE_SHADE = 0.3
OUTER = slice(0, 12)


def _border_points(width: int, height: int) -> np.ndarray:
    """Points along the box's border, at most 12 px apart on small boxes and
    `BORDER_POINTS_PER_SIDE` along each side of large ones."""
    xs = np.linspace(0, width - 1, max(2, min(width // 12 + 1, BORDER_POINTS_PER_SIDE)))
    ys = np.linspace(0, height - 1, max(2, min(height // 12 + 1, BORDER_POINTS_PER_SIDE)))
    top = np.column_stack([xs, np.zeros_like(xs)])
    bottom = np.column_stack([xs, np.full_like(xs, height - 1)])
    left = np.column_stack([np.zeros_like(ys), ys])
    right = np.column_stack([np.full_like(ys, width - 1), ys])
    return np.vstack([top, bottom, left, right])


def backward_map(dst: np.ndarray, src: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel of a (height, width) output, where to sample the input: a thin-plate spline
    through dst -> src, evaluated on a coarse grid and interpolated."""
    import cv2
    from scipy.interpolate import RBFInterpolator

    spline = RBFInterpolator(dst, src - dst, kernel="thin_plate_spline", smoothing=1e-3)
    step = max(MIN_GRID_STEP_PX, -(-max(width, height) // GRID_CELLS))
    gx = np.arange(0, width + step, step, dtype=np.float64)
    gy = np.arange(0, height + step, step, dtype=np.float64)
    mx, my = np.meshgrid(gx, gy)
    d = spline(np.column_stack([mx.ravel(), my.ravel()])).reshape(len(gy), len(gx), 2).astype(np.float32)
    # Pixel (x, y) lies at grid coordinate (x / step, y / step): sampled there, bilinearly.
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    full = cv2.remap(d, xx / step, yy / step, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return xx + full[..., 0], yy + full[..., 1]


def _inner_opening(inner: np.ndarray) -> np.ndarray:
    """Mean gap between the upper and lower inner lips (8 points, 60-67) in their own units, (n,)."""
    return np.mean([np.linalg.norm(inner[:, a] - inner[:, b], axis=-1) for a, b in ((1, 7), (2, 6), (3, 5))], axis=0)


def _shade_gap(image: np.ndarray, lips: np.ndarray, share: float, mouth_w: float) -> np.ndarray:
    """The mouth opened wider than the speaker's frames show: the middle `share` of the inner lips' height
    (between whatever teeth the warp stretched above and below it) shaded to the inside of a mouth, the
    lips' own colour darkened."""
    import cv2

    h, w = image.shape[:2]
    inner, outer = lips[INNER], lips[OUTER]
    centre_y = inner[:, 1].mean()
    gap = inner.copy()
    gap[:, 1] = centre_y + (inner[:, 1] - centre_y) * min(1.0, share)
    gap_mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(gap_mask, [np.round(gap).astype(np.int32)], 1.0)
    if not gap_mask.any():
        return image
    lip_band = np.zeros((h, w), np.uint8)
    cv2.fillPoly(lip_band, [np.round(outer).astype(np.int32)], 255)
    cv2.fillPoly(lip_band, [np.round(inner).astype(np.int32)], 0)
    colour = image[lip_band > 0].mean(axis=0) if lip_band.any() else image[gap_mask > 0].mean(axis=0)
    soft = cv2.GaussianBlur(gap_mask, (0, 0), max(1.0, 0.03 * mouth_w))[..., None]
    soft *= min(1.0, 2.0 * share)                  # a gap just past the widest seen is only a shadow
    return image * (1 - soft) + colour * MOUTH_INSIDE_SHADE * soft


class WarpRenderer:
    def __init__(self, config=None) -> None:
        self.config = config
        self._crops: list[np.ndarray] = []
        self._lips: np.ndarray = np.zeros((0, 20, 2))          # bank lip points, crop pixels
        self._inner: np.ndarray = np.zeros((0, 8, 2))          # bank inner lips, face frame
        self._widest = 0.0                                     # widest inner-lip opening of the bank, face units

    def model_info(self) -> ModelInfo:
        return ModelInfo(name="warp-renderer", version="1", license="MIT (raydub code, no weights)",
                         source="builtin")

    def prepare(self, frames: Sequence[np.ndarray], landmarks: np.ndarray) -> None:
        if len(frames) == 0:
            raise ValueError("the renderer needs at least one frame of the speaker")
        landmarks = np.asarray(landmarks, dtype=np.float64)
        inner = np.array([geometry.lips_in_face_frame(lm)[INNER] for lm in landmarks])
        keep = np.arange(len(frames))
        if len(keep) > MAX_BANK:
            # Spread over the range of mouth openings rather than over time.
            order = np.argsort(geometry.mouth_opening(landmarks))
            keep = order[np.linspace(0, len(order) - 1, MAX_BANK).astype(int)]
        self._crops = [np.asarray(frames[i]) for i in keep]
        self._lips = landmarks[keep][:, geometry.LIPS]
        self._inner = inner[keep]
        self._widest = float(_inner_opening(self._inner).max())

    def _nearest(self, target_inner: np.ndarray) -> int:
        d = np.linalg.norm(self._inner - target_inner[None], axis=2).mean(axis=1)
        return int(np.argmin(d))

    def render(self, frame: np.ndarray, landmarks: np.ndarray, target_lips: np.ndarray,
               audio_16k: np.ndarray | None = None) -> np.ndarray:
        import cv2

        if not self._crops:
            raise RuntimeError("prepare() the renderer with the speaker's frames first")
        height, width = frame.shape[:2]
        bx0, by0, bx1, by1 = geometry.mouth_box(landmarks)
        x0, y0, x1, y1 = max(0, bx0), max(0, by0), min(width, bx1), min(height, by1)
        w, h = x1 - x0, y1 - y0
        if w < 8 or h < 8:
            return frame.copy()
        offset = np.array([x0, y0], dtype=np.float64)
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        src_lips = landmarks[geometry.LIPS] - offset
        dst_lips = np.asarray(target_lips, dtype=np.float64) - offset

        # 1. warp the frame's own mouth
        lower_move = (dst_lips[[7, 8, 9, 17, 18, 19]] - src_lips[[7, 8, 9, 17, 18, 19]]).mean(axis=0)
        chin = landmarks[6:11] - offset
        inside = (chin[:, 0] > 1) & (chin[:, 0] < w - 2) & (chin[:, 1] > 1) & (chin[:, 1] < h - 2)
        nose = landmarks[31:36] - offset
        nose = nose[(nose[:, 0] > 1) & (nose[:, 0] < w - 2) & (nose[:, 1] > 1) & (nose[:, 1] < h - 2)]
        border = _border_points(w, h)
        dst = np.vstack([dst_lips, chin[inside] + CHIN_FOLLOWS * lower_move, nose, border])
        src = np.vstack([src_lips, chin[inside], nose, border])
        mx, my = backward_map(dst, src, w, h)
        warped = cv2.remap(roi, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

        # 2. fill the lips and the inside of the mouth from the closest mouth of the bank
        target_inner = geometry.apply(geometry.face_frame(landmarks), np.asarray(target_lips))[INNER]
        k = self._nearest(target_inner)
        crop, crop_lips = self._crops[k], self._lips[k]
        fx, fy = backward_map(dst_lips, crop_lips, w, h)
        fill = cv2.remap(crop.astype(np.float32), fx, fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

        mouth_w = float(np.ptp(dst_lips[:, 0]))
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(dst_lips[OUTER]).astype(np.int32)], 255)
        grow = max(1, int(round(0.08 * mouth_w)))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        lips_mask = cv2.dilate(mask, kernel)
        ring = cv2.dilate(lips_mask, kernel, iterations=2) & ~lips_mask
        if ring.any():
            # Medians: where the bank frame's mouth spills into the ring (its lips a little off its landmarks),
            # a mean would take the mouth's colour for the skin's and tint the whole fill (a red mouth: cyan).
            shift = np.median(warped[ring > 0], axis=0) - np.median(fill[ring > 0], axis=0)
            fill = fill + shift
        # The fill covers the source's own lips as well: where the source was open wider than asked, what the
        # warp leaves of its mouth would show as a second lower lip below the new one.
        cv2.fillPoly(mask, [np.round(src_lips[OUTER]).astype(np.int32)], 255)
        lips_mask = cv2.dilate(mask, kernel)
        soft = cv2.GaussianBlur(lips_mask.astype(np.float32) / 255.0, (0, 0), max(1.0, 0.06 * mouth_w))[..., None]
        composed = warped * (1 - soft) + fill * soft
        opening = float(_inner_opening(target_inner[None])[0])
        beyond = opening - self._widest
        if beyond > UNSEEN_OPENING:
            composed = _shade_gap(composed, dst_lips, beyond / opening, mouth_w)

        # 3. fade into the untouched frame towards the box border
        yy, xx = np.mgrid[0:h, 0:w]
        margin = max(2.0, 0.1 * min(w, h))
        fade = np.clip(np.minimum.reduce([xx, yy, w - 1 - xx, h - 1 - yy]) / margin, 0.0, 1.0)[..., None]
        result = roi * (1 - fade) + composed * fade
        out = frame.copy()
        out[y0:y1, x0:x1] = np.clip(np.round(result), 0, 255).astype(np.uint8)
        return out
