"""Which audio track of a master is dubbed: by the catalog's audio_track (number or language), else by source_lang."""
import numpy as np
import pytest

from catalogs import dummies
from operators import audio
from operators.catalog import _audio_track
from operators.config import Config
from operators.media import MediaError, choose_audio_track, ffmpeg
from operators.probe import ProbeMedia

TRACKS = [("spa", True), ("eng", False), (None, False), ("ger", False)]


@pytest.mark.parametrize("wanted, source_lang, chosen", [
    (None, None, 0),        # the default track
    (None, "en", 1),        # the source language's track, over the default one
    (None, "fr", 0),        # no track in the source language: the default one
    ("3", "en", 3),         # a number wins over the source language
    ("de", None, 3),        # 'ger' in the file is German
    ("es", "en", 0),
])
def test_choose_audio_track(wanted, source_lang, chosen):
    assert choose_audio_track(TRACKS, wanted, source_lang) == chosen


@pytest.mark.parametrize("wanted, message", [
    ("fr", "no audio track is tagged 'fr': the file's audio tracks are 0 spa, 1 eng, 2 untagged, 3 ger"),
    ("4", "audio track 4 does not exist: the file's audio tracks are 0 spa, 1 eng, 2 untagged, 3 ger"),
])
def test_a_track_that_is_not_there_names_what_is(wanted, message):
    with pytest.raises(MediaError) as e:
        choose_audio_track(TRACKS, wanted, None)
    assert str(e.value) == message


def test_catalog_audio_track_values():
    assert [_audio_track(v) for v in (0, "2", "de", "ger", "deu", "eng", "pt-BR")] == \
        ["0", "2", "de", "de", "de", "en", "pt"]
    for bad in ("-1", "de/..", "", True, 1.5):
        with pytest.raises(ValueError):
            _audio_track(bad)


@pytest.fixture(scope="module")
def two_tracks(tmp_path_factory):
    """A master with a silent Spanish track (marked default) and the English dialogue as the second track."""
    d = tmp_path_factory.mktemp("tracks")
    speech = str(d / "speech.wav")
    dummies.speech_track([(0.3, "The house is red.")], 2.5, speech, background=None)
    path = str(d / "master.mkv")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=2.5",
           "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-i", speech,
           "-map", "0:v", "-map", "1:a", "-map", "2:a", "-t", "2.5", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-metadata:s:a:0", "language=spa", "-metadata:s:a:1", "language=eng",
           "-disposition:a:0", "default", "-disposition:a:1", "0", path)
    return d, path


def _probe(d, path, **row):
    op = ProbeMedia(Config(), str(d / "work"), str(d / "out"))
    return op.process_row({"video_id": "m", "uri": path, "source_lang": None, "audio_track": None, **row})


def _speech_rms(row) -> float:
    samples, _ = audio.read_wav(row["asr_audio_uri"])
    return float(np.sqrt(np.mean(samples ** 2)))


def test_the_source_languages_track_is_extracted_not_the_default_one(two_tracks):
    d, path = two_tracks
    by_lang = _probe(d, path, source_lang="en")
    assert by_lang["source_audio_track"] == 1 and _speech_rms(by_lang) > 0.01
    default = _probe(d, path)
    assert default["source_audio_track"] == 0 and _speech_rms(default) < 1e-4
    named = _probe(d, path, audio_track="1")
    assert named["source_audio_track"] == 1 and _speech_rms(named) > 0.01
    with pytest.raises(MediaError, match="no audio track is tagged 'fr'"):
        _probe(d, path, audio_track="fr")
