import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from operators.config import STAGES, Config

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# A single-node Ray binds to loopback only with this set (read when ray is first imported).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# Nothing in the test suite may reach a model hub: the models it uses ship in packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# S3 for the tests is a moto server on loopback (tests/test_s3.py starts it). Its address and
# dummy credentials are set before Ray starts, so Ray's workers inherit them; they also keep any
# test from reaching real AWS.
S3_PORT = _free_port()
os.environ.update({
    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}",
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
})
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def ray_local():
    """A small Ray on loopback for the whole session, shut down at the end."""
    import ray

    # address="local": always a new Ray of our own, never one that `ray start` left on the machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    yield ray
    ray.shutdown()


@contextlib.contextmanager
def moto_server(log_path: Path):
    """A moto S3 server on 127.0.0.1, a child process stopped by its own pid. Yields its port."""
    port = _free_port()
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                             "-p", str(port)], stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    try:
        for _ in range(60):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("moto server did not start: " + log_path.read_text()[-1000:])
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def ray_head(log_path: Path, num_cpus: int = 2, tries: int = 3):
    """A real Ray head (`ray start --head --block`) on loopback, as a child process stopped by its own pid.

    Yields (dashboard address, the environment it runs with). Every port it listens on is a free one: on a
    shared machine another Ray (an embedded one of a test session) already holds the defaults, and a
    dashboard agent that cannot bind its port leaves the head refusing every job ("No available agent").
    A head that dies while starting (`ray start` gives its raylet 30 s to register, which a loaded machine
    can miss) is started again, up to `tries` times.
    """
    # The job's `python` is the head's: as on a cluster image, the one that has raydub's dependencies.
    # No token auth on this loopback head: Ray turns it on wherever ~/.ray/auth_token exists, and a client
    # in this process keeps the mode it first read (a JobSubmissionClient here could not follow).
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    for _ in range(tries):
        port, dash, agent, client = (_free_port() for _ in range(4))
        proc = subprocess.Popen([ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                                 "--port", str(port), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
                                 "--dashboard-agent-listen-port", str(agent), "--ray-client-server-port", str(client),
                                 "--num-cpus", str(num_cpus), "--include-dashboard", "true"],
                                env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
        address = f"http://127.0.0.1:{dash}"
        try:
            up = _head_up(address, agent, proc, log_path)
        except BaseException:
            _stop_head(proc, port)
            raise
        if up:
            break
        _stop_head(proc, port)
    else:
        raise RuntimeError(f"the Ray head did not come up ({tries} tries): " + log_path.read_text()[-2000:])
    try:
        yield address, env
    finally:
        _stop_head(proc, port)


def _head_up(address: str, agent_port: int, proc: subprocess.Popen, log_path: Path) -> bool:
    """True once `ray start` says it started and the dashboard and the job agent answer; False if it died."""
    import socket

    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        time.sleep(1)
        if "block forever" not in log_path.read_text():        # `ray start` done: every process registered
            continue
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=5)
        except urllib.error.HTTPError:      # up, and answering
            pass
        except OSError:
            continue
        try:
            # The dashboard answers before the job agent listens; jobs go through the agent.
            socket.create_connection(("127.0.0.1", agent_port), timeout=5).close()
            return True
        except OSError:
            continue
    return False


def _stop_head(proc: subprocess.Popen, port: int) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
    # `ray start` leaves the address of the cluster it started behind; a later ray.init() would try it
    current = "/tmp/ray/ray_current_cluster"
    if os.path.exists(current) and open(current).read().strip() == f"127.0.0.1:{port}":
        os.remove(current)


@pytest.fixture
def head(tmp_path):
    """A Ray head of its own for one test: (dashboard address, its environment)."""
    with ray_head(tmp_path / "head.log") as found:
        yield found


def small_config(**sections) -> Config:
    """Fractional CPUs so that every stage's actor and task fits a 2-CPU test Ray at once."""
    resources = {stage: {"num_cpus": 0.2} for stage in STAGES}
    return Config.from_dict({"resources": resources, **sections})


@pytest.fixture(scope="session")
def demo_out(tmp_path_factory, ray_local) -> str:
    """The demo catalog built and dubbed once per session (about 2 minutes): its OUT folder."""
    from catalogs.demo.build import build
    from pipelines.localize import run

    root = tmp_path_factory.mktemp("demo")
    catalog = build(root / "demo", log=lambda *a: None)
    out = str(root / "out")
    summary = run(str(catalog), out, config=small_config())
    assert summary.counts["es"]["ok"] == summary.counts["de"]["ok"] == summary.counts["pt"]["ok"] == 3, summary.counts
    return out


def execute_notebook(path, out_dir: str, monkeypatch) -> list:
    """Run a notebook on OUT (RAYDUB_OUT) and return its code cells' outputs.

    The kernel is a new process: PYTHONPATH makes it import this checkout's code, not whichever checkout
    the environment has installed (a worktree shares the main checkout's editable install).
    """
    import nbformat
    from nbclient import NotebookClient

    root = str(Path(__file__).resolve().parent.parent)
    monkeypatch.setenv("RAYDUB_OUT", out_dir)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH")))))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(Path(path).parent)}}).execute()
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
