"""One job per OUT: a lock file that a second job finds and is refused by.

    OUT/_lock.json   {"owner", "host", "pid", "started", "heartbeat"}

A job takes the lock before any work and keeps its heartbeat fresh from a
background thread; it removes the lock when it ends. A lock whose heartbeat
is older than `stale_after_s` belongs to a job that died (a driver killed
outright cannot remove it) and is taken over; so is, at once, the lock of a
job on this same machine (host name) whose process no longer exists: a
driver killed on a head node and submitted again there goes on at once.

Works the same on a local folder and on s3://, with nothing but reads and
writes: after writing its lock a job waits `settle_s` and reads it back, and
of two jobs that started at the same moment only the last writer finds its
own lock there; the other backs out. (Two jobs whose check and write were
more than `settle_s` apart on one of them could both pass; a driver does
both back to back.)
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone

from operators import paths
from operators import uri as uris

LOCK_NAME = "_lock.json"     # paths.out_lock
log = logging.getLogger("raydub")


class OutInUse(RuntimeError):
    """Another job holds OUT."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        pass                                  # another user's process, or no pid: assume it lives
    return True


def _age_s(stamp: str) -> float:
    return (datetime.now(timezone.utc) - datetime.fromisoformat(stamp)).total_seconds()


class OutLock:
    def __init__(self, out_dir: str, *, stale_after_s: float = 300.0, heartbeat_s: float = 30.0,
                 settle_s: float | None = None):
        self.uri = paths.out_lock(out_dir)
        self.out_dir = out_dir
        self.stale_after_s, self.heartbeat_s = stale_after_s, heartbeat_s
        # A local write is seen at once; an object store's after a round trip or two.
        self.settle_s = settle_s if settle_s is not None else (0.2 if uris.is_local(out_dir) else 2.0)
        self.record = {"owner": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
                       "started": _now(), "heartbeat": _now()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _held_by_other(self) -> dict | None:
        try:
            held = json.loads(uris.read_text(self.uri))
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            return None                       # a half-written or unreadable lock: nobody's
        if held.get("owner") == self.record["owner"] or _age_s(held["heartbeat"]) > self.stale_after_s:
            return None
        if held.get("host") == self.record["host"] and not _alive(held.get("pid")):
            return None                       # a job of this machine that was killed: no need to wait
        return held

    def _refuse(self, held: dict) -> OutInUse:
        return OutInUse(
            f"{uris.redacted(self.out_dir)} is in use by another raydub job (host {held.get('host')}, "
            f"pid {held.get('pid')}, started {held.get('started')}, last seen {held.get('heartbeat')}). "
            f"Wait for it to finish, or give this job another --out. If that job is dead, its lock "
            f"({LOCK_NAME}) is taken over {self.stale_after_s:.0f} s after it was last seen, or remove it.")

    def acquire(self) -> None:
        held = self._held_by_other()
        if held:
            raise self._refuse(held)
        self._write()
        time.sleep(self.settle_s)
        held = self._held_by_other()
        if held:
            raise self._refuse(held)
        self._thread = threading.Thread(target=self._beat, name="raydub-out-lock", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        self.record["heartbeat"] = _now()
        uris.write_text(self.uri, json.dumps(self.record))

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                held = self._held_by_other()
                if held:
                    # This driver stalled past stale_after_s and another job took OUT over.
                    log.error("%s", self._refuse(held))
                    return
                self._write()
            except OSError:
                pass                          # a store down for a moment: the next beat tries again

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        try:
            held = json.loads(uris.read_text(self.uri))
            if held.get("owner") == self.record["owner"]:
                fs, path = uris.filesystem(self.uri)
                fs.rm(path)
        except (FileNotFoundError, ValueError, OSError):
            pass

    def __enter__(self) -> "OutLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
