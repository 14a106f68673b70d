"""What `ray job submit --runtime-env cluster/runtime_env.yaml` uploads: raydub's code and config, nothing else.

The package is built by Ray's own functions, on a copy of the tracked files with
local state and secrets planted beside them, so the test reads the excludes as
Ray 2.60 does (gitignore syntax, first the folders, then what is inside them).
"""
import shutil
import subprocess
from pathlib import Path
from zipfile import ZipFile

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_FOLDERS = ("operators/", "pipelines/", "catalogs/", "cluster/")
# What a user's checkout holds beside the code; none of it may reach the cluster.
PLANTED = (
    ".env", "secrets.toml", "keys/id_rsa", "server.pem", ".venv/bin/python", "venv/lib/site.py",
    "demo-out/manifest/part-0.parquet", "my-out/_work/a/audio.wav", "catalogs/demo/build/x.mp4",
    "operators/.env", "operators/backends/.env.local", "pipelines/server.key", "cluster/credentials.json",
    "cluster/id_ed25519", "catalogs/secrets.toml", "operators/__pycache__/models.cpython-311.pyc",
    "pipelines/_work/a/audio.wav",
)


def _tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and (ROOT / p).is_file()]


def _shipped(checkout: Path, include_gitignore: bool) -> set[str]:
    """Zip entries of the package that `ray job submit` builds, run from `checkout`."""
    from ray._private.runtime_env.packaging import create_package
    from ray._private.runtime_env.working_dir import upload_working_dir_if_needed
    from ray.dashboard.modules.dashboard_sdk import parse_runtime_env_args

    runtime_env = parse_runtime_env_args(runtime_env="cluster/runtime_env.yaml")
    package = checkout.parent / "package.zip"

    def upload(working_dir: str, excludes: list[str], is_file: bool = False) -> None:
        # As SubmissionClient._upload_package, minus the HTTP PUT.
        create_package(working_dir, package, include_gitignore=include_gitignore, excludes=excludes)

    upload_working_dir_if_needed(runtime_env, include_gitignore=include_gitignore, upload_fn=upload)
    with ZipFile(package) as z:
        return set(z.namelist())


# "yaml-only" is RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1 with RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES='':
# the yaml alone must keep everything out, without .gitignore or Ray's default excludes.
@pytest.mark.parametrize("include_gitignore", [True, False], ids=["as-submitted", "yaml-only"])
def test_job_package_holds_the_code_and_no_local_state(tmp_path, monkeypatch, include_gitignore):
    if not include_gitignore:
        monkeypatch.setenv("RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES", "")
    checkout = tmp_path / "raydub"
    tracked = _tracked_files()
    for rel in tracked:
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, checkout / rel)
    for rel in PLANTED:
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text("SECRET=do-not-ship\n")
    monkeypatch.chdir(checkout)            # working_dir "." is the directory submit.sh runs from

    shipped = _shipped(checkout, include_gitignore)

    assert sorted(shipped & set(PLANTED)) == []
    code = {p for p in tracked if p.endswith(".py") and p.startswith(("operators/", "pipelines/", "catalogs/"))}
    assert sorted(code - shipped) == []
    assert "cluster/cluster.toml" in shipped            # submit.sh passes --config cluster/cluster.toml
    assert shipped == {p for p in tracked if p.startswith(SHIPPED_FOLDERS) or p == "pyproject.toml"}
