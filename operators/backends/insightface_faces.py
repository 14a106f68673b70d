"""Production faces: insightface's SCRFD detector and landmark models (GPU via onnxruntime-gpu).

Landmarks are returned in the 68-point layout every lip stage uses: the
buffalo_l pack's 1k3d68 model predicts exactly those 68 points (in 3-D; x
and y are taken). Its 2d106det model (106 points) is loaded too, because
SCRFD and the pack are used as published. Its recognition model (ArcFace,
w600k_r50) gives the identity embeddings, aligned from five points taken from
the 68 landmarks; a pack without it gives none (every track its own speaker).

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


# The eye centres, nose tip and mouth corners in the iBUG 68 layout: the five points ArcFace aligns by,
# in insightface's order (image left eye first).
_FIVE_POINTS = (tuple(range(36, 42)), tuple(range(42, 48)), (30,), (48,), (54,))
# ArcFace embeddings of one person have a cosine similarity above about 0.4 (insightface's usual
# verification range is 0.3-0.5); between unit vectors that is a distance of sqrt(2 - 2 * 0.4).
# Not measured here: the weights are not available offline.
SAME_IDENTITY_DISTANCE = float(np.sqrt(2 - 2 * 0.4))


class InsightFaces:
    same_identity_distance = SAME_IDENTITY_DISTANCE

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
                           allowed_modules=["detection", "landmark_3d_68", "landmark_2d_106", "recognition"])
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

    def embed(self, frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        self._load()
        recognition = self._app.models.get("recognition")
        if recognition is None:                 # a pack without its recognition model
            return None
        from insightface.app.common import Face

        kps = np.array([landmarks[list(idx)].mean(axis=0) for idx in _FIVE_POINTS], dtype=np.float32)
        face = Face(kps=kps)
        vector = np.asarray(recognition.get(np.ascontiguousarray(frame[..., ::-1]), face), dtype=np.float64)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else None

    def model_info(self) -> ModelInfo:
        self._load()
        assert self._info is not None
        return self._info

    def embedding_model_info(self) -> ModelInfo:
        # The recognition model comes in the same pack as the detector and landmarks.
        return self.model_info()


def _key(box: FaceBox) -> tuple[int, int, int, int]:
    return (round(box.x0), round(box.y0), round(box.x1), round(box.y1))
