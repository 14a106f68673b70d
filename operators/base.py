"""The operator contract: cheap constructor, setup() per actor, one row at a time.

An operator is a callable class for `Dataset.map_batches(batch_format="pyarrow")`.
It is constructed on the driver (so bad settings and missing dependencies
fail before any cluster work), shipped to its actors or tasks, and calls
`setup()` once there before the first batch. `process_row` handles one row;
an exception in it marks that row failed and keeps it, and a row that is
already failed or skipped passes every later operator untouched.
"""
from __future__ import annotations

import logging
import resource
import shutil
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import pyarrow as pa

from operators import uri as uris
from operators.config import Config, ResourcesOverride
from operators.schema import FAILED, SKIPPED, conform

log = logging.getLogger("raydub")


@dataclass(frozen=True)
class Resources:
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int = 1
    pool: tuple[int, int] | None = None   # actor pool (min, max); None = tasks
    # Peak memory of one task or actor, measured (bench/scale.py) with headroom: a shard's work is
    # bounded by the shard's length, so this does not grow with the video.
    memory_gb: float = 1.0

    def with_(self, override: ResourcesOverride | None) -> "Resources":
        if override is None:
            return self
        changes = {k: v for k, v in override.model_dump().items() if v is not None}
        if changes.get("pool") == (0, 0):
            changes["pool"] = None
        return replace(self, **changes)


class SkipRow(Exception):
    """Raised by `process_row` when a row cannot be dubbed for a reason that is not an error."""


class RowError(RuntimeError):
    """An expected per-row failure (bad media, no route): logged in one line, no traceback.

    Any other exception also fails only its row, but is logged with its
    traceback, since it is more likely a bug.
    """


class MissingDependency(RuntimeError):
    pass


def require_binary(name: str, apt_package: str) -> None:
    if shutil.which(name) is None:
        raise MissingDependency(f"{name} not found on PATH: install it with `apt-get install {apt_package}`")


def require_module(module: str, pip_line: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependency(f"Python module {module!r} not found: install it with `pip install {pip_line}`")


class Operator:
    name: ClassVar[str]
    output_schema: ClassVar[pa.Schema]
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    resources: Resources = Resources()
    # A split (one row in, several out: shards, languages): the pipeline puts each row it returns
    # in a block of its own, so the rows after it run side by side, not one after another in a task.
    fans_out: ClassVar[bool] = False

    def __init__(self, config: Config, work_dir: str, out_dir: str, backend: Any = None):
        self.config = config
        self.work_dir = work_dir
        self.out_dir = out_dir
        self.backend = backend
        self.resources = type(self).resources.with_(config.resources.get(self.name))
        self._ready = False
        self.check_dependencies()

    def check_dependencies(self) -> None:
        """Cheap checks on the driver: binaries and modules the stage needs."""

    def setup(self) -> None:
        """Once per actor (or task): load models here, never in the constructor."""

    def process_row(self, row: dict) -> dict | list[dict]:
        raise NotImplementedError

    def __call__(self, batch: pa.Table) -> pa.Table:
        if not self._ready:
            self.setup()
            self._ready = True
        out: list[dict] = []
        for row in batch.to_pylist():
            if row.get("status") in (FAILED, SKIPPED):
                out.append(row)
                continue
            watch = Stopwatch()
            try:
                result = self.process_row(dict(row))
            except SkipRow as e:
                result = {**row, "status": SKIPPED, "error_stage": self.name, "error": uris.redact_text(str(e))}
            except Exception as e:  # noqa: BLE001 - failures are data: the row is kept with the reason
                # Redacted before it is logged or kept: a library's message may quote a presigned URL.
                error = uris.redact_text(f"{type(e).__name__}: {e}")
                if isinstance(e, (RowError, FileNotFoundError)):
                    log.warning("%s failed on %s: %s", self.name, row.get("video_id"), error)
                else:
                    log.warning("%s failed on %s: %s\n%s", self.name, row.get("video_id"), error,
                                uris.redact_text(traceback.format_exc(limit=4)))
                result = {**row, "status": FAILED, "error_stage": self.name, "error": error}
            timing = watch.timing(self.name)
            for r in result if isinstance(result, list) else [result]:
                r["timings"] = list(r.get("timings") or []) + [timing]
                out.append(r)
        return conform(out, self.output_schema)


def _cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Stopwatch:
    """Wall and CPU seconds of one piece of work, for a row's `timings`.

    CPU is the process's (all its threads: decoders and encoders thread) plus
    the child processes it waited for (ffmpeg). A Ray worker runs one task at
    a time, so that is the stage's own work, whatever else shares the cores;
    the wall time also counts the waiting for them.
    """

    def __init__(self) -> None:
        self.wall_started, self.cpu_started = time.perf_counter(), _cpu_s()

    def timing(self, stage: str) -> dict:
        return {"stage": stage, "wall_s": time.perf_counter() - self.wall_started,
                "cpu_s": _cpu_s() - self.cpu_started}


def summed_timings(timings: list[dict]) -> list[dict]:
    """Stage times summed over the shards (the work done; the shards ran side by side), in first-seen order."""
    total: dict[str, dict] = {}
    for t in timings:
        entry = total.setdefault(t["stage"], {"stage": t["stage"], "wall_s": 0.0, "cpu_s": 0.0})
        entry["wall_s"] += t["wall_s"]
        entry["cpu_s"] += t.get("cpu_s") or 0.0
    return list(total.values())


def add_model(row: dict, stage: str, info) -> None:
    """Record which model produced this row's result (ModelInfo from a backend)."""
    models = list(row.get("models") or [])
    entry = {"stage": stage, "name": info.name, "version": info.version,
             "license": info.license, "source": info.source}
    if entry not in models:
        models.append(entry)
    row["models"] = models
