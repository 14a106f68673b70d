"""The faces file's reader: a shard's render reads its own part and the parts of its tracks, not every part."""
import numpy as np

from operators import faces_file

FRAMES_PER_SHARD = 10


def _part(path, shard: int, tracks: list[int], rng) -> str:
    frames = np.arange(shard * FRAMES_PER_SHARD, (shard + 1) * FRAMES_PER_SHARD)
    samples = {"sample_track": np.repeat(tracks, len(frames)), "sample_frame": np.tile(frames, len(tracks)),
               "landmarks": rng.random((len(tracks) * len(frames), 68, 2)) * 100}
    crops = {t: (rng.integers(0, 255, (len(frames), 8, 8, 3), dtype=np.uint8), frames, np.zeros((len(frames), 2)))
             for t in tracks}
    faces_file.write_part(str(path), frames / 25, samples, crops)
    return str(path)


def test_a_shard_reads_its_part_and_the_parts_of_its_tracks(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    stride = faces_file.TRACK_IDS_PER_SHARD
    # Shard 0: track 0; shard 1: track 0 again (joined across a cut inside the shot) and a new one;
    # shard 2 failed (no part); shard 3: a face of its own.
    parts = [_part(tmp_path / "0.npz", 0, [0], rng), _part(tmp_path / "1.npz", 1, [stride, stride + 1], rng),
             _part(tmp_path / "3.npz", 3, [3 * stride], rng)]
    np.save(tmp_path / "times.npy", np.arange(4 * FRAMES_PER_SHARD) / 25)
    index = str(tmp_path / "faces.json")
    faces_file.write_index(index, str(tmp_path / "times.npy"), parts, {stride: 0}, {0: 0, stride + 1: 1, 3 * stride: 2},
                           part_shards=[0, 1, 3])
    whole = faces_file.load(index, crops_of={0})

    read = []
    real = faces_file.read_part
    monkeypatch.setattr(faces_file, "read_part", lambda uri, *a, **k: read.append(uri) or real(uri, *a, **k))
    shard1 = faces_file.load(index, crops_of={0}, for_shard=1)
    assert read == parts[:2]                                 # not shard 3's part
    for key in ("crops_0", "crop_frame_0", "crop_origin_0", "frame_times_s"):
        np.testing.assert_array_equal(shard1[key], whole[key])
    mine = np.isin(whole["sample_frame"], np.arange(0, 2 * FRAMES_PER_SHARD))
    for key in faces_file.SAMPLE_KEYS:
        np.testing.assert_array_equal(shard1[key], whole[key][mine])

    read.clear()
    faces_file.load(index, crops_of={3 * stride}, for_shard=3)
    assert read == [parts[2]]
