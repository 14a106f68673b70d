"""Phase checkpoints: a video's plan and each shard's analysis, kept as one-row Parquet files.

A killed job resumes from them: a video whose plan is kept is not probed or
cut into shots again, and a shard whose analysis is kept is not decoded,
transcribed or face-tracked again. Each checkpoint carries a fingerprint of
what it was made from (the catalog row's inputs and the settings of the
stages that made it); one whose fingerprint differs is stale and redone.

A checkpoint is written last, after the files it points to, and atomically
(uri.write_bytes stages and renames), so one that exists is whole. It holds
the catalog's URIs redacted, like the manifest; the readers put the live ones
back from the catalog row they were handed (LIVE_FIELDS).
"""
from __future__ import annotations

import hashlib
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from operators import manifest, paths
from operators import uri as uris
from operators.config import Config
from operators.schema import OK, SHARD_ROW, VIDEO, conform

FINGERPRINT_KEY = b"raydub.fingerprint"
# What a video's plan depends on: the catalog row's inputs and these config sections.
PLAN_INPUTS = ("video_id", "uri", "audio_track", "source_lang", "source_subtitles_uri", "audio_uri")
PLAN_SETTINGS = ("shots", "shards")
# A shard's analysis depends on its plan and on these.
SHARD_SETTINGS = ("asr", "faces")
# Catalog fields stored redacted in a checkpoint, taken from the live catalog row when it is read back.
LIVE_FIELDS = ("uri", "source_subtitles_uri", "translations", "target_langs", "catalog_row", "audio_uri",
               "replace_lines")


def fingerprint(row: dict, config: Config, settings: tuple[str, ...], base: str = "") -> str:
    # Of the redacted URIs: a presigned URL's signature changes with every signing, its object does not.
    public = manifest.public(row)
    data = {"base": base, "inputs": {k: public.get(k) for k in PLAN_INPUTS},
            "settings": {k: getattr(config, k).model_dump(mode="json") for k in settings},
            "sample_rate_hz": config.mix.sample_rate_hz}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


# A result also depends on its replaced lines and its language's subtitles, and on every setting but
# where and how it runs (`run`, `resources`) and how it is reviewed (`review`, applied again to kept rows).
RESULT_INPUTS = (*PLAN_INPUTS, "replace_lines")
RESULT_SETTINGS = tuple(k for k in Config.model_fields if k not in ("run", "resources", "review"))


def _hash(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]


_PRINTS: dict[tuple[int, tuple[str, ...]], tuple[Config, str]] = {}


def settings_print(config: Config, sections: tuple[str, ...] = RESULT_SETTINGS) -> str:
    """One hash of these settings sections, computed once per config (a catalog has many results; a config
    is frozen, and the cache holds it, so its id is not reused)."""
    key = (id(config), sections)
    if key not in _PRINTS:
        if len(_PRINTS) > 64:
            _PRINTS.clear()
        _PRINTS[key] = (config, _hash({k: getattr(config, k).model_dump(mode="json") for k in sections}))
    return _PRINTS[key][1]


def review_print(config: Config) -> str:
    """The review thresholds that results were assessed with (kept in each manifest part's footer)."""
    return settings_print(config, ("review",))


def result_print(row: dict, lang: str, config: Config) -> str:
    """The fingerprint of one (video, language) result: a kept result whose fingerprint differs is redone."""
    public = manifest.public(row)
    return _hash({"lang": lang, "inputs": {k: public.get(k) for k in RESULT_INPUTS},
                  "subtitles": [t for t in public.get("translations") or [] if t.get("lang") == lang],
                  "settings": settings_print(config)})


def plan_uri(work_dir: str, video_id: str) -> str:
    return paths.video_work(work_dir, video_id, "plan.parquet")


def shard_uri(work_dir: str, video_id: str, shard_index: int) -> str:
    return paths.shard_work(work_dir, video_id, shard_index, "analysis.parquet")


def write(uri: str, row: dict, schema: pa.Schema, print_: str) -> None:
    """The row as stored anywhere: catalog URIs redacted (a presigned URL's credentials never reach the
    work dir); whoever reads it back takes the live URIs from its catalog row."""
    table = conform([manifest.public(row)], schema)
    table = table.replace_schema_metadata({FINGERPRINT_KEY: print_.encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    uris.write_bytes(uri, buffer.getvalue())


def read(uri: str, print_: str | None = None) -> dict | None:
    """The checkpointed row, or None where there is none (or, given `print_`, a stale one)."""
    if not uris.exists(uri):
        return None
    table = pq.read_table(io.BytesIO(uris.read_bytes(uri)))
    if print_ is not None and (table.schema.metadata or {}).get(FINGERPRINT_KEY) != print_.encode():
        return None
    return table.to_pylist()[0]


def plan_print(row: dict, config: Config) -> str:
    return fingerprint(row, config, PLAN_SETTINGS)


def shard_print(row: dict, config: Config) -> str:
    return fingerprint(row, config, SHARD_SETTINGS, base=plan_print(row, config))


def kept_plan(work_dir: str, row: dict, config: Config) -> dict | None:
    """The video's plan from an earlier run, if it is ok and made from the same inputs and settings."""
    old = read(plan_uri(work_dir, row["video_id"]), plan_print(row, config))
    return old if old is not None and old["status"] in (None, OK) else None


def save_plan(work_dir: str, row: dict, config: Config) -> None:
    write(plan_uri(work_dir, row["video_id"]), row, VIDEO, plan_print(row, config))


def kept_shard(work_dir: str, row: dict, shard_index: int, config: Config) -> dict | None:
    """A shard's analysis from an earlier run (failed ones are not kept: a re-run retries them)."""
    old = read(shard_uri(work_dir, row["video_id"], shard_index), shard_print(row, config))
    return old if old is not None and old["status"] in (None, OK) else None


def save_shard(work_dir: str, row: dict) -> None:
    """`row` carries the fingerprint SplitShards made from the plan (its own source_lang may since be filled)."""
    write(shard_uri(work_dir, row["video_id"], row["shard_index"]), row, SHARD_ROW, row["shard_fingerprint"])
