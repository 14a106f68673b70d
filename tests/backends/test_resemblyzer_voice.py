"""Speaker similarity: the same voice scores high, another voice clearly lower."""
import pickle

import numpy as np
import pytest

from operators.backends import load_speaker_encoder
from operators.backends.protocols import SpeakerEncoder
from operators.config import ScoreConfig
from operators import audio
from operators.config import Config
from operators.score import Score, cosine


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
    return {name: audio.read_mono(str(d / f"{name}.wav"), 16000) for name in ("joe-a", "joe-b", "espeak")}


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


def test_score_compares_each_dubbed_line_with_the_source_voice_in_that_line(voices, tmp_path, monkeypatch):
    """A source track with Joe speaking at 1.0-s; a dub in Joe's voice scores high, one in espeak-ng's low.

    The line's times must be used: anywhere else in the track is silence, which has no voice at all.
    """
    joe_a = voices["joe-a"]
    source = np.zeros(16000 + len(joe_a) + 16000, dtype=np.float32)
    source[16000:16000 + len(joe_a)] = joe_a
    audio.write_wav(tmp_path / "source.wav", source[:, None], 16000)
    for name in ("joe-b", "espeak"):
        audio.write_wav(tmp_path / f"{name}.wav", voices[name][:, None], 16000)
    line = {"segment_id": "v@1", "start_s": 1.0, "end_s": 1.0 + len(joe_a) / 16000, "speech_rate": 1.0,
            "overflow_s": 0.0, "cut_s": 0.0}
    config = Config.from_dict({"score": {"back_transcribe": False}})
    score = Score(config, str(tmp_path / "work"), str(tmp_path / "out"))
    score.setup()
    embedded = []
    monkeypatch.setattr(score.voices, "embed", lambda a, embed=score.voices.embed: embedded.append(len(a)) or embed(a))

    def scored(dub: str, lang: str) -> dict:
        row = {"video_id": "v", "lang": lang, "asr_audio_uri": str(tmp_path / "source.wav"),
               "segments": [{**line, "fit_uri": str(tmp_path / f"{dub}.wav")}]}
        return score.process_row(row)

    same = scored("joe-b", "en")
    assert same["speaker_similarity"] > 0.85 and same["segments"][0]["speaker_similarity"] == same["speaker_similarity"]
    assert {m["name"] for m in same["models"]} == {"resemblyzer-ge2e"}
    assert len(embedded) == 2                                    # the source line, then the dub
    other = scored("espeak", "es")
    assert other["speaker_similarity"] < 0.7
    assert len(embedded) == 3                                    # the source line's voice is per video: reused
