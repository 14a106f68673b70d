"""Production faces: insightface's SCRFD detector and landmark models (GPU via onnxruntime-gpu).

Landmarks are returned in the 68-point layout every lip stage uses: the
buffalo_l pack's 1k3d68 model predicts exactly those 68 points (in 3-D; x
and y are taken). Its 2d106det model (106 points) is loaded too, because
SCRFD and the pack are used as published.

Weights resolve through the model registry (a local or s3:// copy of the
unpacked pack, or the node cache). Where none is found, insightface's own
downloader fetches the pack into the node cache on first use (needs network).
The InsightFace model zoo is licensed for non-commercial research only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from operators.backends.protocols import FaceBox, ModelInfo
from operators.config import FacesConfig


class InsightFaces:
    def __init__(self, config: FacesConfig | None = None) -> None:
        self.config = config or FacesConfig()
        self._app: Any = None
        self._info: ModelInfo | None = None
        self._last: dict[tuple[int, int, int, int], np.ndarray] = {}

    def __getstate__(self) -> dict:
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    def _load(self) -> None:
        if self._app is not None:
            return
        try:
            from insightface.app import FaceAnalysis
        except ImportError as e:
            raise RuntimeError("the insightface backend needs `pip install insightface onnxruntime-gpu` "
                               "(or onnxruntime on CPU)") from e
        from operators import models

        name = self.config.insightface_model
        pack = name.removeprefix("insightface-")
        try:
            resolved = models.resolve(name)
            # FaceAnalysis looks for ROOT/models/NAME: point it at the resolved folder's grandparent.
            root, pack = self._as_insightface_root(resolved.path)
            info = resolved.info
        except models.ModelNotFound:
            root = models.cache_dir(name)
            entry = models.registry_entry(name)
            info = ModelInfo(name=name, version="insightface-download", source=f"insightface:{pack}",
                             license=entry.license if entry else "unknown")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        app = FaceAnalysis(name=pack, root=str(root), providers=providers,
                           allowed_modules=["detection", "landmark_3d_68", "landmark_2d_106"])
        app.prepare(ctx_id=0, det_size=(640, 640))
        self._app, self._info = app, info

    @staticmethod
    def _as_insightface_root(path: Path) -> tuple[Path, str]:
        if path.parent.name == "models":
            return path.parent.parent, path.name
        raise FileNotFoundError(f"{path}: expected an unpacked insightface pack at ROOT/models/<name>/")

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        self._load()
        faces = self._app.get(np.ascontiguousarray(frame[..., ::-1]))    # insightface wants BGR
        boxes = []
        self._last = {}
        for f in sorted(faces, key=lambda f: -float(f.det_score)):
            x0, y0, x1, y1 = (float(v) for v in f.bbox)
            box = FaceBox(x0, y0, x1, y1, float(f.det_score))
            self._last[_key(box)] = np.asarray(f.landmark_3d_68[:, :2], dtype=np.float64)
            boxes.append(box)
        return boxes

    def landmarks(self, frame: np.ndarray, box: FaceBox) -> np.ndarray:
        self._load()
        known = self._last.get(_key(box))
        if known is not None:
            return known
        # Tracking between detections: run the landmark model alone on the given box.
        from insightface.app.common import Face

        face = Face(bbox=np.array([box.x0, box.y0, box.x1, box.y1], dtype=np.float32), det_score=box.score)
        bgr = np.ascontiguousarray(frame[..., ::-1])
        self._app.models["landmark_3d_68"].get(bgr, face)
        return np.asarray(face.landmark_3d_68[:, :2], dtype=np.float64)

    def model_info(self) -> ModelInfo:
        self._load()
        assert self._info is not None
        return self._info


def _key(box: FaceBox) -> tuple[int, int, int, int]:
    return (round(box.x0), round(box.y0), round(box.x1), round(box.y1))
