"""Piper where a voice resolves for the language, espeak-ng everywhere else."""
from __future__ import annotations

import logging

from operators.backends.espeak import EspeakTTS
from operators.backends.piper_tts import PiperTTS
from operators.backends.protocols import ModelInfo
from operators.config import TTSConfig

log = logging.getLogger(__name__)


class AutoTTS:
    def __init__(self, config: TTSConfig | None = None) -> None:
        self.config = config or TTSConfig()
        self.piper = PiperTTS(self.config)
        self.espeak = EspeakTTS(self.config)
        self._choice: dict[str, PiperTTS | EspeakTTS] = {}

    def __getstate__(self) -> dict:
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    def backend_for(self, lang: str) -> PiperTTS | EspeakTTS:
        if lang not in self._choice:
            reason = self.piper.unsupported_reason(lang)
            if reason is None:
                self._choice[lang] = self.piper
            else:
                log.warning("TTS for %r falls back to espeak-ng: no Piper voice: %s",
                            lang, " ".join(reason.split()))
                self._choice[lang] = self.espeak
        return self._choice[lang]

    def supports(self, lang: str) -> bool:
        return self.piper.supports(lang) or self.espeak.supports(lang)

    def synthesize(self, text: str, lang: str, out_path: str, speaker_wav: str | None = None,
                   rate: float = 1.0) -> float:
        return self.backend_for(lang).synthesize(text, lang, out_path, speaker_wav, rate=rate)

    def speaks_faster(self, lang: str) -> bool:
        return self.backend_for(lang).speaks_faster(lang)

    def clones_voice(self, lang: str) -> bool:
        return self.backend_for(lang).clones_voice(lang)

    def model_info(self, lang: str) -> ModelInfo:
        return self.backend_for(lang).model_info(lang)
