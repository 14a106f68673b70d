"""Split: a planned video becomes one row per shard still to analyse.

The rows carry `shard_index` and `num_shards`; the video's plan (probe,
shots, shards) comes from its checkpoint, so the driver only hands over
keys. A shard whose analysis is kept from an earlier run with the same
inputs and settings gets no row: it is not analysed again.
"""
from __future__ import annotations

from operators import checkpoint
from operators.base import Operator, Resources
from operators.schema import SHARD_ROW


class SplitShards(Operator):
    name = "split"
    fans_out = True
    reads = ("video_id",)
    writes = ("shard_index", "num_shards")
    resources = Resources(num_cpus=0.1, memory_gb=0.3)
    output_schema = SHARD_ROW

    def process_row(self, row: dict) -> list[dict]:
        planned = checkpoint.kept_plan(self.work_dir, row, self.config)
        if planned is None:
            raise RuntimeError("the video's plan is missing from the work dir (removed while the job ran?)")
        planned = {**planned, **{k: row.get(k) for k in checkpoint.LIVE_FIELDS}}
        n = len(planned["shards"])
        resume = self.config.run.resume
        fingerprint = checkpoint.shard_print(planned, self.config)
        return [{**planned, "shard_index": k, "num_shards": n, "shard_fingerprint": fingerprint, "timings": []}
                for k in range(n)
                if not resume or checkpoint.kept_shard(self.work_dir, planned, k, self.config) is None]
