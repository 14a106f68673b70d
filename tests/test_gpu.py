"""GPU path (make test-gpu): the ASR backend on CUDA. Skipped where no CUDA device is visible."""
import pytest

from operators.backends.whisper import FasterWhisperASR
from operators.config import ASRConfig

pytestmark = pytest.mark.gpu


def _cuda_devices() -> int:
    import ctranslate2

    return ctranslate2.get_cuda_device_count()


@pytest.mark.skipif(_cuda_devices() == 0, reason="no CUDA device visible to CTranslate2")
def test_whisper_transcribes_on_gpu(tmp_path):
    from catalogs import dummies

    wav = str(tmp_path / "s.wav")
    dummies.speak("The weather is good today.", wav)
    asr = FasterWhisperASR(ASRConfig(device="auto", compute_type="float16"))
    assert asr.device() == "cuda"
    t = asr.transcribe(wav, "en")
    assert "weather" in " ".join(s.text.lower() for s in t.segments)
