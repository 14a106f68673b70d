"""The original speech must be gone from the background the dub is mixed over, over any bed."""
import numpy as np
import pytest

from catalogs import dummies
from operators import audio
from operators.backends.whisper import FasterWhisperASR
from operators.config import ASRConfig


@pytest.mark.parametrize("bed", ["noise", "hum"])
def test_the_original_line_cannot_be_heard_in_the_background(tmp_path, bed):
    track = str(tmp_path / "src.wav")
    cues = dummies.speech_track([(1.0, "Good morning, this is the weather report.")], 5.0, track, background=bed)
    source, sr = audio.read_wav(track)
    asr = FasterWhisperASR(ASRConfig())
    assert "weather" in asr.transcribe_text(track, "en").lower()      # the line is there to begin with
    spans = [(c.start_s - 0.05, c.end_s + 0.05) for c in cues]
    background = audio.background_estimate(source, sr, spans, "spectral", -18.0, 0.08)
    audio.write_wav(str(tmp_path / "bg.wav"), background, sr)
    heard = asr.transcribe_text(str(tmp_path / "bg.wav"), "en").lower()
    assert not {"morning", "weather", "report"} & set(heard.replace(".", " ").replace(",", " ").split()), heard

    def level_db(x):
        return 20 * np.log10(np.sqrt(np.mean(x ** 2)))
    inside = background[int(cues[0].start_s * sr):int(cues[0].end_s * sr)]
    outside = source[int(3.8 * sr):]
    assert level_db(inside) > level_db(outside) - 4.0                    # the bed stays (no ducking hole)
