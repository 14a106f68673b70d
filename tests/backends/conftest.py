"""Shared, session-scoped backends: each model loads once for the whole backends suite."""
import pytest

from operators.config import ASRConfig, TTSConfig


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """A fresh node cache per session: whisper-base is assembled here, not in ~/.cache."""
    cache = tmp_path_factory.mktemp("model-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYDUB_MODEL_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield cache


@pytest.fixture(scope="session")
def asr(model_cache):
    from operators.backends.whisper import FasterWhisperASR

    # Greedy decoding: clean synthetic speech needs no beam, and it halves the time.
    return FasterWhisperASR(ASRConfig(beam_size=1, device="cpu"))


@pytest.fixture(scope="session")
def piper(model_cache):
    from operators.backends.piper_tts import PiperTTS

    return PiperTTS(TTSConfig())


@pytest.fixture(scope="session")
def espeak():
    from operators.backends.espeak import EspeakTTS

    return EspeakTTS(TTSConfig())

