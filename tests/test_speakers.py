"""Speaker identities across shots: the clustering on known embeddings, the faces file that carries them,
and one video end to end, where a face seen in two shots is one speaker with one lip model.
"""
import json

import numpy as np
import pytest

from catalogs import dummies
from operators import faces_file
from operators.lip_model import speaker_of_tracks
from operators.merge_shards import _track_embeddings, cluster_identities, speaker_ids
from operators.plan_lips import load_lip_models
from operators.schema import OK
from pipelines.localize import run
from tests.conftest import small_config


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _people(n_people, dims=16):
    """Orthogonal identities: any two people are sqrt(2) apart."""
    return np.eye(dims)[:n_people]


def _views(person, spread, seed):
    """A view of a person: their vector nudged by `spread` in a direction of its own, normalised."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=person.shape)
    noise -= noise @ person * person                    # orthogonal to the person: exact distance
    return _unit(person + spread * noise / np.linalg.norm(noise))


def test_clusters_are_the_people_numbered_by_first_row():
    a, b, c = _people(3)
    rows = [_views(b, 0.1, 1), _views(a, 0.1, 2), _views(b, 0.1, 3), _views(c, 0.1, 4), _views(a, 0.1, 5)]
    apart = np.zeros((5, 5), bool)
    assert cluster_identities(np.array(rows), apart, 0.43) == [0, 1, 0, 2, 1]


def test_threshold_is_the_mean_distance_between_groups():
    # Three views on a line, 0.3 apart: neighbours join (0.3), the far end then is 0.45 on average
    # from the pair (0.3 and 0.6): over 0.43 it stays apart, under 0.5 it joins.
    base, step = np.eye(8)[0], np.eye(8)[1]
    rows = np.array([base, base + 0.3 * step, base + 0.6 * step])     # not unit: plain Euclidean geometry
    apart = np.zeros((3, 3), bool)
    assert cluster_identities(rows, apart, 0.43) == [0, 0, 1]
    assert cluster_identities(rows, apart, 0.5) == [0, 0, 0]
    assert cluster_identities(rows, apart, 0.29) == [0, 1, 2]


def test_tracks_on_screen_together_are_never_one_speaker():
    # A mirror image: the same identity twice in one shot.
    (a,) = _people(1)
    rows = np.array([_views(a, 0.05, 1), _views(a, 0.05, 2), _views(a, 0.05, 3)])
    apart = np.zeros((3, 3), bool)
    apart[0, 1] = apart[1, 0] = True
    # Row 2 joins one of them (the closer), never both; 0 and 1 stay two speakers.
    groups = cluster_identities(rows, apart, 0.43)
    assert groups[0] != groups[1] and groups[2] in (groups[0], groups[1])


def _track(tid, start, end):
    return {"track_id": tid, "start_frame": start, "end_frame": end}


def test_speaker_ids_by_first_appearance_and_tracks_without_embeddings_alone():
    a, b = _people(2)
    # In time order: a (shot 1), b and a (shot 2, together), an unembedded face, then b again (shot 3).
    tracks = [_track(10, 0, 50), _track(20, 50, 100), _track(21, 50, 100), _track(30, 100, 120),
              _track(40, 120, 200)]
    embeddings = {10: _views(a, 0.1, 1), 20: _views(b, 0.1, 2), 21: _views(a, 0.1, 3), 40: _views(b, 0.1, 4)}
    assert speaker_ids(tracks, embeddings, 0.43) == {10: 0, 20: 1, 21: 0, 30: 2, 40: 1}
    # Without a model's threshold (no backend could embed), every track is its own speaker.
    assert speaker_ids(tracks, {}, None) == {10: 0, 20: 1, 21: 2, 30: 3, 40: 4}
    assert speaker_of_tracks([{"track_id": 5, "speaker_id": 1}, {"track_id": 6, "speaker_id": None},
                              {"track_id": 7}]) == {5: 1, 6: 2, 7: 3}


def test_faces_file_carries_embeddings_and_the_speakers(tmp_path):
    a, b = _people(2)
    empty = {"sample_track": [], "sample_frame": [], "landmarks": np.zeros((0, 68, 2))}
    part0, part1 = str(tmp_path / "0.npz"), str(tmp_path / "1.npz")
    faces_file.write_part(part0, np.arange(3) / 25, empty, {},
                          embeddings=faces_file.Embeddings({0: (a, 3), 1: (b, 1)}, 0.43))
    # Track 10000 continues track 0 across a cut inside the shot: its pieces are weighed by their frames.
    half = _unit(a + b)
    faces_file.write_part(part1, np.arange(3) / 25, empty, {},
                          embeddings=faces_file.Embeddings({10000: (half, 1)}, 0.5))
    read = faces_file.read_embeddings(part0)
    assert read.same_identity_distance == 0.43 and sorted(read.by_track) == [0, 1]
    np.testing.assert_allclose(read.by_track[0][0], a, atol=1e-7)
    assert read.by_track[0][1] == 3
    vectors, limit = _track_embeddings([part0, part1], {10000: 0})
    assert limit == 0.43                                     # the strictest of the parts
    np.testing.assert_allclose(vectors[0], _unit(3 * a + half), atol=1e-6)
    # A part from a backend that cannot embed has none, and names no threshold.
    faces_file.write_part(str(tmp_path / "2.npz"), np.arange(3) / 25, empty, {})
    assert faces_file.read_embeddings(str(tmp_path / "2.npz")) == faces_file.Embeddings({}, None)

    index = str(tmp_path / "faces.json")
    faces_file.write_index(index, str(tmp_path / "times.npy"), [part0, part1], {10000: 0}, {0: 0, 1: 1})
    assert faces_file.speaker_of_track(index) == {0: 0, 1: 1}
    assert faces_file.speaker_of_track(part0) == {}


# --- end to end ------------------------------------------------------------------------------

LINES = [(0.3, "The house is red."), (3.3, "I drink coffee every morning."), (6.3, "The dog sleeps in the garden.")]
SHOT_CUT_S = 2.5
DURATION_S = 9.0


@pytest.fixture(scope="module")
def cast(tmp_path_factory, ray_local):
    """Shot one: the astronaut alone speaks the first line. Shot two: she speaks the other two beside
    another person, who listens (that face, enlarged from 25 px, is too blurry for its landmarks to
    follow a speaking mouth)."""
    d = tmp_path_factory.mktemp("cast")
    speech = str(d / "speech.wav")
    cues = dummies.speech_track(LINES, DURATION_S, speech)
    astronaut = dummies.portrait("astronaut")[20:300, 90:400]
    a, b = str(d / "a.mp4"), str(d / "b.mp4")
    dummies.talking_video(a, SHOT_CUT_S, [dummies.FaceSpec(astronaut, (320, 180), 150)], audio_wav=speech,
                          background=(20, 30, 40))
    dummies.talking_video(b, DURATION_S, [
        dummies.FaceSpec(astronaut, (180, 190), 130),
        dummies.FaceSpec(dummies.portrait("lfw"), (470, 180), 130, speaks=[]),
    ], audio_wav=speech, background=(120, 90, 60))
    path = str(d / "cast.mp4")
    dummies.cut_between(a, b, SHOT_CUT_S, DURATION_S, speech, path)
    dummies.write_subtitles(cues, str(d / "cast.en.srt"))
    catalog = d / "catalog.jsonl"
    catalog.write_text(json.dumps({"video_id": "cast", "uri": "cast.mp4", "source_lang": "en",
                                   "source_subtitles_uri": "cast.en.srt", "target_langs": ["es"]}) + "\n")
    summary = run(str(catalog), str(tmp_path_factory.mktemp("cast-out")), config=small_config())
    (result,) = summary.results
    assert result["status"] == OK, (result["error_stage"], result["error"])
    return result


def test_the_same_face_in_two_shots_is_one_speaker_and_another_face_another(cast):
    tracks = sorted(cast["face_tracks"], key=lambda t: (t["start_frame"], t["track_id"]))
    assert [t["shot_index"] for t in tracks] == [0, 1, 1]
    faces = faces_file.load(cast["faces_uri"])
    x = {t["track_id"]: float(faces["landmarks"][faces["sample_track"] == t["track_id"]][:, :, 0].mean())
         for t in tracks}
    first, left, right = tracks[0], *sorted(tracks[1:], key=lambda t: x[t["track_id"]])
    # The astronaut: alone in shot one, on the left in shot two; the other person on the right.
    assert (first["speaker_id"], left["speaker_id"], right["speaker_id"]) == (0, 0, 1)
    assert faces_file.speaker_of_track(cast["faces_uri"]) == {t["track_id"]: t["speaker_id"] for t in tracks}


def test_one_lip_model_per_speaker_learnt_from_all_their_shots(cast):
    lines = cast["segments"]
    assert [s["speaker_id"] for s in lines] == [0, 0, 0], [s["lip_reason"] for s in lines]
    # Each line keeps its own track (the face on screen): the first in shot one, the others in shot two.
    tracks = [s["speaker_track_id"] for s in lines]
    assert tracks[0] != tracks[1] == tracks[2]
    speakers = {s["speaker_id"]: s for s in cast["speakers"]}
    assert sorted(speakers) == [0, 1]
    astronaut, listener = speakers[0], speakers[1]
    assert astronaut["track_ids"] == sorted(tracks[:2])
    # Her model saw both shots: more frames than the second shot holds.
    assert astronaut["lip_model_frames"] > (DURATION_S - SHOT_CUT_S) * 25 + 20
    assert astronaut["lip_model_r2"] > 0.3
    assert cast["lip_model_r2"] == astronaut["lip_model_r2"]
    # The listener never speaks a line: a speaker with no model.
    assert len(listener["track_ids"]) == 1 and listener["lip_model_frames"] is None
    models = load_lip_models(cast["lip_models_uri"])
    assert sorted(models) == astronaut["track_ids"] and models[tracks[0]] is models[tracks[1]]
    assert models[tracks[0]].speaker_id == 0
    assert {m["name"] for m in cast["models"] if m["stage"] == "faces"} == {
        "dlib-68-landmarks", "dlib-face-recognition-resnet"}
