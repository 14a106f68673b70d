"""68-point face landmarks (the iBUG 300-W layout dlib uses): indices and the measures the lip stages share.

Every face backend returns landmarks in this layout (insightface's 106
points are mapped onto it), as float (68, 2) arrays of (x, y) pixels.
Mouth shapes are compared in a normalised face frame: origin between the
eye centres, x along the eye line, one unit = the distance between the eye
centres. Eyes do not move with speech, so a mouth shape in this frame is
independent of where the face is, its size and its roll.
"""
from __future__ import annotations

import numpy as np

JAW = np.arange(0, 17)
NOSE = np.arange(27, 36)
RIGHT_EYE = np.arange(36, 42)          # the subject's right eye: image left
LEFT_EYE = np.arange(42, 48)
OUTER_LIPS = np.arange(48, 60)         # 48 and 54 are the mouth corners
INNER_LIPS = np.arange(60, 68)
LIPS = np.arange(48, 68)
# Upper/lower inner-lip pairs whose distance is the mouth opening.
INNER_GAPS = ((61, 67), (62, 66), (63, 65))


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return landmarks[..., RIGHT_EYE, :].mean(axis=-2), landmarks[..., LEFT_EYE, :].mean(axis=-2)


def face_scale(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the eye centres, in pixels (one unit of the face frame)."""
    right, left = eye_centres(landmarks)
    return np.linalg.norm(left - right, axis=-1)


def face_frame(landmarks: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform from image pixels into the normalised face frame.

    Works on one face (68, 2); returns (2, 3).
    """
    right, left = eye_centres(landmarks)
    axis = left - right
    scale = float(np.linalg.norm(axis))
    if scale <= 0:
        raise ValueError("degenerate landmarks: both eyes at one point")
    c, s = axis / scale
    rot = np.array([[c, s], [-s, c]]) / scale       # rotate the eye line onto +x, then scale
    centre = (right + left) / 2
    return np.hstack([rot, (-rot @ centre)[:, None]])


def apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ transform[:, :2].T + transform[:, 2]


def invert(transform: np.ndarray) -> np.ndarray:
    a = np.linalg.inv(transform[:, :2])
    return np.hstack([a, (-a @ transform[:, 2])[:, None]])


def lips_in_face_frame(landmarks: np.ndarray) -> np.ndarray:
    """The 20 lip points (48-67) of one face in the normalised face frame, (20, 2)."""
    return apply(face_frame(landmarks), landmarks[LIPS])


def lips_in_image(landmarks: np.ndarray, lips_normalised: np.ndarray) -> np.ndarray:
    """Normalised lip points placed on the face whose landmarks are given, in image pixels."""
    return apply(invert(face_frame(landmarks)), lips_normalised)


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Mean inner-lip gap in face units (0 = closed); works on (..., 68, 2)."""
    gaps = [np.linalg.norm(landmarks[..., a, :] - landmarks[..., b, :], axis=-1) for a, b in INNER_GAPS]
    return np.mean(gaps, axis=0) / face_scale(landmarks)


def mouth_width(landmarks: np.ndarray) -> np.ndarray:
    """Corner-to-corner mouth width in face units; rounded lips make it smaller."""
    return np.linalg.norm(landmarks[..., 54, :] - landmarks[..., 48, :], axis=-1) / face_scale(landmarks)


def mouth_box(landmarks: np.ndarray, margin: float = 0.6) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixel box around the mouth, grown by `margin` x the mouth's width on each side.

    Coordinates are rounded outwards to even numbers, so the box maps
    exactly onto yuv420p chroma samples.
    """
    lips = landmarks[LIPS]
    width = float(np.ptp(lips[:, 0]))
    x0, y0 = lips.min(axis=0) - margin * width
    x1, y1 = lips.max(axis=0) + margin * width
    return (int(np.floor(x0 / 2)) * 2, int(np.floor(y0 / 2)) * 2,
            int(np.ceil(x1 / 2)) * 2, int(np.ceil(y1 / 2)) * 2)
