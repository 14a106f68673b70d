"""Fan-out: one video row becomes one result row per target language.

Everything before this point is language-independent and ran once per
video; everything after it runs once per (video, language). Rows that
failed or were skipped before the fan-out are expanded too, so every
catalog row reaches the manifest once per target language with its reason.
"""
from __future__ import annotations

import pyarrow as pa

from operators.base import Operator, Resources, Stopwatch
from operators.schema import MANIFEST_VERSION, RESULT, conform, result_id


class ExpandLanguages(Operator):
    name = "expand"
    fans_out = True
    reads = ("target_langs",)
    writes = ("lang", "result_id")
    resources = Resources(num_cpus=0.1)
    output_schema = RESULT

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for row in batch.to_pylist():
            watch = Stopwatch()
            expanded = [{**row, "lang": lang, "result_id": result_id(row["video_id"], lang),
                         "manifest_version": MANIFEST_VERSION} for lang in row["target_langs"] or []]
            timing = watch.timing(self.name)
            for r in expanded:
                r["timings"] = list(r.get("timings") or []) + [timing]
            out.extend(expanded)
        return conform(out, self.output_schema)
