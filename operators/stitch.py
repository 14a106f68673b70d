"""Merge per (video, language): the shards' re-rendered pictures joined into one, without re-encoding.

Every shard's file starts at 0 and holds exactly its frames, encoded alike,
each from a keyframe; ffmpeg's concat demuxer lays them end to end, each
after the previous one's duration taken from the source's frame times, so
the joined picture has the source's frame count and frame times. The mouth
shapes on both sides of a join come from one plan (operators/plan_lips.py),
so a join inside a shot does not show.

A shard whose render failed leaves the whole picture as the source's, lips
unchanged, with the shard's time range and the reason in `lip_reason`: the
dub itself is still delivered. (Frames that do not decode, from damaged data
inside the file, do not fail a shard: the render holds the nearest frame that
did, and says so in `source_notes`.)
"""
from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack

import pyarrow as pa

from operators import formats, paths
from operators import uri as uris
from operators.base import Operator, Resources, Stopwatch, require_binary, summed_timings
from operators.media import MediaError, ffmpeg, probe
from operators.plan_shards import load_frame_times
from operators.schema import FAILED, RESULT, SKIPPED, conform


class Stitch(Operator):
    name = "stitch"
    reads = ("shard_output_uri", "shard_index", "num_shards")
    writes = ("rendered_video_uri",)
    resources = Resources(num_cpus=0.5, memory_gb=0.5)
    output_schema = RESULT
    # The rows of one (video, language) arrive together (pipelines/localize.py groups by this key).
    group_by = ("video_id", "lang")

    def check_dependencies(self) -> None:
        require_binary("ffmpeg", "ffmpeg")

    def __call__(self, group: pa.Table) -> pa.Table:
        rows = sorted(group.to_pylist(), key=lambda r: -1 if r["shard_index"] is None else r["shard_index"])
        watch = Stopwatch()
        first = rows[0]
        if len(rows) == 1 and first["shard_index"] is None:
            return conform(rows, self.output_schema)          # nothing was rendered, or it failed before
        broken = [r for r in rows if r["status"] in (FAILED, SKIPPED)]
        # Stages before the split ran once and are in every shard's row; the render ran per shard.
        timings = summed_timings(list(first.get("timings") or []) + [t for r in rows[1:] for t in r.get("timings") or []
                                                              if t["stage"] == "render"])
        # the video's notes, and what each shard's render added (frames held over damaged data, say)
        notes = list(dict.fromkeys(n for r in rows for n in r.get("source_notes") or []))
        if broken:
            # The picture of that stretch could not be drawn (its frames do not decode, say): the
            # dub keeps the source's picture throughout, its lips as they were, and says why.
            k = broken[0]["shard_index"]
            shard = first["shards"][k]
            why = (f"the re-rendered picture failed in shard {k} ({shard['start_s']:.2f}-{shard['end_s']:.2f} s) "
                   f"at {broken[0]['error_stage']}: {broken[0]['error']}; the source's picture is kept")
            ok = next((r for r in rows if r["status"] not in (FAILED, SKIPPED)), None)
            base = ok if ok is not None else {**broken[0], "status": None, "error_stage": None, "error": None}
            row = {**base, "timings": timings, "source_notes": notes, "rendered_video_uri": None,
                   "lip_status": "unchanged",
                   "lip_reason": why, "frames_rerendered": 0, "share_rerendered": 0.0,
                   "segments": [{**seg, "lip_frames_rendered": 0} for seg in base["segments"] or []]}
        else:
            try:
                row = {**first, "rendered_video_uri": self._stitched(rows), "timings": timings, "source_notes": notes}
            except Exception as e:  # noqa: BLE001 - failures are data
                row = {**first, "timings": timings, "status": FAILED, "error_stage": self.name,
                       "error": uris.redact_text(f"{type(e).__name__}: {e}")}
        row["timings"] = list(row["timings"]) + [watch.timing(self.name)]
        return conform([row], self.output_schema)

    def _stitched(self, rows: list[dict]) -> str:
        first = rows[0]
        if [r["shard_index"] for r in rows] != list(range(first["num_shards"])):
            raise RuntimeError(f"shards {[r['shard_index'] for r in rows]} came back of {first['num_shards']}")
        fmt = formats.choose(first["video_codec"], first["pixel_format"], first["width"], first["height"],
                             self.config.output, rerendered=True)
        times = load_frame_times(first["frame_times_uri"])
        out_uri = paths.rendered_video(self.work_dir, first["video_id"], first["lang"], fmt.suffix)
        with ExitStack() as stack:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="raydub-stitch-"))
            lines = ["ffconcat version 1.0"]
            for r, shard in zip(rows, first["shards"]):
                local = stack.enter_context(uris.local_copy(r["shard_output_uri"]))
                lines.append(f"file '{local}'")
                if shard["end_frame"] < len(times):
                    lines.append(f"duration {times[shard['end_frame']] - times[shard['start_frame']]:.9f}")
            listing = os.path.join(tmp, "shards.ffconcat")
            with open(listing, "w") as f:
                f.write("\n".join(lines) + "\n")
            out = stack.enter_context(uris.staged_output(out_uri))
            ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-map", "0:v", "-c", "copy",
                   "-f", formats.MUXERS[fmt.container], out)
            made = probe(out).frame_count
            if made != first["frame_count"]:
                raise MediaError(f"the stitched picture has {made} frames, the source {first['frame_count']}")
        return out_uri
