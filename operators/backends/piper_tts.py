"""Neural TTS with Piper voices (ONNX), resolved like models: packaged, cached or downloaded."""
from __future__ import annotations

import threading
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

from operators import languages
from operators.backends.protocols import ModelInfo
from operators.config import TTSConfig

if TYPE_CHECKING:
    from operators.models import ResolvedModel


def _model_name(voice: str) -> str:
    """Voice name or path -> resolver name: 'en_US-joe-medium' -> 'piper:en_US-joe-medium'."""
    if voice.startswith("piper:") or "/" in voice or voice.endswith(".onnx"):
        return voice
    return f"piper:{voice}"


class PiperTTS:
    """One PiperVoice per voice, loaded on first use.

    A voice that does not resolve (offline, no package) is remembered as
    unsupported with its reason, so a job asks the hub once per language.
    """

    def __init__(self, config: TTSConfig | None = None) -> None:
        self.config = config or TTSConfig()
        self._resolved: dict[str, ResolvedModel | Exception] = {}
        self._voices: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    def voice_name(self, lang: str) -> str | None:
        """config.piper_voices, then the built-in table; exact code before its base."""
        from operators.models import DEFAULT_PIPER_VOICES

        overrides = {languages.normalize(k): v for k, v in self.config.piper_voices.items()}
        for table in (overrides, DEFAULT_PIPER_VOICES):
            for code in (languages.normalize(lang), languages.base(lang)):
                if code in table:
                    return table[code]
        return None

    def _resolve(self, lang: str) -> ResolvedModel | Exception:
        voice = self.voice_name(lang)
        if voice is None:
            return LookupError(f"no Piper voice configured for language {lang!r} (set tts.piper_voices)")
        name = _model_name(voice)
        if name not in self._resolved:
            from operators.models import resolve

            try:
                self._resolved[name] = resolve(name)
            except Exception as e:   # remembered: one try per voice and process
                self._resolved[name] = e
        return self._resolved[name]

    def unsupported_reason(self, lang: str) -> str | None:
        """None when a voice resolves for `lang`, else why not."""
        r = self._resolve(lang)
        return f"{type(r).__name__}: {r}" if isinstance(r, Exception) else None

    def _resolved_voice(self, lang: str) -> ResolvedModel:
        r = self._resolve(lang)
        if isinstance(r, Exception):
            raise r
        return r

    def _voice(self, lang: str):
        resolved = self._resolved_voice(lang)
        key = str(resolved.path)
        with self._lock:
            if key not in self._voices:
                import onnxruntime
                from piper import PiperVoice

                use_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
                self._voices[key] = PiperVoice.load(resolved.path, config_path=Path(f"{resolved.path}.json"),
                                                    use_cuda=use_cuda)
            return self._voices[key]

    # --- TTSBackend --------------------------------------------------------------

    def supports(self, lang: str) -> bool:
        return not isinstance(self._resolve(lang), Exception)

    def synthesize(self, text: str, lang: str, out_path: str, speaker_wav: str | None = None,
                   rate: float = 1.0) -> float:
        """Mono 16-bit wav at the voice's own sample rate; `speaker_wav` is ignored (no cloning); `rate`
        divides the voice's phoneme lengths (its length_scale)."""
        from piper import SynthesisConfig

        if not text.strip():
            raise ValueError("nothing to synthesize: empty text")
        voice = self._voice(lang)
        with wave.open(out_path, "wb") as wf:
            # Set here, not by Piper: text that yields no phonemes still makes a valid wav.
            wf.setnchannels(1)
            wf.setsampwidth(2)
            wf.setframerate(voice.config.sample_rate)
            syn = SynthesisConfig(length_scale=(voice.config.length_scale or 1.0) / rate) if rate != 1.0 else None
            voice.synthesize_wav(text, wf, syn_config=syn, set_wav_format=False)
            frames = wf.getnframes()
        return frames / float(voice.config.sample_rate)

    def clones_voice(self, lang: str) -> bool:
        return False

    def speaks_faster(self, lang: str) -> bool:
        return True

    def model_info(self, lang: str) -> ModelInfo:
        return self._resolved_voice(lang).info
