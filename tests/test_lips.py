"""Lip sync end to end on an embedded Ray: talking faces made from a real portrait, and the bad cases.

One run dubs a small catalog into German (catalog subtitles, so no ASR or MT
is involved and the lines are exactly where the test puts them), with a
lossless encode (crf 0), so untouched pixels can be compared exactly.
"""
import json

import av
import numpy as np
import pytest

from catalogs import dummies
from operators.face_geometry import mouth_box
from operators.schema import OK
from operators.faces_file import load as load_faces_file
from operators.sync import decode_ranges
from pipelines.localize import run
from tests.conftest import small_config

FPS = 25
SIZE = (640, 360)
LINES = [(0.5, "Hello, I am an astronaut."), (3.5, "The earth is very beautiful.")]
GERMAN = ["Hallo, ich bin Astronautin.", "Die Erde ist sehr schön."]
DURATION_S = 6.0


def astronaut_head():
    return dummies.portrait("astronaut")[20:300, 90:400]


def _clip(d, name, faces, cues_for=None, lines=LINES, german=GERMAN, duration_s=DURATION_S, vfr=False,
          cues=None):
    wav = str(d / f"{name}.wav")
    spoken = dummies.speech_track(lines, duration_s, wav, background="hum")
    cues = cues or spoken
    truth = dummies.talking_video(str(d / f"{name}.mp4"), duration_s, faces, audio_wav=wav, fps=FPS, size=SIZE,
                                  vfr=vfr)
    dummies.write_subtitles(cues, str(d / f"{name}.en.srt"))
    dummies.write_subtitles([dummies.Cue(c.start_s, c.end_s, t) for c, t in zip(cues, german)],
                            str(d / f"{name}.de.srt"))
    return {"video_id": name, "uri": f"{name}.mp4", "source_lang": "en", "source_subtitles_uri": f"{name}.en.srt",
            "subtitles_uri_de": f"{name}.de.srt", "target_langs": ["de"]}, spoken, truth


@pytest.fixture(scope="module")
def lips_run(tmp_path_factory, ray_local):
    d = tmp_path_factory.mktemp("lips")
    head = astronaut_head()
    centre = (SIZE[0] // 2, SIZE[1] // 2)
    rows, cues = [], {}

    row, cues["talking"], _ = _clip(d, "talking", [dummies.FaceSpec(head, centre, 130)])
    rows.append(row)
    row, _, _ = _clip(d, "vfr", [dummies.FaceSpec(head, centre, 130)], vfr=True)
    rows.append(row)
    row, _, _ = _clip(d, "noface", [])
    rows.append(row)
    row, _, _ = _clip(d, "small", [dummies.FaceSpec(head, centre, 80)])
    rows.append(row)
    # Slides out of the picture during the second line.
    row, cues["leaving"], _ = _clip(d, "leaving", [dummies.FaceSpec(
        head, centre, 130, path=lambda t: (0.0 if t < 4.0 else (t - 4.0) * 600.0, 0.0))])
    rows.append(row)
    # Two faces: the left one speaks the first line, the right one the second; the third line
    # is spoken by nobody on screen.
    three = LINES + [(6.5, "Nobody here says this.")]
    left, right = (170, 180), (470, 180)
    wav_lines = dummies.speech_track(three, 9.0, str(d / "probe.wav"))
    spans = [(c.start_s, c.end_s) for c in wav_lines]
    row, cues["two"], _ = _clip(d, "two", [
        dummies.FaceSpec(head, left, 120, speaks=[spans[0]]),
        dummies.FaceSpec(head[:, ::-1].copy(), right, 120, speaks=[spans[1]]),
    ], lines=three, german=GERMAN + ["Das sagt hier niemand."], duration_s=9.0)
    rows.append(row)
    # A line of 0.16 s (4 frames): too short to re-render.
    short_cues = [dummies.Cue(0.5, 0.66, "Hi."), dummies.Cue(3.5, 5.0, "The earth is very beautiful.")]
    row, _, _ = _clip(d, "short", [dummies.FaceSpec(head, centre, 130)], cues=short_cues,
                      german=["Hallo.", "Die Erde ist sehr schön."])
    rows.append(row)

    # A talking photo: the portrait as a still image, with speech and subtitles beside it.
    import cv2

    portrait = cv2.resize(dummies.portrait("astronaut"), (720, 720), interpolation=cv2.INTER_CUBIC)   # face ~130 px
    cv2.imwrite(str(d / "photo.jpg"), cv2.cvtColor(portrait, cv2.COLOR_RGB2BGR))
    cues["photo"] = dummies.speech_track(LINES, DURATION_S, str(d / "photo.wav"), background="hum")
    dummies.write_subtitles(cues["photo"], str(d / "photo.en.srt"))
    dummies.write_subtitles([dummies.Cue(c.start_s, c.end_s, t) for c, t in zip(cues["photo"], GERMAN)],
                            str(d / "photo.de.srt"))
    rows.append({"video_id": "photo", "uri": "photo.jpg", "audio_uri": "photo.wav", "source_lang": "en",
                 "source_subtitles_uri": "photo.en.srt", "subtitles_uri_de": "photo.de.srt", "target_langs": ["de"]})

    # Line replacement (ADR): the first line re-voiced in English from new text; the second keeps its voice.
    row, cues["adr"], _ = _clip(d, "adr", [dummies.FaceSpec(head, centre, 130)])
    row = {k: v for k, v in row.items() if k not in ("subtitles_uri_de", "target_langs")}
    first = cues["adr"][0]
    row["replace_lines"] = [{"start_s": first.start_s, "end_s": first.end_s, "text": "I fly to the moon today."}]
    rows.append(row)

    catalog = d / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = str(tmp_path_factory.mktemp("lips-out"))
    # Lossless encode: untouched pixels compare exactly. Faces under 100 px (brow to chin) are "too small".
    summary = run(str(catalog), out, config=small_config(output={"video_crf": 0}, faces={"min_face_px": 100}))
    results = {r["video_id"]: r for r in summary.results}
    return d, results, cues


def _decode(path):
    with av.open(path) as c:
        return [(f.pts, f.to_ndarray(format="yuv420p")) for f in c.decode(c.streams.video[0])]


def test_every_row_ends_ok_with_a_lip_status(lips_run):
    _, results, _ = lips_run
    failed = {k: (r["error_stage"], r["error"]) for k, r in results.items() if r["status"] != OK}
    assert not failed
    assert results["talking"]["lip_status"] == "rendered"
    assert results["noface"]["lip_status"] == "unchanged"


def test_talking_head_is_rerendered_in_sync(lips_run):
    d, results, _ = lips_run
    r = results["talking"]
    assert r["lip_model_r2"] > 0.5
    assert r["source_sync_confidence"] > 0.5
    assert abs(r["sync_offset_frames"]) <= 2
    assert r["sync_confidence"] >= 0.8 * r["source_sync_confidence"]
    assert 0.0 < r["share_rerendered"] < 1.0
    for s in r["segments"]:
        assert s["speaker_track_id"] == 0 and s["lip_reason"] is None and s["lip_frames_rendered"] > 0
        assert s["sync_confidence"] is not None
    models = {(m["stage"], m["name"]): m for m in r["models"]}
    assert "non-commercial" in models[("faces", "dlib-68-landmarks")]["license"]
    # The identities of the faces come from dlib's recognition model, public domain.
    assert models[("faces", "dlib-face-recognition-resnet")]["license"].startswith("CC0-1.0")
    assert ("render", "warp-renderer") in models
    assert [(s["speaker_id"], s["lip_model_frames"] > 0) for s in r["speakers"]] == [(0, True)]
    assert [s["lip_model_kind"] for s in r["speakers"]] == ["speaker"]
    # What a reviewer would see in the re-rendered mouth passes the review's thresholds.
    assert r["visual_ssim_min"] > 0.8 and r["visual_seam_max"] < 4.0 and r["visual_flicker_max"] < 8.0
    assert r["mouth_shape_error_max"] < 0.12
    assert not [x for x in r["review_reasons"] if x.startswith("picture:")]


def test_a_talking_photo_becomes_a_talking_video(lips_run):
    """A still portrait and its speech: a video as long as the speech, the head moving a little and
    blinking, its lips drawn by the speaker-independent mouth, scored like any dub."""
    d, results, _ = lips_run
    r = results["photo"]
    assert r["status"] == OK, (r["error_stage"], r["error"])
    assert r["uri"].endswith("photo.jpg") and r["photo_video_uri"].endswith("photo.mp4")
    assert any(n.startswith("talking photo:") and "blinks" in n for n in r["source_notes"])
    assert r["duration_s"] == pytest.approx(DURATION_S, abs=0.05)
    assert r["lip_status"] == "rendered" and r["frames_rerendered"] > 40
    assert [(s["lip_model_kind"], s["lip_model_r2"]) for s in r["speakers"]] == [("loudness", None)]
    for s in r["segments"]:
        assert s["speaker_track_id"] is not None and s["lip_frames_rendered"] > 0
    # The photo's own mouth never moves; the dub's does, with the dub's speech.
    assert r["sync_confidence"] is not None and r["sync_confidence"] > 0.3
    assert r["visual_ssim_min"] > 0.6
    frames = _decode(r["video_out_uri"])
    assert len(frames) == r["frame_count"]


def test_untouched_frames_are_bit_identical(lips_run):
    """crf 0 is lossless: frames outside the rendered spans decode to exactly the source's pixels,
    and rendered frames differ only inside the mouth box."""
    d, results, cues = lips_run
    r = results["talking"]
    source = _decode(str(d / "talking.mp4"))
    dubbed = _decode(r["video_out_uri"])
    assert len(dubbed) == len(source) == r["frame_count"]
    rendered = {i for s in r["segments"] for i in range(len(source))
                if min(s["start_s"], s["placed_start_s"]) - 0.2 <= i / FPS < max(s["end_s"], s["placed_end_s"]) + 0.2}
    same = [i for i in range(len(source)) if i not in rendered]
    assert len(same) > 20
    for i in same:
        np.testing.assert_array_equal(dubbed[i][1], source[i][1])
    changed = [i for i in rendered if not np.array_equal(dubbed[i][1], source[i][1])]
    assert len(changed) > 0.5 * len(rendered)
    # In rendered frames, nothing changes outside the mouth box of the tracked face.
    faces = load_faces_file(r["faces_uri"])
    landmarks = dict(zip(faces["sample_frame"].tolist(), faces["landmarks"].astype(float)))
    height = r["height"]
    for i in changed:
        x0, y0, x1, y1 = mouth_box(landmarks[i])
        outside = np.ones((height, r["width"]), bool)
        outside[max(0, y0):y1, max(0, x0):x1] = False
        np.testing.assert_array_equal(dubbed[i][1][:height][outside], source[i][1][:height][outside])


def test_no_face_keeps_the_picture_stream(lips_run):
    d, results, _ = lips_run
    r = results["noface"]
    assert r["rendered_video_uri"] is None and r["frames_rerendered"] == 0
    assert "no face on screen" in r["lip_reason"]
    assert all("no face on screen" in s["lip_reason"] for s in r["segments"])
    with av.open(str(d / "noface.mp4")) as a, av.open(r["video_out_uri"]) as b:
        assert [bytes(p) for p in a.demux(a.streams.video[0]) if p.size] == \
               [bytes(p) for p in b.demux(b.streams.video[0]) if p.size]


def test_small_face_is_left_alone_with_the_reason(lips_run):
    _, results, _ = lips_run
    r = results["small"]
    assert r["lip_status"] == "unchanged"
    assert all("too small" in s["lip_reason"] for s in r["segments"]), [s["lip_reason"] for s in r["segments"]]


def test_face_leaving_the_frame_mid_line(lips_run):
    _, results, _ = lips_run
    first, second = results["leaving"]["segments"]
    assert first["lip_reason"] is None and first["lip_frames_rendered"] > 0
    assert second["speaker_track_id"] is None
    # The track ends where the face leaves; a fast slide can also read as a cut to the shot
    # detector (its score depends on the speech-driven mouth), which ends the track at "shot end".
    reason = second["lip_reason"]
    assert "tracked for only" in reason or "no face" in reason, reason


def test_two_faces_each_line_goes_to_its_speaker_and_offscreen_lines_to_nobody(lips_run):
    d, results, _ = lips_run
    r = results["two"]
    first, second, third = r["segments"]
    assert first["speaker_track_id"] is not None and second["speaker_track_id"] is not None
    assert first["speaker_track_id"] != second["speaker_track_id"]
    assert len(r["face_tracks"]) == 2
    # A face and its mirror image are one identity to dlib, but two faces on screen together are two people.
    assert first["speaker_id"] != second["speaker_id"]
    assert sorted(t["speaker_id"] for t in r["face_tracks"]) == [0, 1]
    assert third["speaker_track_id"] is None and "speaker not visible" in third["lip_reason"]
    # During the first line the right face (the listener) keeps its source pixels.
    source = _decode(str(d / "two.mp4"))
    dubbed = _decode(r["video_out_uri"])
    for i in range(int(first["start_s"] * FPS) + 2, int(first["end_s"] * FPS) - 2):
        np.testing.assert_array_equal(dubbed[i][1][:360, 380:], source[i][1][:360, 380:])
    assert any(not np.array_equal(dubbed[i][1][:360, :300], source[i][1][:360, :300])
               for i in range(int(first["start_s"] * FPS), int(first["end_s"] * FPS)))


def test_very_short_line_is_left_alone(lips_run):
    _, results, _ = lips_run
    short, long = results["short"]["segments"]
    assert "too short" in short["lip_reason"] and short["speaker_track_id"] is None
    assert long["lip_reason"] is None


def test_variable_frame_rate_keeps_its_frame_times(lips_run):
    d, results, _ = lips_run
    r = results["vfr"]
    source = _decode(str(d / "vfr.mp4"))
    dubbed = _decode(r["video_out_uri"])
    src_pts, dub_pts = [p for p, _ in source], [p for p, _ in dubbed]
    assert len(set(np.diff(src_pts))) > 1                     # the source really is variable
    with av.open(str(d / "vfr.mp4")) as a, av.open(r["video_out_uri"]) as b:
        ta, tb = a.streams.video[0].time_base, b.streams.video[0].time_base
    np.testing.assert_allclose([float(p * tb) for p in dub_pts], [float(p * ta) for p in src_pts], atol=1e-3)
    assert r["lip_status"] == "rendered" and r["sync_offset_frames"] is not None


def test_decode_ranges_seek_only_where_a_keyframe_saves_decoding():
    keyframes = np.array([0, 100, 200])
    assert decode_ranges([], keyframes) == []
    assert decode_ranges([5, 6, 7, 20, 21], keyframes) == [(5, 22)]           # no keyframe between: go on
    assert decode_ranges([5, 6, 150, 151, 250], keyframes) == [(5, 7), (150, 152), (250, 251)]
    assert decode_ranges([90, 120], keyframes) == [(90, 91), (120, 121)]       # from 100 rather than from 91
    assert decode_ranges([99, 100, 130], keyframes) == [(99, 131)]             # a seek would go back to 100
    assert decode_ranges([3, 99, 100], np.array([], dtype=int)) == [(3, 101)]  # no index: one decode


SYNC_FIELDS = ("sync_offset_frames", "sync_confidence", "mouth_change_ratio")


def test_sync_score_is_the_same_from_only_the_frames_it_needs(lips_run, monkeypatch):
    """The sync stage decodes only the scored lines' frames (+- the offset search); measured on every
    frame of the output instead, every score comes out the same."""
    from operators import media, sync

    _, results, _ = lips_run
    decoded = {}

    def counting_frames(*args, **kwargs):
        for frame in media.frames(*args, **kwargs):
            decoded[mode] = decoded.get(mode, 0) + 1
            yield frame

    monkeypatch.setattr(sync, "frames", counting_frames)
    op = sync.ScoreSync(small_config(faces={"min_face_px": 100}), work_dir="", out_dir="")
    op.setup()
    for name in ("talking", "vfr", "leaving", "two"):
        row = results[name]
        decoded.clear()
        mode = "restricted"
        restricted = op.process_row(dict(row))
        mode = "full"
        with monkeypatch.context() as m:
            m.setattr(sync, "decode_ranges", lambda wanted, keyframes: [(0, None)])
            full = op.process_row(dict(row))
        for field in SYNC_FIELDS:
            assert restricted[field] == full[field] == row[field], (name, field)
            assert ([s[field] for s in restricted["segments"]] == [s[field] for s in full["segments"]]
                    == [s[field] for s in row["segments"]]), (name, field)
        assert full["sync_confidence"] is not None
        assert decoded["restricted"] <= decoded["full"] == row["frame_count"], name
    # "two": its last line is spoken off screen, so the frames after the second line are not decoded.
    assert decoded["restricted"] < decoded["full"]


def test_a_replaced_line_is_revoiced_and_relipped_alone(lips_run):
    """ADR: the catalog's new text for the first line is spoken in English and its lips re-rendered;
    the second line keeps its own voice and picture."""
    import soundfile

    d, results, cues = lips_run
    r = results["adr"]
    assert (r["status"], r["lang"]) == (OK, "en"), (r["error_stage"], r["error"])
    first, second = r["segments"]
    assert first["target_text"] == "I fly to the moon today." and first["notes"][0].startswith("replaced line (ADR)")
    assert first["fit_uri"] and first["lip_frames_rendered"] > 0 and first["speaker_track_id"] == 0
    assert second["fit_uri"] is None and not second["target_text"]
    assert r["translation_route"] == ["replaced lines"]
    srt = open(r["subtitles_out_uri"], encoding="utf-8").read()          # every line, the new one as re-voiced
    assert "I fly to the moon today." in srt and "The earth is very beautiful." in srt
    assert "Hello, I am an astronaut." not in srt
    # The second line sounds as in the source; the first does not.
    dub, dub_sr = soundfile.read(r["dub_audio_uri"], always_2d=True)
    line2 = slice(int((cues["adr"][1].start_s + 0.1) * dub_sr), int((cues["adr"][1].end_s - 0.1) * dub_sr))
    line1 = slice(int((first["start_s"] + 0.1) * dub_sr), int((first["end_s"] - 0.1) * dub_sr))
    original = soundfile.read(r["source_audio_uri"], always_2d=True)[0]
    assert np.abs(dub[line2] - original[line2]).max() < 1e-3
    assert np.sqrt(np.mean((dub[line1] - original[line1]) ** 2)) > 0.01
    # Pictures: the second line's frames are the source's (lossless encode); the first line's mouth is new.
    source_frames, dubbed = _decode(str(d / "adr.mp4")), _decode(r["video_out_uri"])
    for i in range(int(cues["adr"][1].start_s * FPS) + 5, int(cues["adr"][1].end_s * FPS) - 5):
        np.testing.assert_array_equal(dubbed[i][1], source_frames[i][1])
    assert any(not np.array_equal(dubbed[i][1], source_frames[i][1])
               for i in range(int(first["start_s"] * FPS), int(first["end_s"] * FPS)))


class SmearsAfter:
    """The offline renderer, until its `after`-th frame; from then on it smears the mouth box (broken)."""

    def __init__(self, after: int) -> None:
        from operators.backends.warp_renderer import WarpRenderer

        self.inner, self.after, self.calls = WarpRenderer(), after, 0

    def prepare(self, frames, landmarks):
        self.inner.prepare(frames, landmarks)

    def render(self, frame, landmarks, target_lips, audio_16k=None):
        import cv2

        self.calls += 1
        out = self.inner.render(frame, landmarks, target_lips, audio_16k)
        if self.calls >= self.after:
            x0, y0, x1, y1 = mouth_box(landmarks)
            out[y0:y1, x0:x1] = cv2.GaussianBlur(out[y0:y1, x0:x1], (0, 0), 8)
        return out

    def model_info(self):
        return self.inner.model_info()


def test_a_render_that_breaks_the_face_is_not_shipped(lips_run, tmp_path):
    """The render guard: from the first frame whose face around the mouth is smeared, the rest of the line
    keeps the source picture (exactly, at crf 0), the 3 frames before it fade back to the source, and the
    frames are marked in the shard's visual scores."""
    from operators import paths, visual
    from operators.plan_lips import load_targets
    from operators.render import RenderLips

    d, results, _ = lips_run
    r = results["talking"]
    config = small_config(output={"video_crf": 0}, faces={"min_face_px": 100})
    render = RenderLips(config, str(tmp_path / "work"), str(tmp_path / "out"), backend=SmearsAfter(after=12))
    shard = render.process_row({**r, "shard_index": 0})
    targets = sorted(load_targets(r["lip_targets_uri"]))
    first_line = [f for f in targets if f < targets[0] + 200 and all(g in targets for g in range(targets[0], f + 1))]
    broken = first_line[11]                                     # the 12th rendered frame
    quality = visual.load(paths.render_quality(str(tmp_path / "work"), "talking", "de", 0))
    assert [f for f in first_line if quality[f]["kept"]] == [f for f in first_line if f >= broken]
    source, dubbed = _decode(str(d / "talking.mp4")), _decode(shard["shard_output_uri"])
    for f in first_line:
        if f >= broken:
            np.testing.assert_array_equal(dubbed[f][1], source[f][1])
    # The same shard drawn by a renderer that never breaks: the 3 frames before the broken one are that
    # render faded towards the source, a quarter, a half and three quarters of the way (nearest most).
    whole = RenderLips(config, str(tmp_path / "whole"), str(tmp_path / "out"), backend=SmearsAfter(after=10 ** 9))
    drawn = _decode(whole.process_row({**r, "shard_index": 0})["shard_output_uri"])
    for k in (1, 2, 3):
        f, w = broken - k, 1.0 - k / 4                        # w: the source's share
        expected = w * source[f][1].astype(float) + (1 - w) * drawn[f][1].astype(float)
        changed = np.abs(drawn[f][1].astype(int) - source[f][1].astype(int)) > 8
        assert changed.sum() > 50
        assert np.abs(dubbed[f][1].astype(float) - expected)[changed].mean() < 2.5, k
    np.testing.assert_array_equal(dubbed[broken - 4][1], drawn[broken - 4][1])     # before the fade: as drawn
