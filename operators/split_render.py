"""Fan-out per (video, language): one row per shard, so a long video's picture renders on every worker.

A result with nothing to re-render (or that already failed) stays one row:
it has no shards to draw, and the stitch passes it on.
"""
from __future__ import annotations

from operators.base import Operator, Resources
from operators.schema import RESULT_SHARD_ROW


class SplitRender(Operator):
    name = "split_render"
    fans_out = True
    reads = ("shards", "lip_targets_uri")
    writes = ("shard_index", "num_shards")
    resources = Resources(num_cpus=0.1, memory_gb=0.3)
    output_schema = RESULT_SHARD_ROW

    def process_row(self, row: dict) -> list[dict]:
        if not row.get("lip_targets_uri"):
            return [{**row, "shard_index": None, "num_shards": 0}]
        n = len(row["shards"])
        return [{**row, "shard_index": k, "num_shards": n} for k in range(n)]
