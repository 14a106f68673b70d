"""media.frames_at (the report's frame strips) against decoding every frame in order."""
import numpy as np

from catalogs import dummies
from operators.media import frame_times, frames, frames_at


def test_frames_at_seeks_to_the_frame_shown_at_each_time_vfr_included(tmp_path):
    path = str(tmp_path / "moving.mp4")
    face = dummies.FaceSpec(dummies.portrait(), (160, 120), 100, path=lambda t: (60 * t, 0))   # every frame differs
    dummies.talking_video(path, 3.0, [face], size=(320, 240), vfr=True)
    every = [(f.time_s, f.image) for f in frames(path)]
    times = [f[0] for f in every]
    assert len(set(np.diff(np.round(times, 4)))) > 1                       # really variable frame rate
    asked = [2.5, 0.0, times[17], times[17] + 0.001, (times[30] + times[31]) / 2, -1.0, 99.0]
    expected = [max(0, int(np.searchsorted(times, t + 1e-6)) - 1) for t in asked]
    for t, k, image in zip(asked, expected, frames_at(path, asked)):
        assert np.array_equal(image, every[k][1]), (t, k)


def test_a_range_of_frames_decodes_from_a_seek_to_exactly_those_frames(tmp_path):
    """Shards decode their own frames only: seeking to the keyframe before, then counting by frame time."""
    path = str(tmp_path / "moving.mp4")
    face = dummies.FaceSpec(dummies.portrait(), (160, 120), 100, path=lambda t: (40 * t, 0))
    dummies.talking_video(path, 6.0, [face], size=(320, 240), vfr=True)   # keyframes every 2 s, B-frames
    every = [(f.index, f.time_s, f.image) for f in frames(path)]
    pts = frame_times(path)
    assert len(pts) == len(every)
    for start, end in ((0, 5), (37, 81), (len(every) - 9, len(every)), (50, 51)):
        part = list(frames(path, start_frame=start, end_frame=end, frame_times_pts_s=pts))
        assert [f.index for f in part] == list(range(start, end))
        for f in part:
            i, t, image = every[f.index]
            assert f.time_s == t and np.array_equal(f.image, image), f.index
