"""The end of a shard's analysis: its row kept in the work dir, ok or failed, for the merge and for resume.

Failed shards are saved too (the merge names them and their time range),
but a re-run analyses them again rather than keep the failure.
"""
from __future__ import annotations

import time

import pyarrow as pa

from operators import checkpoint
from operators.base import Operator, Resources
from operators.schema import SHARD_ROW, conform


class SaveShard(Operator):
    name = "save"
    reads = ("video_id", "shard_index")
    resources = Resources(num_cpus=0.1, memory_gb=0.3)
    output_schema = SHARD_ROW

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for row in batch.to_pylist():
            started = time.perf_counter()
            checkpoint.save_shard(self.work_dir, row)
            row["timings"] = list(row.get("timings") or []) + [
                {"stage": self.name, "wall_s": time.perf_counter() - started}]
            out.append(row)
        return conform(out, self.output_schema)
