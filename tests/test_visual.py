"""The visual score of re-rendered mouths (operators/visual.py): a good render passes, a broken one is caught.

The face moves, turns and talks, with the astronaut's collar below the chin; the same frames are rendered
by the offline renderer, and by deliberately broken renderers that smear the mouth, pull the chin and
collar out of shape, paste a hard-edged patch, or jitter from frame to frame."""
from __future__ import annotations

import numpy as np
import pytest

from catalogs import dummies
from operators import face_geometry as geometry
from operators import visual
from operators.config import Config

REVIEW = Config().review


@pytest.fixture(scope="module")
def moving_head():
    """30 frames: the head drifts 60 px, turns to 30 degrees and tilts; landmarks from dlib on each."""
    import cv2

    from operators.backends.dlib_faces import DlibFaces

    faces = DlibFaces()
    # the face, about 150 px high, and the suit's collar right below the chin
    head = cv2.resize(dummies.portrait("astronaut")[0:420, 40:460], (480, 480))
    frames, landmarks, box = [], [], None
    for i in range(30):
        canvas = np.full((560, 800, 3), 90, np.uint8)
        face = dummies.turned(head, 30.0 * np.sin(np.pi * i / 29), (90, 90, 90))
        tilt = cv2.getRotationMatrix2D((240, 240), 6.0 * np.sin(2 * np.pi * i / 29), 1.0)
        face = cv2.warpAffine(face, tilt, (480, 480), borderValue=(90, 90, 90))
        x = 100 + 2 * i
        canvas[40:520, x:x + 480] = face
        found = faces.detect(canvas)
        box = found[0] if found else box                 # a missed detection: the box of the frame before
        frames.append(canvas)
        landmarks.append(faces.landmarks(canvas, box))
    return frames, np.array(landmarks)


def _targets(landmarks: np.ndarray) -> np.ndarray:
    """Lips opening and closing at about 4 Hz (25 fps): the lower lip moves down by up to 0.15 face units."""
    out = landmarks[:, geometry.LIPS].copy()
    for i, lm in enumerate(landmarks):
        open_ = 0.15 * geometry.face_scale(lm) * max(0.0, np.sin(2 * np.pi * i / 6))
        out[i, [7, 8, 9, 17, 18, 19], 1] += open_
    return out


def _render(frames, landmarks, broken: str | None):
    import cv2

    from operators.backends.warp_renderer import WarpRenderer

    renderer = WarpRenderer()
    crops, crop_lms = [], []
    for frame, lm in zip(frames[::3], landmarks[::3]):
        x0, y0, x1, y1 = geometry.mouth_box(lm, 1.0)
        crops.append(frame[y0:y1, x0:x1])
        crop_lms.append(lm - [x0, y0])
    renderer.prepare(crops, np.array(crop_lms))
    out = []
    rng = np.random.default_rng(0)
    for i, (frame, lm, lips) in enumerate(zip(frames, landmarks, _targets(landmarks))):
        new = renderer.render(frame, lm, lips)
        x0, y0, x1, y1 = geometry.mouth_box(lm)
        box = new[y0:y1, x0:x1]
        if broken == "smear":
            new[y0:y1, x0:x1] = cv2.GaussianBlur(box, (0, 0), 5)
        elif broken == "chin":                          # lower half stretched down: chin and collar pulled
            h = box.shape[0]
            new[y0 + h // 2:y1, x0:x1] = cv2.resize(box[h // 2:], (box.shape[1], int(h * 0.9)))[:y1 - y0 - h // 2]
        elif broken == "patch":                         # a hard-edged patch, 10 levels brighter
            new[y0:y1, x0:x1] = np.clip(box.astype(int) + 10, 0, 255).astype(np.uint8)
        elif broken == "jitter":                        # the mouth area hops by 3 px every other frame
            new[y0:y1, x0:x1] = np.roll(box, 3 * (i % 2), axis=0)
        out.append(new)
    return out


def _line(frames, landmarks, rendered) -> dict:
    per_frame, previous = {}, None
    for i, (src, dub, lm, lips) in enumerate(zip(frames, rendered, landmarks, _targets(landmarks))):
        per_frame[i] = visual.frame_scores(src, dub, lm, lips, previous)
        previous = (src, dub)
    return visual.line_scores(per_frame, np.arange(len(frames)))


def _flags(scores: dict) -> list[str]:
    flags = []
    if scores["visual_ssim"] < REVIEW.min_visual_ssim:
        flags.append("ssim")
    if scores["visual_seam"] > REVIEW.max_visual_seam:
        flags.append("seam")
    if scores["visual_flicker"] > REVIEW.max_visual_flicker:
        flags.append("flicker")
    return flags


def test_a_good_render_of_a_moving_turning_head_passes(moving_head):
    frames, landmarks = moving_head
    scores = _line(frames, landmarks, _render(frames, landmarks, None))
    assert _flags(scores) == [], scores
    untouched = _line(frames, landmarks, [f.copy() for f in frames])
    assert untouched == {"visual_ssim": 1.0, "visual_seam": 0.0, "visual_flicker": 0.0}


@pytest.mark.parametrize("broken, caught_by", [
    ("smear", "ssim"), ("chin", "ssim"), ("patch", "seam"), ("jitter", "flicker")])
def test_a_broken_render_is_caught(moving_head, broken, caught_by):
    frames, landmarks = moving_head
    scores = _line(frames, landmarks, _render(frames, landmarks, broken))
    assert caught_by in _flags(scores), scores
