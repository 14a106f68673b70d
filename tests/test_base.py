import pyarrow as pa

from operators.base import Operator, Resources, SkipRow
from operators.config import Config
from operators.schema import FAILED, SKIPPED, VIDEO, conform


class Halve(Operator):
    """Fails on a marked input, skips another, otherwise computes from the input."""
    name = "shots"
    output_schema = VIDEO
    resources = Resources(num_cpus=0.5)

    def setup(self):
        self.setups = getattr(self, "setups", 0) + 1

    def process_row(self, row):
        if row["video_id"] == "boom":
            raise ValueError("bad frame")
        if row["video_id"] == "quiet":
            raise SkipRow("no speech")
        return {**row, "duration_s": row["duration_s"] / 2}


def _batch(*ids, **extra):
    return conform([{"video_id": i, "uri": f"/x/{i}.mp4", "duration_s": 10.0, **extra} for i in ids], VIDEO)


def test_exceptions_become_failed_rows_and_later_operators_pass_them_through(tmp_path):
    op = Halve(Config(), str(tmp_path), str(tmp_path))
    out = op(_batch("a", "boom", "quiet")).to_pylist()
    assert [r["video_id"] for r in out] == ["a", "boom", "quiet"]
    assert out[0]["duration_s"] == 5.0 and out[0]["status"] is None
    assert out[1]["status"] == FAILED and out[1]["error_stage"] == "shots"
    assert out[1]["error"] == "ValueError: bad frame"
    assert out[2]["status"] == SKIPPED and out[2]["error"] == "no speech"
    assert [t["stage"] for t in out[0]["timings"]] == ["shots"]
    # second pass: the failed and skipped rows come through untouched, the ok one is processed again
    again = op(pa.Table.from_pylist(out, schema=VIDEO)).to_pylist()
    assert again[1] == out[1] and again[2] == out[2]
    assert again[0]["duration_s"] == 2.5
    assert op.setups == 1


def test_resources_are_overridable_from_config(tmp_path):
    cfg = Config.from_dict({"resources": {"shots": {"num_cpus": 3, "pool": [2, 5]}}})
    op = Halve(cfg, str(tmp_path), str(tmp_path))
    assert op.resources == Resources(num_cpus=3, pool=(2, 5))
    assert Halve.resources == Resources(num_cpus=0.5)


def test_a_missing_tool_fails_on_the_driver_with_the_install_line(tmp_path, monkeypatch):
    import pytest

    from operators.base import MissingDependency
    from operators.translate import Translate

    monkeypatch.setenv("PATH", str(tmp_path))          # nothing on PATH
    with pytest.raises(MissingDependency, match="apt-get install apertium apertium-en-es"):
        Translate(Config(), str(tmp_path), str(tmp_path))


def test_shots_are_found_where_the_picture_cuts(tmp_path):
    import subprocess

    from catalogs import dummies
    from operators.shots import DetectShots

    a, b = dummies.portrait("astronaut"), dummies.portrait("camera")
    dummies.still_video(a, str(tmp_path / "a.mp4"), 2.0)
    dummies.still_video(b, str(tmp_path / "b.mp4"), 2.0)
    (tmp_path / "list.txt").write_text(f"file '{tmp_path / 'a.mp4'}'\nfile '{tmp_path / 'b.mp4'}'\n")
    subprocess.run(["ffmpeg", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(tmp_path / "list.txt"),
                    "-c", "copy", str(tmp_path / "ab.mp4")], check=True)
    op = DetectShots(Config(), str(tmp_path), str(tmp_path))
    row = op(conform([{"video_id": "ab", "uri": str(tmp_path / "ab.mp4"), "fps": 25.0, "frame_count": 100}],
                     VIDEO)).to_pylist()[0]
    assert [(s["start_frame"], s["end_frame"]) for s in row["shots"]] == [(0, 50), (50, 100)]
    assert row["shots"][1]["start_s"] == 2.0
