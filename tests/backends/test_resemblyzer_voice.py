"""Speaker similarity: the same voice scores high, another voice clearly lower."""
import pickle

import numpy as np
import pytest

from operators.backends import load_speaker_encoder
from operators.backends.protocols import SpeakerEncoder
from operators.config import ScoreConfig
from operators.score import cosine, read_16k_mono


@pytest.fixture(scope="module")
def encoder():
    return load_speaker_encoder(ScoreConfig())


@pytest.fixture(scope="module")
def voices(piper, espeak, tmp_path_factory):
    """Two different English sentences from Piper's Joe, and the second one from espeak-ng."""
    d = tmp_path_factory.mktemp("voices")
    piper.synthesize("Good morning, and welcome to the station. Today we look at the weather.", "en",
                     str(d / "joe-a.wav"))
    piper.synthesize("The recipe needs two eggs, some flour and a little patience.", "en", str(d / "joe-b.wav"))
    espeak.synthesize("The recipe needs two eggs, some flour and a little patience.", "en", str(d / "espeak.wav"))
    return {name: read_16k_mono(str(d / f"{name}.wav")) for name in ("joe-a", "joe-b", "espeak")}


def test_the_same_voice_scores_high_and_another_voice_lower(encoder, voices):
    joe_a, joe_b, other = (encoder.embed(voices[n]) for n in ("joe-a", "joe-b", "espeak"))
    same, different = cosine(joe_a, joe_b), cosine(joe_a, other)
    assert same > 0.85                       # measured 0.93
    assert different < 0.7                   # measured 0.50
    assert same - different > 0.25
    assert np.linalg.norm(joe_a) == pytest.approx(1.0, abs=1e-4)


def test_silence_or_a_click_gives_no_embedding(encoder):
    assert encoder.embed(np.zeros(16000 * 2, dtype=np.float32)) is None
    assert encoder.embed(np.sin(np.arange(800) / 3.0).astype(np.float32)) is None


def test_protocol_licence_and_pickling(encoder):
    assert isinstance(encoder, SpeakerEncoder)
    info = encoder.model_info()
    assert (info.name, info.license, info.source) == ("resemblyzer-ge2e", "Apache-2.0", "package:resemblyzer")
    clone = pickle.loads(pickle.dumps(encoder))
    assert clone.embed(np.zeros(1600, dtype=np.float32)) is None
