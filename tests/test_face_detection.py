"""Face detection as tracking uses it: on the luma plane, and around a tracked face's box."""
from __future__ import annotations

import av
import numpy as np
import pytest

from catalogs import dummies
from operators.backends.dlib_faces import DlibFaces
from operators.media import luma
from operators.track_faces import iou


def _frame_1080p(face_at: tuple[int, int] = (700, 20)) -> av.VideoFrame:
    """The astronaut portrait, enlarged to 1024 px (a close-up), on a grey 1920x1080 picture, as an
    H.264-style yuv420p frame."""
    import cv2

    canvas = np.full((1080, 1920, 3), 90, np.uint8)
    face = cv2.resize(dummies.portrait("astronaut"), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    x, y = face_at
    canvas[y:y + face.shape[0], x:x + face.shape[1]] = face
    return av.VideoFrame.from_ndarray(canvas, format="rgb24").reformat(format="yuv420p")


def test_luma_is_a_copy_of_the_y_plane():
    frame = _frame_1080p()
    y = luma(frame)
    plane = np.frombuffer(frame.planes[0], np.uint8).reshape(frame.planes[0].height, -1)[:, :frame.width]
    assert y.shape == (1080, 1920) and y.dtype == np.uint8 and y.flags.c_contiguous
    assert np.array_equal(y, plane)
    y[:] = 0                                     # the decoder's frame is not written through it
    assert plane.max() > 0
    deep = luma(frame.reformat(format="yuv420p10le"))
    assert deep.shape == (1080, 1920) and deep.dtype == np.uint8
    assert np.abs(deep.astype(int) - frame.to_ndarray(format="gray").astype(int)).max() <= 2


def test_the_face_found_in_colour_is_found_in_luma_and_around_its_box():
    faces = DlibFaces()
    frame = _frame_1080p()
    rgb, gray = frame.to_ndarray(format="rgb24"), luma(frame)
    in_colour, in_luma = faces.detect(rgb), faces.detect(gray)
    assert len(in_colour) == len(in_luma) == 1
    assert iou(in_colour[0], in_luma[0]) > 0.8
    around = faces.detect_around(gray, in_luma[0])
    assert len(around) == 1 and iou(around[0], in_luma[0]) > 0.5
    # landmarks on luma land where they land in colour, to a couple of pixels
    assert np.abs(faces.landmarks(gray, in_luma[0]) - faces.landmarks(rgb, in_luma[0])).max() < 3.0


@pytest.mark.parametrize("box", [(0.0, 0.0, 300.0, 300.0), (1700.0, 900.0, 1919.0, 1079.0)])
def test_nothing_is_found_around_a_box_away_from_the_face(box):
    from operators.backends.protocols import FaceBox

    assert DlibFaces().detect_around(luma(_frame_1080p()), FaceBox(*box)) == []


@pytest.mark.parametrize("scan_every, found_at", [(25, 50), (10, 40)])
def test_a_face_entering_mid_shot_is_found_at_the_next_whole_picture_search(tmp_path, scan_every, found_at):
    """Between whole-picture searches only the tracked faces' surroundings are searched: a second face
    that appears at frame 38 of a shot starts its track at the next search (frames 0, 25, 50 with
    `scan_every_frames` 25; 0, 10, 20, 30, 40 with 10), and the first face's track goes on meanwhile."""
    from operators.config import Config
    from operators.media import frame_times
    from operators.track_faces import TrackFaces

    path = str(tmp_path / "enters.mp4")
    head = dummies.portrait("astronaut")[20:300, 90:400]
    stays = dummies.FaceSpec(head, (160, 180), 120)
    enters = dummies.FaceSpec(head, (480, 180), 120,
                              path=lambda t: (0, 0) if t >= 38 / 25 else (2000, 0))    # off the picture before
    dummies.talking_video(path, 3.0, [stays, enters], size=(640, 360))
    times_uri = str(tmp_path / "frame_times.npy")
    np.save(times_uri, frame_times(path))
    config = Config.load(None)
    config = config.model_copy(update={"faces": config.faces.model_copy(update={"scan_every_frames": scan_every})})
    row = {"video_id": "enters", "uri": path, "frame_times_uri": times_uri, "shard_index": 0,
           "shots": [{"shot_index": 0, "start_frame": 0, "end_frame": 75, "start_s": 0.0, "end_s": 3.0}],
           "shards": [{"start_frame": 0, "end_frame": 75, "margin_before_frames": 0, "margin_after_frames": 0}]}
    operator = TrackFaces(config, str(tmp_path / "work"), str(tmp_path / "out"))
    operator.setup()
    tracks = operator.process_row(row)["face_tracks"]
    spans = sorted((t["start_frame"], t["end_frame"]) for t in tracks)
    assert spans == [(0, 75), (found_at, 75)], spans


def _covered_video(tmp_path, frames: tuple[int, int]) -> tuple[str, str]:
    """One face, 3 s at 25 fps, under a grey card from frames[0] to frames[1] (inclusive)."""
    import subprocess

    from operators.media import frame_times

    clean, path = str(tmp_path / "clean.mp4"), str(tmp_path / f"covered-{frames[0]}-{frames[1]}.mp4")
    head = dummies.portrait("astronaut")[20:300, 90:400]
    dummies.talking_video(clean, 3.0, [dummies.FaceSpec(head, (320, 180), 120)], size=(640, 360))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", clean, "-vf",
                    f"drawbox=x=220:y=60:w=200:h=240:color=gray:t=fill:enable='between(n,{frames[0]},{frames[1]})'",
                    "-c:v", "libx264", "-crf", "18", "-c:a", "copy", path], check=True)
    times_uri = str(tmp_path / "frame_times.npy")
    np.save(times_uri, frame_times(path))
    return path, times_uri


def _tracks_of(tmp_path, path: str, times_uri: str, **faces) -> list[dict]:
    from operators.config import Config
    from operators.track_faces import TrackFaces

    config = Config.load(None)
    config = config.model_copy(update={"faces": config.faces.model_copy(update=faces)})
    row = {"video_id": "covered", "uri": path, "frame_times_uri": times_uri, "shard_index": 0,
           "shots": [{"shot_index": 0, "start_frame": 0, "end_frame": 75, "start_s": 0.0, "end_s": 3.0}],
           "shards": [{"start_frame": 0, "end_frame": 75, "margin_before_frames": 0, "margin_after_frames": 0}]}
    operator = TrackFaces(config, str(tmp_path / "work"), str(tmp_path / "out"))
    operator.setup()
    return operator.process_row(row)["face_tracks"]


def test_a_face_covered_for_two_detections_keeps_one_track(tmp_path):
    """Covered over frames 32-43: the detections at 35 and 40 miss it (faces.max_missed_detections is 4), its landmarks carry it, and it is
    one track 0-75. Allowed no miss, it is two tracks with a gap (the first ends at its last confirmed frame)."""
    path, times_uri = _covered_video(tmp_path, (32, 43))
    tracks = _tracks_of(tmp_path, path, times_uri)
    assert [(t["start_frame"], t["end_frame"], t["end_reason"]) for t in tracks] == [(0, 75, "shot end")]
    assert len(_tracks_of(tmp_path, path, times_uri, max_missed_detections=0)) > 1    # the misses are real
    one_miss = _tracks_of(tmp_path, path, times_uri, max_missed_detections=0)
    assert sorted((t["start_frame"], t["end_frame"]) for t in one_miss) == [(0, 31), (45, 75)]


def test_a_face_gone_for_good_ends_at_its_last_confirmed_frame(tmp_path):
    """Covered from frame 32 to the end: five detections miss (35 to 55), and the track ends cut back to
    frame 30, the last a detection confirmed, not at 55 with landmarks drawn on the card."""
    path, times_uri = _covered_video(tmp_path, (32, 80))
    (track,) = _tracks_of(tmp_path, path, times_uri)
    assert (track["start_frame"], track["end_frame"]) == (0, 31)
    assert track["end_reason"].startswith("lost (no face detected 5 times in a row")


def test_a_head_turning_to_56_degrees_and_back_is_one_track(tmp_path):
    """The head turns away to 56 degrees and back over 3 s, drifting sideways: dlib's HOG misses it near
    the turn's peak, its landmarks carry it there, and it stays one track through the whole shot."""
    from operators.media import frame_times

    head = dummies.portrait("astronaut")[20:300, 90:400]
    path = str(tmp_path / "turn.mp4")
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for i in range(75):
            yaw = 56.0 * np.sin(np.pi * i / 74)
            canvas = np.full((360, 640, 3), 90, np.uint8)
            face = dummies.turned(head, yaw, (90, 90, 90))
            x = 120 + int(2 * i)                                       # 150 px of drift over the shot
            canvas[40:40 + face.shape[0], x:x + face.shape[1]] = face
            out.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        out.mux(stream.encode())
    times_uri = str(tmp_path / "frame_times.npy")
    np.save(times_uri, frame_times(path))
    tracks = _tracks_of(tmp_path, path, times_uri)
    assert [(t["start_frame"], t["end_frame"], t["end_reason"]) for t in tracks] == [(0, 75, "shot end")]
    assert len(_tracks_of(tmp_path, path, times_uri, max_missed_detections=0)) > 1    # the misses are real


def test_an_animation_style_face_that_turns_and_talks_is_one_track(tmp_path):
    """A flat-shaded, outlined face (animation style), talking and turning 30 degrees either way."""
    import math

    from operators.media import frame_times

    head = dummies.flat_shaded(dummies.portrait("astronaut")[20:300, 90:400])
    wav, path = str(tmp_path / "toon.wav"), str(tmp_path / "toon.mp4")
    dummies.speech_track([(0.3, "Hello, I am drawn by hand.")], 3.0, wav)
    dummies.talking_video(path, 3.0, [dummies.FaceSpec(head, (320, 180), 130,
                                                       turn=lambda t: 30.0 * math.sin(2 * math.pi * t / 3.0))],
                          wav, size=(640, 360), background=(90, 90, 90))
    times_uri = str(tmp_path / "frame_times.npy")
    np.save(times_uri, frame_times(path))
    tracks = _tracks_of(tmp_path, path, times_uri)
    assert [(t["start_frame"], t["end_frame"], t["end_reason"]) for t in tracks] == [(0, 75, "shot end")]
    assert tracks[0]["face_height_px"] > 80


def _moving_face(n: int = 100) -> np.ndarray:
    """The astronaut's dlib landmarks over n frames: drifting, pushed in 1.0 -> 1.3x, turning to 30 degrees
    (the eyes' distance narrows) and talking (the lower lip and chin drop by up to 0.15 eye-distances)."""
    from operators import face_geometry as geometry

    faces = DlibFaces()
    rgb = dummies.portrait("astronaut")
    base = faces.landmarks(rgb, faces.detect(rgb)[0])
    centre = base.mean(axis=0)
    out = []
    for i in range(n):
        lm = base - centre
        lm[:, 0] *= np.cos(np.radians(30.0 * np.sin(2 * np.pi * i / 75)))
        drop = 0.15 * max(0.0, np.sin(2 * np.pi * i / 9)) * float(geometry.face_scale(base))
        lm[list(range(5, 12)) + [55, 56, 57, 58, 59, 64, 65, 66, 67], 1] += drop
        out.append(lm * (1.0 + 0.3 * i / n) + centre + [2.0 * i, 0.5 * i])
    return np.array(out)


def test_a_lower_face_that_jumps_against_the_eyes_is_put_back():
    """dlib on a blurry face: for a few frames the mouth, nose and chin jump up a quarter of the face
    together (its box stepped a pyramid level) while the eyes hold. Those frames, and only those, take the
    lower face of the frames around them, placed by their own eyes; a turn, a push-in and speech are kept."""
    from operators import face_geometry as geometry
    from operators.track_faces import LOWER_FACE, UPPER_LIP_ANCHOR, repair_lower_face

    truth = _moving_face()
    repaired, jumped = repair_lower_face(truth)
    assert len(jumped) == 0 and np.array_equal(repaired, truth)

    broken = truth.copy()
    for i in range(40, 53):
        eye_line_y = broken[i, 36:48, 1].mean()
        broken[i, LOWER_FACE, 1] = eye_line_y + 0.75 * (broken[i, LOWER_FACE, 1] - eye_line_y)
    repaired, jumped = repair_lower_face(broken)
    assert list(jumped) == list(range(40, 53))
    scale = geometry.face_scale(truth[40:53])
    anchor_error = np.linalg.norm(repaired[40:53, UPPER_LIP_ANCHOR] - truth[40:53, UPPER_LIP_ANCHOR], axis=2)
    broken_error = np.linalg.norm(broken[40:53, UPPER_LIP_ANCHOR] - truth[40:53, UPPER_LIP_ANCHOR], axis=2)
    assert (anchor_error.max(axis=1) / scale).max() < 0.03            # back on the mouth (was 0.2-0.3 off)
    assert (broken_error.max(axis=1) / scale).min() > 0.15
    assert np.array_equal(repaired[:, np.r_[17:27, 36:48]], broken[:, np.r_[17:27, 36:48]])   # brows, eyes kept
    assert np.array_equal(repaired[:40], broken[:40]) and np.array_equal(repaired[53:], broken[53:])


def test_the_repair_spans_two_seconds_at_the_videos_frame_rate(tmp_path):
    """At 60 fps the same half-second jump is 30 frames: a median over a fixed 49 frames would follow it
    (and keep it); over the 2 s the faces stage takes from the shard's frame times (121 frames), it is put back."""
    from operators import faces_file
    from operators.backends.protocols import FaceBox
    from operators.track_faces import LOWER_FACE, _save, _Track, repair_window_frames

    assert (repair_window_frames(24.0), repair_window_frames(25.0), repair_window_frames(60.0)) == (49, 51, 121)
    broken = _moving_face(300)
    for i in range(120, 150):
        eye_line_y = broken[i, 36:48, 1].mean()
        broken[i, LOWER_FACE, 1] = eye_line_y + 0.75 * (broken[i, LOWER_FACE, 1] - eye_line_y)

    def saved(fps: float) -> np.ndarray:
        track = _Track(track_id=0, shot_index=0, box=FaceBox(0, 0, 1, 1), frames=list(range(300)),
                       landmarks=list(broken))
        [(_, _, landmarks)] = _save(str(tmp_path / f"faces-{fps}.npz"), np.arange(300) / fps, [track], 1, 0, 300,
                                    faces_file.Embeddings({}, None))
        return landmarks

    assert np.array_equal(saved(24.0)[120:150], broken[120:150])          # 30 of 49 frames: the median's own
    put_back = saved(60.0)
    assert not np.allclose(put_back[120:150, LOWER_FACE], broken[120:150, LOWER_FACE])
    assert np.array_equal(put_back[:120], broken[:120]) and np.array_equal(put_back[150:], broken[150:])
