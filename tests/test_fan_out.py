"""A split's rows leave it one per block: the stages after it run them side by side."""
import pyarrow as pa

from operators.base import Operator, Resources
from operators.config import Config
from pipelines.localize import apply

SCHEMA = pa.schema([("video_id", pa.string()), ("part", pa.int64())])


class Split(Operator):
    name = "split"
    fans_out = True
    resources = Resources(num_cpus=0.1)
    output_schema = SCHEMA

    def process_row(self, row):
        return [{**row, "part": k} for k in range(6)]


class Same(Split):
    name = "same"
    fans_out = False

    def process_row(self, row):
        return [row]


def test_a_split_gives_each_row_a_block_and_other_stages_keep_theirs(ray_local, tmp_path):
    import ray.data

    rows = pa.table({"video_id": ["film"], "part": [0]}, schema=SCHEMA)
    split = apply(ray.data.from_arrow(rows), Split(Config(), str(tmp_path), str(tmp_path))).materialize()
    assert split.count() == 6 and split.num_blocks() == 6
    same = apply(ray.data.from_arrow(pa.concat_tables([rows] * 3)), Same(Config(), str(tmp_path), str(tmp_path)))
    assert same.materialize().num_blocks() == 1
