"""The offline renderer's fill (operators/backends/warp_renderer.py) on a mouth whose source is open wider than
asked, and on a bank frame whose mouth spills past its landmarks (a blurry face)."""
from __future__ import annotations

import numpy as np
import pytest

from catalogs import dummies
from operators import face_geometry as geometry


@pytest.fixture(scope="module")
def face():
    """The astronaut, about 200 px high, her landmarks from dlib; and her mouth painted open (a dark red
    opening from the inner lips down past the lower lip, as a wide-open mouth is)."""
    import cv2

    from operators.backends.dlib_faces import DlibFaces

    frame = cv2.resize(dummies.portrait("astronaut")[0:420, 40:460], (420, 420))
    faces = DlibFaces()
    lm = faces.landmarks(frame, faces.detect(frame)[0])
    opened = frame.copy()
    inner = lm[geometry.INNER_LIPS].copy()
    drop = 0.25 * geometry.face_scale(lm)
    inner[[5, 6, 7], 1] += drop                            # the lower inner lip (65-67) dropped
    outer = lm[geometry.OUTER_LIPS].copy()
    outer[[7, 8, 9, 10, 11], 1] += drop                     # and the lower outer lip with it (55-59)
    cv2.fillPoly(opened, [np.round(outer).astype(np.int32)], (120, 40, 50))
    cv2.fillPoly(opened, [np.round(inner).astype(np.int32)], (60, 15, 20))
    lm_open = lm.copy()
    lm_open[60:68] = inner
    lm_open[48:60] = outer
    return frame, lm, opened, lm_open


def _renderer(crops, landmarks):
    from operators.backends.warp_renderer import WarpRenderer

    renderer = WarpRenderer()
    renderer.prepare(crops, np.array(landmarks))
    return renderer


def _region(shape, *polygons, grow=0):
    import cv2

    mask = np.zeros(shape[:2], np.uint8)
    for p in polygons:
        cv2.fillPoly(mask, [np.round(p).astype(np.int32)], 1)
    if grow:
        mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return mask.astype(bool)


def test_a_mouth_closed_by_the_render_leaves_nothing_of_the_open_one(face):
    """The source frame's mouth is open; the dub asks for the closed lips of the bank's only frame. Where
    the open mouth was and the closed one is not, the picture is her skin again (the fill covers the
    source's lips as well as the target's): no second lower lip below the new one."""
    frame, lm, opened, lm_open = face
    out = _renderer([frame], [lm]).render(opened, lm_open, lm[geometry.LIPS])
    was_mouth = _region(frame.shape, lm_open[geometry.OUTER_LIPS]) & ~_region(
        frame.shape, lm[geometry.OUTER_LIPS], grow=3)
    assert was_mouth.sum() > 200
    error = np.abs(out.astype(float) - frame.astype(float))[was_mouth].mean()
    left = np.abs(opened.astype(float) - frame.astype(float))[was_mouth].mean()
    assert left > 40                                        # the painted mouth is there to be removed
    assert error < 10, (error, left)                      # 7.1 (12.8 with the fill over the new lips only)


def test_a_bank_mouth_spilling_past_its_landmarks_does_not_tint_the_fill(face):
    """The bank's frame has red mouth colour past its lips, all round (its landmarks off the mouth, as on a
    blurry face). The fill is shifted to the frame's skin by per-channel medians over a ring around the
    lips, so the new lips keep their hue: a mean took the red for skin and tinted them cyan (green and blue
    up 11-15 levels over red, measured; here the three channels move within 2 levels of each other)."""
    frame, lm, _, _ = face
    outer = lm[geometry.OUTER_LIPS]
    centre = outer.mean(axis=0)
    spilled = frame.copy()
    spilled[_region(frame.shape, centre + 1.45 * (outer - centre))
            & ~_region(frame.shape, centre + 1.05 * (outer - centre))] = (150, 20, 30)
    out = _renderer([spilled], [lm]).render(frame, lm, lm[geometry.LIPS])
    lips = _region(frame.shape, outer)
    drift = out[lips].astype(float).mean(axis=0) - frame[lips].astype(float).mean(axis=0)
    assert np.ptp(drift) < 4, drift
