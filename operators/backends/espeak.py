"""Formant TTS with espeak-ng: every language it has a voice for, no model files."""
from __future__ import annotations

import re
import shutil
import subprocess
import wave
from functools import lru_cache

from operators import languages
from operators.backends.protocols import ModelInfo
from operators.config import TTSConfig

_INSTALL_HINT = "sudo apt-get install espeak-ng"


@lru_cache(maxsize=1)
def espeak_version() -> str:
    try:
        out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    m = re.search(r"text-to-speech:\s*(\S+)", out)
    return m.group(1) if m else "unknown"


def wav_duration_s(path: str) -> float:
    with wave.open(path, "rb") as wf:
        return wf.getnframes() / float(wf.getframerate())


class EspeakTTS:
    def __init__(self, config: TTSConfig | None = None) -> None:
        self.config = config or TTSConfig()
        if shutil.which("espeak-ng") is None:
            raise RuntimeError(f"espeak-ng is not installed; install it with: {_INSTALL_HINT}")

    def voice(self, lang: str) -> str:
        voice = languages.espeak_voice(lang)
        if voice is None:
            raise ValueError(f"espeak-ng has no voice for language {lang!r}")
        return voice

    def supports(self, lang: str) -> bool:
        return languages.espeak_voice(lang) is not None

    def synthesize(self, text: str, lang: str, out_path: str, speaker_wav: str | None = None,
                   rate: float = 1.0) -> float:
        """espeak-ng writes 22050 Hz mono 16-bit PCM; `speaker_wav` is ignored (no cloning); `rate`
        scales the words per minute."""
        if not text.strip():
            raise ValueError("nothing to synthesize: empty text")
        # Text goes through stdin: never parsed as an option, never through a shell.
        proc = subprocess.run(
            ["espeak-ng", "-v", self.voice(lang), "-s", str(round(self.config.espeak_words_per_min * rate)),
             "-w", out_path],
            input=" ".join(text.split()), capture_output=True, text=True, encoding="utf-8", timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"espeak-ng failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        return wav_duration_s(out_path)

    def clones_voice(self, lang: str) -> bool:
        return False

    def speaks_faster(self, lang: str) -> bool:
        return True

    def model_info(self, lang: str) -> ModelInfo:
        return ModelInfo(name=f"espeak-ng:{self.voice(lang)}", version=espeak_version(),
                         license="GPL-3.0", source="system:espeak-ng")
