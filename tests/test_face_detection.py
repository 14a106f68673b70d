"""Face detection as tracking uses it: on the luma plane, and around a tracked face's box."""
from __future__ import annotations

import av
import numpy as np
import pytest

from catalogs import dummies
from operators.backends.dlib_faces import DlibFaces
from operators.media import luma
from operators.track_faces import iou


def _frame_1080p(face_at: tuple[int, int] = (700, 20)) -> av.VideoFrame:
    """The astronaut portrait, enlarged to 1024 px (a close-up), on a grey 1920x1080 picture, as an
    H.264-style yuv420p frame."""
    import cv2

    canvas = np.full((1080, 1920, 3), 90, np.uint8)
    face = cv2.resize(dummies.portrait("astronaut"), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    x, y = face_at
    canvas[y:y + face.shape[0], x:x + face.shape[1]] = face
    return av.VideoFrame.from_ndarray(canvas, format="rgb24").reformat(format="yuv420p")


def test_luma_is_a_copy_of_the_y_plane():
    frame = _frame_1080p()
    y = luma(frame)
    plane = np.frombuffer(frame.planes[0], np.uint8).reshape(frame.planes[0].height, -1)[:, :frame.width]
    assert y.shape == (1080, 1920) and y.dtype == np.uint8 and y.flags.c_contiguous
    assert np.array_equal(y, plane)
    y[:] = 0                                     # the decoder's frame is not written through it
    assert plane.max() > 0
    deep = luma(frame.reformat(format="yuv420p10le"))
    assert deep.shape == (1080, 1920) and deep.dtype == np.uint8
    assert np.abs(deep.astype(int) - frame.to_ndarray(format="gray").astype(int)).max() <= 2


def test_the_face_found_in_colour_is_found_in_luma_and_around_its_box():
    faces = DlibFaces()
    frame = _frame_1080p()
    rgb, gray = frame.to_ndarray(format="rgb24"), luma(frame)
    in_colour, in_luma = faces.detect(rgb), faces.detect(gray)
    assert len(in_colour) == len(in_luma) == 1
    assert iou(in_colour[0], in_luma[0]) > 0.8
    around = faces.detect_around(gray, in_luma[0])
    assert len(around) == 1 and iou(around[0], in_luma[0]) > 0.5
    # landmarks on luma land where they land in colour, to a couple of pixels
    assert np.abs(faces.landmarks(gray, in_luma[0]) - faces.landmarks(rgb, in_luma[0])).max() < 3.0


@pytest.mark.parametrize("box", [(0.0, 0.0, 300.0, 300.0), (1700.0, 900.0, 1919.0, 1079.0)])
def test_nothing_is_found_around_a_box_away_from_the_face(box):
    from operators.backends.protocols import FaceBox

    assert DlibFaces().detect_around(luma(_frame_1080p()), FaceBox(*box)) == []
