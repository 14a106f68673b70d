"""The shard plan: where a video is cut, and why."""
import numpy as np
import pytest

from operators.config import ShardsConfig
from operators.plan_shards import (CUT, CUT_IN_GAP, INSIDE, INSIDE_IN_GAP, VIDEO_START, plan, quiet_spans)

FPS = 25
CFG = ShardsConfig(min_s=60, target_s=120, max_s=180, overlap_s=1.0)


def times(minutes: float) -> np.ndarray:
    return np.arange(int(minutes * 60 * FPS)) / FPS


def frame(t_s: float) -> int:
    return int(round(t_s * FPS))


def check_cover(shards, n):
    assert shards[0]["start_frame"] == 0 and shards[-1]["end_frame"] == n
    for a, b in zip(shards, shards[1:]):
        assert a["end_frame"] == b["start_frame"]
    assert [s["shard_index"] for s in shards] == list(range(len(shards)))


def test_a_short_video_is_one_shard():
    t = times(2.5)
    shards = plan(t, [frame(30), frame(90)], [], CFG)
    assert [(s["start_frame"], s["end_frame"], s["cut"]) for s in shards] == [(0, len(t), VIDEO_START)]
    assert shards[0]["margin_before_frames"] == shards[0]["margin_after_frames"] == 0


def test_cuts_prefer_a_shot_cut_in_a_speech_gap_then_the_nearest_to_the_target():
    t = times(6)
    shot_cuts = [frame(s) for s in (70, 115, 125, 200, 240, 300)]
    gaps = [(114.5, 115.5), (199.6, 200.4)]            # 115 and 200 fall in speech gaps, 125 does not
    shards = plan(t, shot_cuts, gaps, CFG)
    check_cover(shards, len(t))
    # From 115 s the target is 235 s: the cut at 240 s is nearer, but 200 s is in a gap. The last
    # 160 s fit one shard.
    assert [(s["start_s"], s["cut"]) for s in shards] == [
        (0.0, VIDEO_START), (115.0, CUT_IN_GAP), (200.0, CUT_IN_GAP)]
    # Without gaps, the shot cuts nearest the targets.
    shards = plan(t, shot_cuts, [], CFG)
    assert [(s["start_s"], s["cut"]) for s in shards] == [(0.0, VIDEO_START), (115.0, CUT), (240.0, CUT)]
    assert all(s["margin_before_frames"] == s["margin_after_frames"] == 0 for s in shards)


def test_a_shot_longer_than_the_limit_is_cut_inside_in_a_gap_with_margins():
    t = times(5)                                        # one 5-minute take
    gaps = [(100.0, 100.6), (130.0, 130.4)]
    shards = plan(t, [], gaps, CFG)
    check_cover(shards, len(t))
    assert [s["cut"] for s in shards] == [VIDEO_START, INSIDE_IN_GAP]
    assert shards[1]["start_frame"] == frame(130.2)   # the gap's middle nearest to 120 s
    assert shards[0]["margin_after_frames"] == shards[1]["margin_before_frames"] == FPS
    assert shards[0]["margin_before_frames"] == shards[1]["margin_after_frames"] == 0


def test_without_gaps_or_cuts_a_long_take_is_cut_at_the_target():
    t = times(7)
    shards = plan(t, [], [], CFG)
    check_cover(shards, len(t))
    assert [s["cut"] for s in shards] == [VIDEO_START, INSIDE, INSIDE]
    assert [s["start_frame"] for s in shards] == [0, frame(120), frame(240)]
    assert all((s["end_s"] - s["start_s"]) <= CFG.max_s for s in shards)


def test_no_shard_is_shorter_than_the_minimum_except_a_short_video():
    t = times(3.2)                                       # 192 s: 180 + 12 would leave a 12 s stub
    shards = plan(t, [], [], CFG)
    assert min(s["end_s"] - s["start_s"] for s in shards) >= CFG.min_s


def test_the_plan_is_deterministic():
    t = times(30)
    rng = np.random.default_rng(0)
    cuts = sorted(rng.integers(0, len(t), 80).tolist())
    gaps = [(float(a), float(a) + 0.5) for a in sorted(rng.uniform(0, 1800, 200))]
    first, second = plan(t, cuts, gaps, CFG), plan(t, cuts, gaps, CFG)
    assert first == second
    check_cover(first, len(t))
    assert all(CFG.min_s <= s["end_s"] - s["start_s"] <= CFG.max_s for s in first[:-1])


def test_variable_frame_rate_times_are_cut_on_their_own_frames():
    steps = np.tile([1, 2], 5 * 60 * FPS)                # frames 40 and 80 ms long, alternately
    t = np.concatenate([[0], np.cumsum(steps)])[:-1] / FPS
    t = t[t < 300]
    shards = plan(t, [], [], CFG)
    check_cover(shards, len(t))
    for s in shards:
        assert s["start_s"] == t[s["start_frame"]]


def test_settings_must_be_ordered():
    with pytest.raises(ValueError, match="min_s <= target_s <= max_s"):
        ShardsConfig(min_s=100, target_s=90, max_s=180)


def test_quiet_spans_find_the_pauses_between_words(tmp_path):
    import soundfile as sf

    rate = 16000
    rng = np.random.default_rng(1)
    audio = 0.002 * rng.standard_normal(rate * 10)                  # room tone
    for a, b in ((1.0, 3.0), (3.5, 6.0), (6.1, 9.0)):               # speech, pauses of 0.5 s and 0.1 s
        audio[int(a * rate):int(b * rate)] += 0.3 * np.sin(2 * np.pi * 220 * np.arange(int((b - a) * rate)) / rate)
    path = str(tmp_path / "a.wav")
    sf.write(path, audio.astype(np.float32), rate)
    spans = quiet_spans(path, min_gap_s=0.3, block_s=1.0)          # blocks smaller than the file
    assert [(round(a, 2), round(b, 2)) for a, b in spans] == [(0.0, 1.0), (3.0, 3.5), (9.0, 10.0)]


def test_a_video_over_the_length_limit_is_refused_with_its_length(tmp_path):
    from catalogs import dummies
    from operators.config import Config
    from operators.probe import ProbeMedia
    from operators.schema import CATALOG, conform

    dummies.still_video(dummies.portrait(), str(tmp_path / "v.mp4"), 3.0, audio_wav=None)
    config = Config.from_dict({"shards": {"max_video_s": 2.0, "min_s": 0.5, "target_s": 1.0, "max_s": 2.0,
                                          "overlap_s": 0.1}})
    op = ProbeMedia(config, str(tmp_path / "work"), str(tmp_path / "out"))
    [row] = op(conform([{"video_id": "v", "uri": str(tmp_path / "v.mp4")}], CATALOG)).to_pylist()
    assert row["status"] == "failed" and row["error_stage"] == "probe"
    assert row["error"] == "MediaError: the video is 0:00:03.0 long, over the limit of 0:00:02.0 (shards.max_video_s)"
