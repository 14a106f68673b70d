"""A 5.1 master: its centre channel is dubbed, the other five stay as they were, and a stereo downmix comes too."""
import av
import numpy as np
import pytest

from catalogs import dummies
from operators import audio
from operators.config import Config
from operators.media import ffmpeg
from operators.mix import Mix
from operators.mux import Mux
from operators.probe import ProbeMedia

# A tone per non-centre channel (FL FR LFE BL BR), so each is recognisable after the dub.
TONES_HZ = {0: 220.0, 1: 330.0, 3: 55.0, 4: 440.0, 5: 550.0}


@pytest.fixture(scope="module")
def dubbed(tmp_path_factory):
    d = tmp_path_factory.mktemp("surround")
    speech = str(d / "speech.wav")
    dummies.speech_track([(0.3, "The house is red.")], 3.0, speech, background=None)
    voice, sr = audio.read_wav(speech)
    t = np.arange(len(voice)) / sr
    channels = [0.1 * np.sin(2 * np.pi * TONES_HZ[c] * t) if c in TONES_HZ else voice[:, 0] for c in range(6)]
    audio.write_wav(str(d / "51.wav"), np.stack(channels, axis=1), sr)
    master = str(d / "master.mov")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=3", "-i", str(d / "51.wav"),
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "576k", "-channel_layout", "5.1",
           "-shortest", master)
    config, work, out = Config(), str(d / "work"), str(d / "out")
    row = ProbeMedia(config, work, out).process_row({"video_id": "m", "uri": master, "source_lang": "en",
                                                     "audio_track": None})
    # One dubbed line: a 1 kHz tone stands in for the new speech, placed where the English line was.
    fit = str(d / "line.fit.wav")
    audio.write_wav(fit, 0.3 * np.sin(2 * np.pi * 1000 * np.arange(int(1.2 * 48000)) / 48000)[:, None], 48000)
    row = {**row, "lang": "es", "status": None, "segments": [
        {"segment_id": "m@300-1500", "start_s": 0.3, "end_s": 1.5, "fit_uri": fit, "placed_start_s": 0.3,
         "placed_end_s": 1.5, "target_text": "La casa es roja."}]}
    row = Mix(config, work, out).process_row(row)
    row = Mux(config, work, out).process_row({**row, "rendered_video_uri": None})
    return row


def test_asr_hears_the_centre_and_the_mix_keeps_5_1(dubbed):
    assert dubbed["source_audio_layout"] == "5.1"
    asr, _ = audio.read_wav(dubbed["asr_audio_uri"])
    source, sr = audio.read_wav(dubbed["source_audio_uri"])
    assert asr.shape[1] == 1 and source.shape[1] == 6
    # the ASR track is the centre channel alone, not a downmix with the tones of the others in it
    centre = audio.resample(source[:, [2]], sr, 16000)[:, 0]
    n = min(len(centre), len(asr))
    assert np.corrcoef(asr[:n, 0], centre[:n])[0, 1] > 0.99
    assert np.corrcoef(asr[:n, 0], audio.resample(source[:, [0]], sr, 16000)[:n, 0])[0, 1] < 0.1


def test_only_the_centre_is_dubbed(dubbed):
    source, sr = audio.read_wav(dubbed["source_audio_uri"])
    dub, dub_sr = audio.read_wav(dubbed["dub_audio_uri"])
    assert dub.shape == source.shape and dub_sr == sr
    others = [0, 1, 3, 4, 5]
    assert np.array_equal(dub[:, others], source[:, others])       # untouched, sample for sample
    line = slice(int(0.5 * sr), int(1.3 * sr))
    centre = dub[line, 2]
    spectrum = np.abs(np.fft.rfft(centre))
    assert np.argmax(spectrum) == pytest.approx(1000 * len(centre) / sr, abs=2)   # the new line is in the centre


def test_the_output_has_the_5_1_dub_a_stereo_downmix_and_the_5_1_original(dubbed):
    with av.open(dubbed["video_out_uri"]) as f:
        tracks = [(s.codec_context.layout.nb_channels, s.metadata.get("title") or s.metadata.get("handler_name"))
                  for s in f.streams.audio]
    assert tracks == [(6, "Dub (es, 5.1)"), (2, "Dub (es, stereo)"), (6, "Original (en)")]
