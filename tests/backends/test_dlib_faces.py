"""The offline face backend on a real face that scikit-image ships."""
import pickle

import numpy as np
import pytest

from catalogs.dummies import portrait
from operators import face_geometry as geometry
from operators.backends import load_faces
from operators.backends.protocols import FaceBackend, FaceEmbedder
from operators.config import FacesConfig


@pytest.fixture(scope="module")
def faces():
    return load_faces(FacesConfig())


def test_finds_the_one_face_and_its_68_landmarks(faces):
    image = portrait("astronaut")
    boxes = faces.detect(image)
    assert len(boxes) == 1                                      # not the badge on her suit
    box = boxes[0]
    assert 150 < box.x0 < 200 and 60 < box.y0 < 110 and 70 < box.height < 110
    lm = faces.landmarks(image, box)
    assert lm.shape == (68, 2)
    # Anatomy, in image coordinates: eyes above the nose tip above the mouth above the chin.
    assert lm[geometry.RIGHT_EYE, 1].mean() < lm[33, 1] < lm[geometry.LIPS, 1].mean() < lm[8, 1]
    assert lm[geometry.RIGHT_EYE, 0].mean() < lm[geometry.LEFT_EYE, 0].mean()
    assert 0.8 < geometry.mouth_width(lm) < 1.2


def test_no_face_in_a_profile_or_a_blank_frame(faces):
    assert faces.detect(portrait("camera")) == []
    assert faces.detect(np.zeros((360, 640, 3), np.uint8)) == []


def test_scaled_frames_find_the_same_face(faces):
    import cv2

    image = portrait("astronaut")
    big = cv2.resize(image, (1024, 1024))
    box = faces.detect(big)[0]
    assert box.x0 == pytest.approx(2 * faces.detect(image)[0].x0, abs=12)


def test_is_a_face_backend_that_pickles_and_names_its_licence(faces):
    assert isinstance(faces, FaceBackend)
    again = pickle.loads(pickle.dumps(faces))
    assert len(again.detect(portrait("astronaut"))) == 1
    info = faces.model_info()
    assert info.name == "dlib-68-landmarks" and "non-commercial" in info.license
    assert info.source == "package:face_recognition_models"


def _embedding(faces, image):
    return faces.embed(image, faces.landmarks(image, faces.detect(image)[0]))


def test_identity_embeddings_tell_people_apart(faces):
    import cv2

    astronaut = portrait("astronaut")
    same = _embedding(faces, astronaut)
    assert isinstance(faces, FaceEmbedder) and same.shape == (128,)
    assert np.linalg.norm(same) == pytest.approx(1.0)
    # The same face smaller or mirrored stays within dlib's same-person distance; another person is far.
    smaller = _embedding(faces, cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA))
    mirrored = _embedding(faces, np.ascontiguousarray(astronaut[:, ::-1]))
    other = _embedding(faces, portrait("lfw"))
    limit = faces.same_identity_distance
    assert np.linalg.norm(same - smaller) < limit / 2 and np.linalg.norm(same - mirrored) < limit / 2
    assert np.linalg.norm(same - other) > 1.3 * limit
    info = faces.embedding_model_info()
    assert info.name == "dlib-face-recognition-resnet" and info.license.startswith("CC0-1.0")
    assert info.source == "package:face_recognition_models"
