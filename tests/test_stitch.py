"""The stitch step on its own: what it does with rows that carry nothing to join, or a shard that failed."""
import pyarrow as pa

from operators.config import Config
from operators.schema import FAILED, RESULT, RESULT_SHARD_ROW, conform
from operators.stitch import Stitch

SHARDS = [{"shard_index": k, "start_frame": 100 * k, "end_frame": 100 * (k + 1), "start_s": 4.0 * k,
           "end_s": 4.0 * (k + 1), "cut": "inside a shot", "margin_before_frames": 0, "margin_after_frames": 0,
           "status": "ok", "error": None} for k in range(3)]
SEGMENTS = [{"segment_id": "v@1", "start_s": 1.0, "end_s": 2.0, "source_text": "Hi.", "lip_frames_rendered": 20}]


def stitch(rows) -> list[dict]:
    op = Stitch(Config(), "/tmp/work", "/tmp/out")
    out = op(conform(rows, RESULT_SHARD_ROW))
    assert out.schema == RESULT
    return out.to_pylist()


def row(**values) -> dict:
    return {"video_id": "v", "uri": "v.mp4", "lang": "es", "shards": SHARDS, "segments": SEGMENTS,
            "lip_status": "rendered", "frames_rerendered": 40, "share_rerendered": 0.13,
            "timings": [{"stage": "mix", "wall_s": 2.0}, {"stage": "render", "wall_s": 5.0}], **values}


def test_a_result_with_nothing_rendered_passes_as_it_is():
    [out] = stitch([row(shard_index=None, num_shards=0, lip_status="unchanged", frames_rerendered=0,
                        lip_reason="no dubbed line has a visible speaker")])
    assert out["lip_status"] == "unchanged" and out["lip_reason"] == "no dubbed line has a visible speaker"
    assert out["rendered_video_uri"] is None and out["status"] is None


def test_a_shard_that_failed_keeps_the_source_picture_and_says_where_and_why():
    rows = [row(shard_index=k, num_shards=3, shard_output_uri=f"/tmp/work/{k}.mp4") for k in (0, 2)]
    rows.insert(1, row(shard_index=1, num_shards=3, status=FAILED, error_stage="render",
                       error="MediaError: frames 100-200 of the picture: 37 decoded of 100 (damaged picture data?)"))
    [out] = stitch(rows)
    assert out["status"] is None and out["error"] is None                 # the dub itself goes on
    assert out["rendered_video_uri"] is None and out["lip_status"] == "unchanged"
    assert out["frames_rerendered"] == 0 and out["segments"][0]["lip_frames_rendered"] == 0
    assert out["lip_reason"] == (
        "the re-rendered picture failed in shard 1 (4.00-8.00 s) at render: MediaError: frames 100-200 of the "
        "picture: 37 decoded of 100 (damaged picture data?); the source's picture is kept")
    # stages before the fan-out counted once, the render once per shard that ran it
    times = {t["stage"]: t["wall_s"] for t in out["timings"]}
    assert times["mix"] == 2.0 and times["render"] == 15.0 and "stitch" in times
