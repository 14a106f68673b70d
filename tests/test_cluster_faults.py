"""Faults and load with a real head (make test-slow): `raydub submit` to a loopback head with the catalog,
the config and OUT on S3 (a moto server on 127.0.0.1); a pool worker killed mid-job; the driver killed
mid-job and the catalog submitted again to the same OUT.

One head (tests/conftest.py `ray_head`) and one S3 server for the module, each test with its own OUT.
The media is tiny (two 2 s videos, two languages) and the catalog brings its own subtitles: what is
tested is the infrastructure, not the models.
"""
import io
import json
import os
import signal
import time

import pytest

from catalogs import dummies
from operators import manifest
from operators.config import STAGES
from operators.schema import OK
from pipelines.submit import follow, submit, submit_job
from tests.conftest import S3_PORT, moto_server, ray_head
from tests.outage import Outage

pytest.importorskip("s3fs")
pytest.importorskip("moto")
pytestmark = pytest.mark.slow

BUCKET = "raydub-cluster"
VIDEOS = {"a": "The house is red.", "b": "Good morning, my friend."}
LANGS = ("es", "ca")
PAIRS = sorted((v, lang) for v in VIDEOS for lang in LANGS)
PROOF = (f"exactly once: the catalog has {len(PAIRS)} (video, language) pairs, the manifest {len(PAIRS)} rows: "
         f"{len(PAIRS)} of the catalog's, 0 of earlier catalogs; 0 missing, 0 doubled")
JOB_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A moto S3 server, reached on the endpoint the session's environment names (S3_PORT): the head and
    its jobs inherit that environment."""
    import s3fs

    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as moto_port:
        forward = Outage(S3_PORT, moto_port)       # never taken down here: a plain forwarder onto S3_PORT
        fs = s3fs.S3FileSystem()
        fs.mkdir(BUCKET)
        yield fs
        forward.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, store):
    with ray_head(tmp_path_factory.mktemp("head") / "head.log") as (address, _env):
        yield address


@pytest.fixture(scope="module")
def catalog(store, tmp_path_factory) -> str:
    """s3://BUCKET/jobs/catalog.jsonl: two 2 s talking-head videos with English subtitles, into es and ca."""
    media = tmp_path_factory.mktemp("media")
    rows = []
    for video_id, line in VIDEOS.items():
        speech = str(media / f"{video_id}.wav")
        cues = dummies.speech_track([(0.3, line)], 2.0, speech)
        dummies.still_video(dummies.portrait(), str(media / f"{video_id}.mp4"), 2.0, audio_wav=speech)
        dummies.write_subtitles(cues, str(media / f"{video_id}.en.srt"))
        for name in (f"{video_id}.mp4", f"{video_id}.en.srt"):
            store.put_file(str(media / name), f"{BUCKET}/jobs/media/{name}")
        rows.append({"video_id": video_id, "uri": f"media/{video_id}.mp4", "source_lang": "en",
                     "source_subtitles_uri": f"media/{video_id}.en.srt", "target_langs": list(LANGS)})
    store.pipe_file(f"{BUCKET}/jobs/catalog.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    return f"s3://{BUCKET}/jobs/catalog.jsonl"


def _config(store, name: str, **run) -> str:
    """A job config on S3 (the job reads it there): every stage on a fifth of a CPU so that all pools fit
    the 2-CPU head at once; no lips, back-transcription or voice similarity (models the test is not about)."""
    lines = ['[run]', 'ray_address = "auto"', "log_every_s = 10"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in run.items()]
    lines += ["[lips]", "enabled = false", "[score]", "back_transcribe = false", "speaker_similarity = false"]
    lines += [f"[resources.{stage}]\nnum_cpus = 0.2" for stage in STAGES]
    store.pipe_file(f"{BUCKET}/configs/{name}.toml", ("\n".join(lines) + "\n").encode())
    return f"s3://{BUCKET}/configs/{name}.toml"


def _assert_exactly_once_and_ok(store, out: str) -> list[dict]:
    rows = manifest.read_manifest(out)
    assert [(r["video_id"], r["lang"], r["status"], r["error"]) for r in rows] == [
        (v, lang, OK, None) for lang, v in sorted((lang, v) for v, lang in PAIRS)]
    store.invalidate_cache()
    for r in rows:
        for column in manifest.OUTPUT_COLUMNS:
            assert store.exists(r[column]), (r["video_id"], r["lang"], column, r[column])
    # every part holds each of its keys once: compaction left one row per (video, language) in the files
    import pyarrow.dataset as ds

    files = store.glob(f"{out[len('s3://'):]}/manifest/lang=*/*.parquet")
    keys = ds.dataset(files, filesystem=store, format="parquet", partitioning="hive").to_table(
        columns=["video_id"]).num_rows
    assert keys == len(PAIRS)
    return rows


def _wait_for(what: str, found, job: tuple[str, str] | None = None, timeout_s: float = JOB_TIMEOUT_S,
              every_s: float = 0.5):
    """found()'s first true value; a failure if `job` (address, id) ends first: the moment was missed."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(job[0]) if job else None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := found():
            return value
        if client and (info := client.get_job_info(job[1])).status.is_terminal():
            pytest.fail(f"job {job[1]} ended ({info.status}) before {what}: " + client.get_job_logs(job[1])[-3000:])
        time.sleep(every_s)
    pytest.fail(f"timed out waiting for {what}")


def test_submit_dubs_an_s3_catalog_on_a_real_head(cluster, store, catalog):
    out = f"s3://{BUCKET}/out-submit"
    config = _config(store, "submit")
    printed = io.StringIO()

    code = submit(catalog, out, config_path=config, address=cluster, stream=printed)

    log = printed.getvalue()
    assert code == 0, log[-4000:]
    first = log.splitlines()[0]
    assert first.startswith("raydub job raydub_") and first.endswith(
        f" submitted to {cluster}: python -m pipelines.localize --catalog {catalog} --out {out} --config {config}")
    assert PROOF in log                                   # the driver's proof, streamed from the job log
    assert log.rstrip().endswith("SUCCEEDED (exit status 0)")
    _assert_exactly_once_and_ok(store, out)


def test_a_pool_worker_killed_mid_row_is_restarted_and_its_rows_end_ok(cluster, store, catalog):
    from ray.util.state import list_actors, list_tasks

    out = f"s3://{BUCKET}/out-worker"
    job_id = submit_job(catalog, out, config_path=_config(store, "worker"), address=cluster)

    def synthesizing():
        # A Synthesize actor in the middle of a batch: its rows are lost with it and must be tried again.
        tasks = list_tasks(address=cluster, filters=[("state", "=", "RUNNING")], detail=True,
                           raise_on_missing_output=False)
        return next((t for t in tasks if t.type == "ACTOR_TASK" and "MapBatches(Synthesize)" in (t.name or "")
                     and t.worker_pid), None)

    task = _wait_for("a Synthesize actor at work", synthesizing, (cluster, job_id), every_s=0.2)
    os.kill(int(task.worker_pid), signal.SIGKILL)
    printed = io.StringIO()

    code = follow(job_id, cluster, printed)

    log = printed.getvalue()
    assert code == 0, log[-4000:]
    assert PROOF in log
    [actor] = list_actors(address=cluster, filters=[("actor_id", "=", task.actor_id)], detail=True)
    assert actor.num_restarts >= 1 and actor.pid != int(task.worker_pid), actor
    attempts = list_tasks(address=cluster, filters=[("task_id", "=", task.task_id)], detail=True)
    assert sorted((a.attempt_number, a.state) for a in attempts)[-1][1] == "FINISHED", attempts
    # The state API lags: a batch listed as running may have just finished when the kill lands (attempt 0
    # FINISHED was seen once under load); the rows it held are then done, and the ones it was given next
    # go to the restarted actor. Either way every row ends ok, once.
    _assert_exactly_once_and_ok(store, out)
    print(f"killed {task.name} (pid {task.worker_pid}, attempt {task.attempt_number}); the actor restarted "
          f"{actor.num_restarts} time(s), the batch ran {max(a.attempt_number for a in attempts) + 1} time(s)")


def test_a_killed_driver_submitted_again_goes_on_and_ends_exactly_once(cluster, store, catalog):
    from ray.job_submission import JobSubmissionClient

    out = f"s3://{BUCKET}/out-driver"
    root = out[len("s3://"):]
    # Results stay in their markers until the job ends (no batch fills, no flush falls due): the driver is
    # killed with finished results that only the next job can commit.
    config = _config(store, "driver", manifest_batch_rows=100, manifest_flush_s=3600.0)
    client = JobSubmissionClient(cluster)
    first = submit_job(catalog, out, config_path=config, address=cluster)

    def markers() -> list[str]:
        store.invalidate_cache()
        return store.glob(f"{root}/_work/_results/*/*.parquet")

    _wait_for("a finished result's marker", markers, (cluster, first), every_s=0.25)
    driver_pid = int(client.get_job_info(first).driver_info.pid)
    os.kill(driver_pid, signal.SIGKILL)          # outright: no handler runs, the lock stays behind
    info = _wait_for("the killed job to end", lambda: (i := client.get_job_info(first)).status.is_terminal() and i)
    assert info.status == "FAILED", info

    store.invalidate_cache()
    lock = json.loads(store.cat(f"{root}/_lock.json"))
    assert lock["pid"] == driver_pid                      # the dead driver's lock, heartbeat still fresh
    left = {(p.rsplit("/", 2)[-2], p.rsplit("/", 1)[-1].removesuffix(".parquet")) for p in markers()}
    assert left and not store.glob(f"{root}/manifest/lang=*/*.parquet")
    printed = io.StringIO()
    started = time.monotonic()

    code = submit(catalog, out, config_path=config, address=cluster, stream=printed)

    log = printed.getvalue()
    assert code == 0, log[-4000:]
    assert "is in use by another raydub job" not in log
    assert f"committed {len(left)} result(s) that an earlier job finished but did not commit" in log
    assert f"resume plan: {len(left)} of {len(PAIRS)} results kept, {len(PAIRS) - len(left)} to make" in log
    assert PROOF in log
    rows = _assert_exactly_once_and_ok(store, out)
    store.invalidate_cache()
    assert not markers() and not store.exists(f"{root}/_lock.json")
    print(f"resubmitted job: {time.monotonic() - started:.0f} s; {len(left)} result(s) recovered from markers: "
          f"{sorted(left)}; rows {[(r['video_id'], r['lang']) for r in rows]}")
