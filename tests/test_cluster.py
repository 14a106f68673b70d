"""`ray job submit` against a real head node on loopback (make test-slow).

The head runs as a child process (`ray start --head --block`) and is stopped
by its own pid; nothing else on the machine is touched.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from catalogs import dummies
from operators import manifest
from operators.config import STAGES

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head(tmp_path):
    # The job's `python` is the head's: as on a cluster image, the one that has raydub's dependencies.
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    port, dash = _free_port(), _free_port()
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    proc = subprocess.Popen([ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
                             "--num-cpus", "2", "--include-dashboard", "true"],
                            env=env, stdout=open(tmp_path / "head.log", "w"), stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2)
            break
        except urllib.error.HTTPError:      # up, and asking for its token
            break
        except OSError:
            time.sleep(1)
    else:
        proc.terminate()
        pytest.fail("the Ray head did not come up: " + (tmp_path / "head.log").read_text()[-2000:])
    yield address, env
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    # `ray start` leaves the address of the cluster it started behind; a later ray.init() would try it
    current = "/tmp/ray/ray_current_cluster"
    if os.path.exists(current) and open(current).read().strip() == f"127.0.0.1:{port}":
        os.remove(current)


def test_job_submission_dubs_a_catalog(head, tmp_path):
    address, env = head
    speech = str(tmp_path / "s.wav")
    dummies.speech_track([(0.5, "The house is red.")], 3.0, speech)
    dummies.still_video(dummies.portrait(), str(tmp_path / "a.mp4"), 3.0, audio_wav=speech)
    catalog = tmp_path / "c.jsonl"
    catalog.write_text(json.dumps({"video_id": "a", "uri": str(tmp_path / "a.mp4"), "target_langs": ["es"]}) + "\n")
    config = tmp_path / "cpu.toml"
    config.write_text('[run]\nray_address = "auto"\n'
                      + "".join(f"[resources.{s}]\nnum_cpus = 0.2\n" for s in STAGES))
    out = tmp_path / "out"
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    job = subprocess.run(
        [ray_bin, "job", "submit", "--address", address, "--runtime-env", "cluster/runtime_env.yaml", "--",
         "python", "-m", "pipelines.localize", "--catalog", str(catalog), "--out", str(out),
         "--config", str(config), "--quiet"],
        cwd=ROOT, env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True, timeout=420)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout + job.stderr
    rows = manifest.read_manifest(str(out))
    assert [(r["video_id"], r["lang"], r["status"]) for r in rows] == [("a", "es", "ok")]
    assert os.path.exists(rows[0]["video_out_uri"])
