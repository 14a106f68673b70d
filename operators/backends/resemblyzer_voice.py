"""Speaker similarity with Resemblyzer's GE2E voice encoder (the pip package ships the weights).

Install note: resemblyzer declares `webrtcvad`, whose sdist no longer imports
on current setuptools; `scripts/install.sh` installs it with `--no-deps` next
to `webrtcvad-wheels`, which provides the same module.
"""
from __future__ import annotations

import numpy as np

from operators.backends.protocols import ModelInfo
from operators.base import MissingDependency

MODEL_NAME = "resemblyzer-ge2e"
MIN_VOICED_S = 0.5   # below this, after silence trimming, an embedding says little about the voice


class ResemblyzerEncoder:
    def __init__(self, config=None) -> None:
        self.config = config
        self._encoder = None
        self._info: ModelInfo | None = None

    def __getstate__(self) -> dict:
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    def _load(self) -> None:
        if self._encoder is not None:
            return
        try:
            from resemblyzer import VoiceEncoder
        except ImportError as e:
            raise MissingDependency(f"speaker similarity needs resemblyzer ({e}): run scripts/install.sh, or "
                                    "`pip install webrtcvad-wheels librosa && pip install --no-deps resemblyzer==0.1.4`"
                                    ) from e
        from operators.models import resolve

        resolved = resolve(MODEL_NAME)
        self._encoder = VoiceEncoder("cpu", verbose=False, weights_fpath=resolved.path)
        self._info = resolved.info

    def embed(self, audio_16k: np.ndarray) -> np.ndarray | None:
        from resemblyzer import preprocess_wav
        from resemblyzer.hparams import sampling_rate

        self._load()
        wav = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
        if not len(wav) or np.sqrt(np.mean(np.square(wav))) < 1e-4:   # digital silence (below -80 dBFS)
            return None
        wav = preprocess_wav(wav, source_sr=16000)
        if len(wav) < MIN_VOICED_S * sampling_rate:
            return None
        return self._encoder.embed_utterance(wav)

    def model_info(self) -> ModelInfo:
        self._load()
        return self._info
