"""Catalog in, dubbed videos and a manifest out: which operators, in what order, on what resources.

    python -m pipelines.localize --catalog CATALOG --langs es,de --out OUT [--config FILE]

is the same as `raydub run ...`. Composition only: the media logic lives in operators/.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from operators import checkpoint, manifest, review
from operators import uri as uris
from operators.base import Operator, Resources
from operators.catalog import load_catalog
from operators.config import Config, ConfigError
from operators.expand import ExpandLanguages
from operators.fit_duration import FitDuration
from operators.lip_model import FitLipModel
from operators.lock import OutLock
from operators.merge_shards import MergeShards
from operators.mix import Mix
from operators.mux import Mux
from operators.plan_shards import PlanShards
from operators.probe import ProbeMedia
from operators.plan_lips import PlanLips
from operators.render import RenderLips
from operators.save_shard import SaveShard
from operators.schema import FAILED, MANIFEST_VERSION, OK, SKIPPED, VIDEO, conform, result_id
from operators.score import Score
from operators.shots import DetectShots
from operators.split_render import SplitRender
from operators.split_shards import SplitShards
from operators.stitch import Stitch
from operators.synthesize import Synthesize
from operators.sync import ScoreSync
from operators.track_faces import TrackFaces
from operators.transcribe import Transcribe
from operators.translate import Translate

log = logging.getLogger("raydub")
progress_log = logging.getLogger("raydub.progress")

# The phases, each one Ray Data pass whose rows are checkpointed in the work dir (operators/checkpoint.py):
# a killed job resumes from the last finished phase, and inside it from the finished shards.
PLAN = (ProbeMedia, DetectShots, PlanShards)                       # per video
ANALYZE_SHARDS = (SplitShards, Transcribe, TrackFaces, SaveShard)  # per shard
MERGE = (MergeShards, FitLipModel)                                 # per video
# Per (video, language); the picture per (shard, language), stitched per (video, language).
LOCALIZE = (Translate, Synthesize, FitDuration, Mix, PlanLips, SplitRender, RenderLips, Stitch, Mux, Score, ScoreSync)
# Language-independent: done once per video, whatever the number of languages.
ANALYZE = PLAN + ANALYZE_SHARDS + MERGE


MAX_FAILURES_SHOWN = 50


@dataclass
class Summary:
    """What a run did, in counts: the rows themselves are in the manifest."""
    out_dir: str
    manifest_uri: str
    pairs: set[tuple[str, str]]                                   # the catalog's (video, language)
    resumed: int
    wall_s: float
    counts: dict[str, Counter] = field(default_factory=dict)       # per language: ok, failed, skipped
    phase_s: dict[str, float] = field(default_factory=dict)     # wall time of each phase of this run
    failures: list[dict] = field(default_factory=list)           # the first MAX_FAILURES_SHOWN not ok, in brief

    @property
    def results(self) -> list[dict]:
        """The catalog's rows, read back from the manifest (all of it: for small runs and tests)."""
        return [r for r in manifest.read_manifest(self.out_dir) if (r["video_id"], r["lang"]) in self.pairs]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.results if r["status"] != OK]

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())


def build_operators(config: Config, work_dir: str, out_dir: str,
                    backends: dict[str, object] | None = None) -> dict[str, list[Operator]]:
    """Every phase's operators, constructed on the driver: a missing tool or bad setting fails here,
    before Ray starts."""
    backends = backends or {}

    def built(classes) -> list[Operator]:
        return [cls(config, work_dir, out_dir, backend=backends.get(cls.name)) for cls in classes]

    return {"plan": built(PLAN), "analyze": built(ANALYZE_SHARDS),
            "localize": built((*MERGE, ExpandLanguages, *LOCALIZE))}


class _OnActor:
    """Ray Data's callable class for a pool: the operator arrives built, `setup()` runs on the actor."""

    def __init__(self, op: Operator):
        self.op = op
        op.setup()
        op._ready = True

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.op(batch)


def apply(ds, op: Operator):
    import ray.data

    r = op.resources
    if getattr(op, "group_by", None):
        # A merge: the rows of one key arrive as one table (an all-to-all step: every row of the
        # pass reaches it before the first group leaves).
        def merged(group: pa.Table) -> pa.Table:
            return op(group)

        merged.__name__ = type(op).__name__
        return ds.groupby(list(op.group_by)).map_groups(merged, batch_format="pyarrow", num_cpus=r.num_cpus,
                                                        memory=int(r.memory_gb * 2**30))
    common = dict(batch_format="pyarrow", batch_size=r.batch_size, num_cpus=r.num_cpus,
                  memory=int(r.memory_gb * 2**30))
    # Bounded: Ray Data's own defaults restart a dead actor and retry its task forever. Ray 2.60 takes
    # these only as extra remote args (**ray_remote_args), which it marks deprecated (to go in 2.64) with
    # no named replacement yet: the pin on ray holds them, and the warning is silenced here alone.
    retries = op.config.run
    common.update({"max_restarts": retries.max_restarts, "max_task_retries": retries.max_task_retries} if r.pool
                  else {"max_retries": retries.max_task_retries})
    if r.num_gpus:
        common["num_gpus"] = r.num_gpus
    if r.pool:
        # Named after the operator, so Ray's logs, dashboard and memory warnings say which stage it is.
        actor = type(type(op).__name__, (_OnActor,), {"__module__": __name__})
        with _remote_args_allowed():
            ds = ds.map_batches(actor, fn_constructor_kwargs={"op": op},
                                compute=ray.data.ActorPoolStrategy(min_size=r.pool[0], max_size=r.pool[1]),
                                **common)
    else:
        with _remote_args_allowed():
            ds = ds.map_batches(op, **common)
    if op.fans_out:
        # The rows of a split come back as one block, and a block is one task for each stage after
        # it: a film's shards would be tracked, and its languages dubbed, one after another.
        ds = ds.repartition(target_num_rows_per_block=1)
    return ds


@contextlib.contextmanager
def _remote_args_allowed():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        yield


def pass_needs(ops: list[Operator]) -> dict[str, float]:
    """What one pass must have to start and go on: every pool's minimum actors at once, and room beside them
    for the largest task of its task stages (Ray Data waits, without end, for a pool minimum it cannot place)."""
    pools = [op.resources for op in ops if op.resources.pool]
    tasks = [op.resources for op in ops if not op.resources.pool] or [Resources(num_cpus=0, memory_gb=0)]

    def need(field) -> float:
        return sum(r.pool[0] * field(r) for r in pools) + max(field(r) for r in tasks)

    return {"CPU": need(lambda r: r.num_cpus), "GPU": need(lambda r: r.num_gpus),
            "memory": need(lambda r: r.memory_gb * 2**30)}


_FIELD = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory_gb"}


def _amount(kind: str, x: float) -> str:
    return f"{x / 2**30:.1f} GiB" if kind == "memory" else f"{x:g}"


def check_pools_fit(ops: dict[str, list[Operator]], config: Config) -> None:
    """Fail now, naming the stages to change, where a pass could never start on this cluster (it would hang)."""
    import ray

    have = dict(config.run.reachable_resources or ray.cluster_resources())
    for phase, phase_ops in ops.items():
        for kind, needed in pass_needs(phase_ops).items():
            if needed <= have.get(kind, 0.0) + 1e-9:
                continue
            field = _FIELD[kind]
            scale = 2**30 if kind == "memory" else 1
            pools = [f"{op.name} {op.resources.pool[0]} x {_amount(kind, getattr(op.resources, field) * scale)}"
                     for op in phase_ops if op.resources.pool and getattr(op.resources, field)]
            raise ConfigError(
                f"the {phase} pass needs {_amount(kind, needed)} {kind} to start (pool minimums: "
                f"{', '.join(pools) or 'none'}; plus its largest task) but the cluster has "
                f"{_amount(kind, have.get(kind, 0.0))}: lower those stages' resources.<stage>.pool minimum or "
                f"{field}, add nodes, or, for an autoscaling cluster, set run.reachable_resources to what it "
                f"can grow to")


def start_ray(config: Config) -> bool:
    """Join the configured cluster, or start an embedded local Ray. True if this call started it."""
    if not config.run.ray_address and "ray" not in sys.modules:
        # An embedded Ray is one node: bind it to loopback (Ray reads this on import).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if config.run.ray_address:
        ray.init(address=config.run.ray_address, log_to_driver=True)
    else:
        # Logical CPUs, not cores: every stage holds at least one actor, and a small
        # machine must still fit them all at once rather than wait forever for a slot.
        num_cpus = config.run.num_cpus or max(2 * (os.cpu_count() or 1), 8)
        # address="local": start our own, even where `ray start` runs a cluster on this machine
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=True)
    return True


def run(catalog_uri: str, out_dir: str, langs: list[str] | None = None, config: Config | None = None,
        backends: dict[str, object] | None = None,
        on_result: Callable[[dict, int, int], None] | None = None,
        on_shard: Callable[[dict, int, int], None] | None = None) -> Summary:
    """Dub every (video, language) of the catalog into out_dir; returns the summary.

    Catalog and config problems raise before any Ray work. Per-video problems
    become failed or skipped rows. `backends` injects backend objects by stage name.
    `on_result(row, done, total)` hears of each result, `on_shard(row, done, total)` of
    each analysed shard (done so far; total None: the plans are read by the workers).
    """
    started = time.perf_counter()
    config = config or Config()
    catalog = load_catalog(catalog_uri, default_langs=langs)
    out_dir = uris.absolute(out_dir)
    work_dir = uris.absolute(config.run.work_dir or uris.join(out_dir, "_work"))
    # A missing tool or a bad setting fails here, before OUT is touched.
    ops = build_operators(config, work_dir, out_dir, backends)
    # One job per OUT: a second one is refused here, before it reads or writes anything.
    stale_s = config.run.lock_stale_after_s
    with OutLock(out_dir, stale_after_s=stale_s, heartbeat_s=min(30.0, stale_s / 10)):
        return _run_holding_out(catalog, out_dir, work_dir, config, ops, on_result, on_shard, started)


def _run_holding_out(catalog, out_dir: str, work_dir: str, config: Config, ops: dict[str, list[Operator]],
                     on_result, on_shard, started: float) -> Summary:
    """`run`, once this job holds OUT. The driver keeps keys and counts; rows go to the manifest as they finish."""
    writer = manifest.ManifestWriter(out_dir, work_dir, checkpoint.review_print(config),
                                     config.run.manifest_batch_rows, config.run.manifest_flush_s)
    # Results that a killed job finished but never committed go into the manifest first.
    recovered = writer.recover()
    if recovered:
        progress_log.info("committed %d result(s) that an earlier job finished but did not commit", recovered)
    catalog_rows = catalog.to_pylist()
    prints = {(row["video_id"], lang): checkpoint.result_print(row, lang, config)
              for row in catalog_rows for lang in row["target_langs"]}
    t0 = time.perf_counter()
    done, was_ok = _plan_resume(out_dir, prints, config)
    todo = []
    for row in catalog_rows:
        left = [lang for lang in row["target_langs"] if (row["video_id"], lang) not in done]
        if left:
            todo.append({**row, "target_langs": left})
    total = sum(len(r["target_langs"]) for r in todo)
    progress_log.info("resume plan: %d of %d results kept, %d to make (%.1f s)", len(done), len(prints), total,
                      time.perf_counter() - t0)

    returned: set[tuple[str, str]] = set()
    phase_s: dict[str, float] = {}
    status = JobStatus(total=total, kept=len(done), videos=len(todo))
    counts: dict[str, Counter] = {}
    for vid, lang in done:
        counts.setdefault(lang, Counter())[OK] += 1
    failures: list[dict] = []

    def finished(row: dict) -> None:
        row["status"] = row["status"] or OK
        row["inputs_fingerprint"] = prints[row["video_id"], row["lang"]]
        row = review.apply(manifest.public(row), config)
        writer.add(row)
        returned.add((row["video_id"], row["lang"]))
        status.results[row["status"]] += 1
        counts.setdefault(row["lang"], Counter())[row["status"]] += 1
        if row["status"] != OK and len(failures) < MAX_FAILURES_SHOWN:
            failures.append({k: row.get(k) for k in ("video_id", "lang", "status", "error_stage", "error")})
        if on_result:
            on_result(row, len(returned), total)

    if todo:
        started_ray = start_ray(config)
        import ray.data

        try:
            check_pools_fit(ops, config)
        except ConfigError:
            if started_ray:
                ray.shutdown()
            raise
        # Only now that the job will run: a job refused at start leaves every earlier result as it was.
        mark_redoing(todo, was_ok, prints, writer, config)
        status.start(config.run.log_every_s)

        broken, phase = None, "plan"
        try:
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            ctx.verbose_stats_logs = False
            ctx.print_on_execution_start = False
            # A block whose task failed past its retries (its worker died) is dropped, not the whole
            # pass: each block is one row, and the pairs that do not come back become failed rows.
            ctx.max_errored_blocks = -1

            # PLAN: probe, shots, shard plan; videos planned by an earlier run with the same inputs are kept.
            t0 = time.perf_counter()
            planned = _kept_plans(todo, work_dir, config)
            to_plan = [r for r in todo if r["video_id"] not in planned]
            expand = ops["localize"][len(MERGE)]
            status.phase, status.planned = "plan", len(planned)
            for row in _passed(to_plan, catalog.schema, ops["plan"]):
                status.planned += 1
                if row["status"] in (FAILED, "skipped"):
                    # Failed before analysis: each of its languages gets the reason now.
                    for result in expand(conform([row], VIDEO)).to_pylist():
                        finished(result)
                else:
                    planned.add(row["video_id"])
            ready = [r for r in todo if r["video_id"] in planned]
            phase_s["plan"] = time.perf_counter() - t0

            # ANALYZE: one row per shard still to analyse, spread over every worker.
            t0, phase = time.perf_counter(), "analyze"
            status.phase, shards_done = phase, 0
            for shard in _passed(ready, catalog.schema, ops["analyze"]):
                shards_done = status.shards = shards_done + 1
                if on_shard:
                    on_shard(shard, shards_done, None)
            phase_s["analyze"] = time.perf_counter() - t0

            # MERGE per video, then LOCALIZE per (video, language).
            t0, phase = time.perf_counter(), "localize"
            status.phase = phase
            for row in _passed(ready, catalog.schema, ops["localize"]):
                finished(row)
            phase_s["localize"] = time.perf_counter() - t0
        except BaseException as e:
            if not isinstance(e, Exception):
                status.stop(f"stopped ({type(e).__name__})")       # SIGTERM (ray job stop), Ctrl-C
                raise
            # Ray ended a pass (a lost head, an error past every retry): every result that finished is
            # already in its marker or a part and stays; the rest become failed rows with this reason.
            broken = (f"the {phase} pass ended before this result: {type(e).__name__}: "
                      f"{uris.redact_text(str(e))[:300]}; re-run to retry")
            log.error("%s", broken)
        finally:
            if not status._stop.is_set():
                status.stop()
            if started_ray:
                ray.shutdown()
        for row in _not_returned(todo, returned, prints, config, broken):
            finished(row)

    writer.flush()
    # Earlier rows of results made again leave their parts; parts reviewed with other thresholds are
    # assessed again (kept results included: thresholds may have changed since they were made).
    compacted = manifest.compact(out_dir, checkpoint.review_print(config), lambda r: review.apply(r, config),
                                 run_id=writer.run_id)
    progress_log.info("manifest: %d part(s), %d rewritten, %d replaced row(s) dropped, %d small part(s) merged",
                      compacted["parts"], compacted["rewritten"], compacted["dropped"], compacted["merged"])
    prove_exactly_once(out_dir, prints)
    return Summary(out_dir=out_dir, manifest_uri=uris.join(out_dir, "manifest"), pairs=set(prints),
                   resumed=len(done), wall_s=time.perf_counter() - started, counts=counts, phase_s=phase_s,
                   failures=failures)


def _plan_resume(out_dir: str, prints: dict[tuple[str, str], str],
                 config: Config) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(pairs done: ok, same fingerprint, outputs there; pairs ok in the manifest), from the key columns of
    the manifest's parts only."""
    index = manifest.plan_index(out_dir)
    if not index.num_rows:
        return set(), set()
    vids, langs = zip(*prints) if prints else ((), ())
    ours = pa.table({"video_id": pa.array(vids, pa.string()), "lang": pa.array(langs, pa.string()),
                     "print": pa.array(list(prints.values()), pa.string())})
    ok = index.filter(pc.equal(index.column("status"), OK)).join(ours, keys=["video_id", "lang"], join_type="inner")
    was_ok = set(zip(ok.column("video_id").to_pylist(), ok.column("lang").to_pylist()))
    if not config.run.resume:
        return set(), was_ok
    same = ok.filter(pc.equal(ok.column("inputs_fingerprint"), ok.column("print")))
    return manifest.done_keys(same.drop_columns(["print"]), out_dir), was_ok


def prove_exactly_once(out_dir: str, pairs: dict[tuple[str, str], str]) -> None:
    """Read the written manifest's keys back: one row per (video, language) of the catalog, or an error.

    The proof, in counts, goes to the job log; a manifest that fails it raises.
    """
    import pyarrow.dataset as ds

    fs, root = uris.filesystem(uris.join(out_dir, "manifest"))
    table = ds.dataset(root, filesystem=fs, format="parquet", partitioning="hive").to_table(
        columns=["video_id", "lang"])
    rows = Counter(zip(table.column("video_id").to_pylist(), map(str, table.column("lang").to_pylist())))
    missing = [p for p in pairs if rows[p] == 0]
    doubled = [p for p, n in rows.items() if n > 1]
    others = sum(1 for p in rows if p not in pairs)
    proof = (f"exactly once: the catalog has {len(pairs)} (video, language) pairs, the manifest "
             f"{table.num_rows} rows: {len(pairs) - len(missing)} of the catalog's, {others} of earlier catalogs; "
             f"{len(missing)} missing, {len(doubled)} doubled")
    if missing or doubled:
        raise RuntimeError(f"{proof}: {(missing + doubled)[:5]}")
    progress_log.info("%s", proof)


@dataclass
class JobStatus:
    """Counts the driver keeps as the job runs, logged every run.log_every_s to the job log ("raydub.progress")."""
    total: int                          # (video, language) pairs this run does
    kept: int                           # pairs kept from earlier runs
    videos: int
    phase: str = "plan"
    planned: int = 0
    shards: int = 0
    results: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)
    _stop: threading.Event = field(default_factory=threading.Event)

    def line(self) -> str:
        done = sum(self.results.values())
        return (f"{self.phase}: {self.planned}/{self.videos} videos planned, {self.shards} shards analysed, "
                f"{done}/{self.total} results ({self.results[OK]} ok, {self.results[FAILED]} failed, "
                f"{self.results[SKIPPED]} skipped), {self.kept} kept from earlier runs, "
                f"{time.perf_counter() - self.started:.0f} s")

    def start(self, every_s: float) -> None:
        if every_s > 0:
            threading.Thread(target=self._log, args=(every_s,), name="raydub-status", daemon=True).start()

    def _log(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            progress_log.info("%s", self.line())

    def stop(self, how: str = "done") -> None:
        self._stop.set()
        progress_log.info("%s", self.line().replace(f"{self.phase}:", f"{how}:", 1))


REDOING = "this result was being made again by a job that stopped before it finished (its outputs may be " \
          "half replaced); re-run to make it"


def mark_redoing(todo: list[dict], was_ok: set[tuple[str, str]], prints: dict[tuple[str, str], str],
                 writer: manifest.ManifestWriter, config: Config, batch: int = 10_000) -> None:
    """Before an ok result is made again, the manifest says so: a job killed half-way through it (a new dub
    track beside the old video) leaves a result that the next run redoes, never the old ok row."""
    marks = (review.apply(manifest.public(_failed_row(row, lang, prints, "pipeline", REDOING)), config)
             for row in todo for lang in row["target_langs"] if (row["video_id"], lang) in was_ok)
    while chunk := list(itertools.islice(marks, batch)):
        writer.commit(chunk)


def _failed_row(row: dict, lang: str, prints: dict[tuple[str, str], str], stage: str, error: str) -> dict:
    return {**row, "lang": lang, "result_id": result_id(row["video_id"], lang), "manifest_version": MANIFEST_VERSION,
            "inputs_fingerprint": prints[row["video_id"], lang], "status": FAILED, "error_stage": stage,
            "error": error}


def _kept_plans(todo: list[dict], work_dir: str, config: Config) -> set[str]:
    """Videos whose plan an earlier run left, read side by side (on S3, one request each)."""
    from concurrent.futures import ThreadPoolExecutor

    if not config.run.resume:
        return set()
    with ThreadPoolExecutor(max_workers=16) as pool:
        kept = pool.map(lambda r: checkpoint.kept_plan(work_dir, r, config) is not None, todo)
        return {r["video_id"] for r, k in zip(todo, kept) if k}


def _passed(rows: list[dict], schema, ops: list[Operator]):
    """The rows through `ops` as one Ray Data pass, streamed back one at a time."""
    import ray.data

    if not rows:
        return
    # One video per block: videos are processed in parallel, not as one big block.
    ds = ray.data.from_arrow([conform([r], schema) for r in rows])
    for op in ops:
        ds = apply(ds, op)
    for batch in ds.iter_batches(batch_size=1, batch_format="pyarrow", prefetch_batches=0):
        yield from batch.to_pylist()


def _not_returned(todo: list[dict], returned: set[tuple[str, str]], prints: dict[tuple[str, str], str],
                  config: Config, broken: str | None = None):
    """Every pair sent in comes out once: a pair the pipeline did not return becomes a failed row.

    Operators never drop rows, so this catches only infrastructure trouble,
    which would otherwise make a video silently vanish from the manifest.
    """
    for row in todo:
        for lang in row["target_langs"]:
            if (row["video_id"], lang) not in returned:
                log.error("%s -> %s did not come back from the pipeline", row["video_id"], lang)
                yield _failed_row(row, lang, prints, "pipeline", broken or (
                    "the result did not come back from the pipeline: a worker it ran on died more than "
                    f"run.max_task_retries ({config.run.max_task_retries}) times (out of memory? see the Ray "
                    "logs); re-run to retry"))


def main(argv: list[str] | None = None) -> int:
    from pipelines.cli import main as cli_main

    return cli_main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

