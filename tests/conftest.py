import os
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
