"""The offline lip renderer on a talking head made from a real portrait."""
import pickle

import av
import numpy as np
import pytest

from catalogs import dummies
from operators import face_geometry as geometry
from operators.backends import load_faces, load_renderer
from operators.backends.protocols import LipRenderer
from operators.config import FacesConfig, LipsConfig


@pytest.fixture(scope="module")
def talking(tmp_path_factory):
    """Frames of a face speaking (mouth closed in silence, open on loud vowels) and their landmarks."""
    d = tmp_path_factory.mktemp("talk")
    wav = str(d / "speech.wav")
    dummies.speech_track([(0.3, "Hello, I am an astronaut.")], 2.5, wav)
    head = dummies.portrait("astronaut")[20:300, 90:400]
    dummies.talking_video(str(d / "talk.mp4"), 2.5, [dummies.FaceSpec(head, (320, 180), 130)], audio_wav=wav)
    with av.open(str(d / "talk.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    faces = load_faces(FacesConfig())
    landmarks = np.array([faces.landmarks(f, faces.detect(f)[0]) for f in frames])
    return frames, landmarks, faces


@pytest.fixture(scope="module")
def renderer(talking):
    frames, landmarks, _ = talking
    r = load_renderer(LipsConfig())
    r.prepare(frames[::2], landmarks[::2])
    return r


def _measure(faces, image):
    return faces.landmarks(image, faces.detect(image)[0])


@pytest.mark.parametrize("direction", ["open", "close"])
def test_mouth_takes_the_target_shape(talking, renderer, direction):
    frames, landmarks, faces = talking
    openings = geometry.mouth_opening(landmarks)
    closed, opened = int(np.argmin(openings)), int(np.argmax(openings))
    assert openings[closed] < 0.06 and openings[opened] > 0.3
    # Closing starts from a half-open mouth: from a fully dropped jaw the chin cannot rise far
    # inside the mouth box, and how wide the widest frame is varies with Piper's run-to-run output.
    half = int(np.argmin(np.abs(openings - 0.25)))
    a, b = (closed, opened) if direction == "open" else (half, closed)
    # b's mouth shape, placed on a's face
    target = geometry.lips_in_image(landmarks[a], geometry.lips_in_face_frame(landmarks[b]))
    out = renderer.render(frames[a], landmarks[a], target)
    measured = _measure(faces, out)
    assert geometry.mouth_opening(measured) == pytest.approx(openings[b], abs=0.08)
    assert np.linalg.norm(measured[48:68] - target, axis=1).mean() < 3.0


def test_only_the_mouth_box_changes_and_its_border_does_not_show(talking, renderer):
    frames, landmarks, _ = talking
    i = int(np.argmin(geometry.mouth_opening(landmarks)))
    frame = frames[i].copy()
    target = landmarks[i][48:68] + [0.0, 0.0]
    target[6:11, 1] += 15                                   # lower lip down
    target[16:19, 1] += 15
    out = renderer.render(frame, landmarks[i], target)
    np.testing.assert_array_equal(frame, frames[i])         # the input is not modified
    x0, y0, x1, y1 = geometry.mouth_box(landmarks[i])
    outside = np.ones(frame.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(out[outside], frame[outside])
    inner_ring = np.concatenate([out[y0 + 1, x0 + 1:x1 - 1], out[y1 - 2, x0 + 1:x1 - 1],
                                 out[y0 + 1:y1 - 1, x0 + 1], out[y0 + 1:y1 - 1, x1 - 2]]).astype(float)
    source_ring = np.concatenate([frame[y0 + 1, x0 + 1:x1 - 1], frame[y1 - 2, x0 + 1:x1 - 1],
                                  frame[y0 + 1:y1 - 1, x0 + 1], frame[y0 + 1:y1 - 1, x1 - 2]]).astype(float)
    assert np.abs(inner_ring - source_ring).mean() < 2.0
    assert np.abs(out[y0:y1, x0:x1].astype(float) - frame[y0:y1, x0:x1]).max() > 50   # and the mouth did change


def test_the_same_shape_changes_little(talking, renderer):
    frames, landmarks, _ = talking
    i = len(frames) // 2
    out = renderer.render(frames[i], landmarks[i], landmarks[i][48:68])
    x0, y0, x1, y1 = geometry.mouth_box(landmarks[i])
    assert np.abs(out[y0:y1, x0:x1].astype(float) - frames[i][y0:y1, x0:x1]).mean() < 4.0


def test_is_a_lip_renderer_that_pickles(renderer, talking):
    frames, landmarks, _ = talking
    assert isinstance(renderer, LipRenderer)
    again = pickle.loads(pickle.dumps(renderer))
    i = len(frames) // 2
    np.testing.assert_array_equal(again.render(frames[i], landmarks[i], landmarks[i][48:68]),
                                  renderer.render(frames[i], landmarks[i], landmarks[i][48:68]))
    assert renderer.model_info().name == "warp-renderer"
