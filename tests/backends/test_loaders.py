import subprocess
import sys

import pytest

from operators.backends import load_asr, load_translator, load_tts
from operators.backends.apertium import ApertiumMT
from operators.backends.auto_tts import AutoTTS
from operators.backends.espeak import EspeakTTS
from operators.backends.piper_tts import PiperTTS
from operators.backends.whisper import FasterWhisperASR
from operators.config import ASRConfig, TranslateConfig, TTSConfig


class EchoTTS:
    """A backend from outside the package, loaded by import path."""
    def __init__(self, config):
        self.config = config


def test_names_map_to_backends():
    assert type(load_asr(ASRConfig())) is FasterWhisperASR
    assert type(load_translator(TranslateConfig())) is ApertiumMT
    assert load_translator(TranslateConfig(backend="none")) is None
    assert type(load_tts(TTSConfig())) is AutoTTS
    assert type(load_tts(TTSConfig(backend="piper"))) is PiperTTS
    assert type(load_tts(TTSConfig(backend="espeak-ng"))) is EspeakTTS


def test_import_path_backend_gets_its_config_section():
    cfg = TTSConfig(backend=f"{__name__}:EchoTTS")
    backend = load_tts(cfg)
    assert type(backend).__name__ == "EchoTTS" and backend.config is cfg


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown TTS backend 'coqui'; choose one of: auto, piper, espeak-ng"):
        load_tts(TTSConfig(backend="coqui"))
    with pytest.raises(ValueError, match=r"apertium, none"):
        load_translator(TranslateConfig(backend="nllb"))
    with pytest.raises(ValueError, match="cannot be imported"):
        load_asr(ASRConfig(backend="no_such_module:ASR"))


def test_importing_the_backends_package_stays_light():
    code = ("import sys, operators.backends; "
            "print(sorted(m for m in ('faster_whisper', 'piper', 'ctranslate2', 'onnxruntime', "
            "'huggingface_hub', 'pydantic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
