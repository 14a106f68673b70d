"""Offline faces: dlib's HOG frontal detector and its 68-point landmark model (CPU, no download)."""
from __future__ import annotations

from typing import Any

import numpy as np

from operators.backends.protocols import FaceBox, ModelInfo
from operators.config import FacesConfig

MODEL_NAME = "dlib-68-landmarks"


class DlibFaces:
    """The detector runs on a scaled-down frame; landmarks on the full frame."""

    def __init__(self, config: FacesConfig | None = None) -> None:
        self.config = config or FacesConfig()
        self._detector: Any = None
        self._predictor: Any = None
        self._info: ModelInfo | None = None

    def __getstate__(self) -> dict:
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    def _load(self) -> None:
        if self._predictor is not None:
            return
        import dlib

        from operators.models import resolve

        resolved = resolve(MODEL_NAME)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(resolved.path))
        self._info = ModelInfo(name=resolved.info.name, version=f"{resolved.info.version}, dlib {dlib.__version__}",
                               license=resolved.info.license, source=resolved.info.source)

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        import cv2

        self._load()
        height, width = frame.shape[:2]
        scale = self.config.detect_max_side_px / max(height, width)
        resized = frame if scale == 1.0 else cv2.resize(
            frame, (round(width * scale), round(height * scale)),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        # One pass at this size (upsample 0): dlib's own 2x upsampling also finds
        # false faces (a badge on a suit) and costs four times as much.
        rects, scores, _ = self._detector.run(np.ascontiguousarray(resized), 0, 0.0)
        boxes = [FaceBox(r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale, float(s))
                 for r, s in zip(rects, scores) if s >= self.config.min_detection_score]
        return sorted(boxes, key=lambda b: -b.score)

    def landmarks(self, frame: np.ndarray, box: FaceBox) -> np.ndarray:
        import dlib

        self._load()
        rect = dlib.rectangle(int(round(box.x0)), int(round(box.y0)), int(round(box.x1)), int(round(box.y1)))
        shape = self._predictor(np.ascontiguousarray(frame), rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def model_info(self) -> ModelInfo:
        self._load()
        assert self._info is not None
        return self._info
