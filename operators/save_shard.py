"""The end of a shard's analysis: its row kept in the work dir, ok or failed, for the merge and for resume.

Failed shards are saved too (the merge names them and their time range),
but a re-run analyses them again rather than keep the failure.
"""
from __future__ import annotations

import pyarrow as pa

from operators import checkpoint
from operators.base import Operator, Resources, Stopwatch
from operators.schema import SHARD_ROW, conform


class SaveShard(Operator):
    name = "save"
    reads = ("video_id", "shard_index")
    resources = Resources(num_cpus=0.1, memory_gb=0.3)
    output_schema = SHARD_ROW

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for row in batch.to_pylist():
            watch = Stopwatch()
            # A video that failed before it was split (its plan lost, say) has no shard to keep: it goes on
            # to the merge as the failed row it is.
            if row.get("shard_index") is not None:
                checkpoint.save_shard(self.work_dir, row)
            row["timings"] = list(row.get("timings") or []) + [watch.timing(self.name)]
            out.append(row)
        return conform(out, self.output_schema)
