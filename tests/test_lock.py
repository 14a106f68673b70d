"""One job per OUT (operators/lock.py): a second job is refused with a clear message, a dead job's lock is taken over."""
import json
import threading

import pytest

from operators.lock import LOCK_NAME, OutInUse, OutLock


def test_a_second_job_on_the_same_out_is_refused_until_the_first_ends(tmp_path):
    out = str(tmp_path / "out")
    with OutLock(out):
        held = json.loads((tmp_path / "out" / LOCK_NAME).read_text())
        with pytest.raises(OutInUse) as e:
            OutLock(out).acquire()
        message = str(e.value)
        assert f"is in use by another raydub job (host {held['host']}, pid {held['pid']}" in message
        assert "give this job another --out" in message
        OutLock(str(tmp_path / "other")).acquire()                # another OUT is free
    assert not (tmp_path / "out" / LOCK_NAME).exists()
    with OutLock(out):                                              # free again
        pass


def test_a_dead_jobs_lock_is_taken_over_once_stale(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"owner": "dead", "host": "h", "pid": 1, "started": "2026-01-01T00:00:00+00:00",
                                             "heartbeat": "2026-01-01T00:00:00+00:00"}))
    with OutLock(str(out)) as lock:
        assert json.loads((out / LOCK_NAME).read_text())["owner"] == lock.record["owner"]


def test_the_lock_of_a_killed_job_on_this_machine_is_taken_over_at_once(tmp_path):
    import socket
    import subprocess
    import sys

    from operators.lock import _now

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    out.mkdir()
    record = {"owner": "killed", "host": socket.gethostname(), "pid": dead.pid, "started": _now(), "heartbeat": _now()}
    (out / LOCK_NAME).write_text(json.dumps(record))
    with OutLock(str(out)) as lock:                                  # fresh heartbeat, but its process is gone
        assert json.loads((out / LOCK_NAME).read_text())["owner"] == lock.record["owner"]
    (out / LOCK_NAME).write_text(json.dumps({**record, "host": "another-machine"}))
    with pytest.raises(OutInUse):                                    # elsewhere: only a stale heartbeat tells
        OutLock(str(out)).acquire()


def test_the_heartbeat_keeps_a_long_job_fresh(tmp_path):
    out = str(tmp_path / "out")
    with OutLock(out, heartbeat_s=0.1, stale_after_s=0.5):
        first = json.loads((tmp_path / "out" / LOCK_NAME).read_text())["heartbeat"]
        threading.Event().wait(1.5)
        with pytest.raises(OutInUse):                               # older than stale_after_s but beating
            OutLock(out, stale_after_s=0.5).acquire()
        assert json.loads((tmp_path / "out" / LOCK_NAME).read_text())["heartbeat"] >= first


def test_of_two_jobs_that_start_together_exactly_one_runs(tmp_path):
    out = str(tmp_path / "out")
    outcomes, barrier = [], threading.Barrier(2)

    def job():
        lock = OutLock(out, settle_s=2.0)    # longer than a check-to-write gap on a loaded machine
        barrier.wait()
        try:
            lock.acquire()
            outcomes.append("ran")
        except OutInUse:
            outcomes.append("refused")

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ran", "refused"]
