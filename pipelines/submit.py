"""`raydub submit`: a catalog sent to a running Ray cluster as a job, what cluster/submit.sh does, in Python.

    raydub submit --catalog s3://bucket/catalog.jsonl --out s3://bucket/out --langs es,de \
        [--config cluster/cluster.toml] [--address http://head:8265] [--no-wait]

The job runs `python -m pipelines.localize ...` on the head, with raydub's code as its working directory
(cluster/runtime_env.yaml's allow-list decides what ships). Waiting, it streams the job's log and returns
the job's exit status; without waiting, it prints the job id and returns.

Where the job's paths are read: on the head. Catalog and OUT are for the cluster to reach (s3://, or a
path on the head; a local path is made absolute, which is right only for a head on this machine). The
config is checked here first, then read by the job: an s3:// URI, or a file inside the shipped folders,
passed as its path relative to them (a file elsewhere on this machine would not reach the cluster).

Secrets stay out of what is printed (the log is redacted line by line) and out of the job's command line,
which the dashboard shows: a presigned or user:password URI goes to the job in an environment variable.
"""
from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
import uuid
from pathlib import Path
from typing import TextIO

from operators import uri as uris
from operators.catalog import parse_langs
from operators.config import Config, ConfigError

# The folder that holds pipelines/ and cluster/: the job's working directory, whatever the caller's cwd.
ROOT = Path(__file__).resolve().parent.parent
RUNTIME_ENV = "cluster/runtime_env.yaml"
DEFAULT_CONFIG = "cluster/cluster.toml"
# A head that has just started answers before its job agent has registered: "No available agent to
# submit job" (an HTTP 500 that creates no job), so a submission is tried again for this long.
AGENT_WAIT_S = 60.0


def runtime_env(root: Path = ROOT) -> dict:
    """cluster/runtime_env.yaml, its working directory made absolute (the yaml's "." means the checkout)."""
    import yaml

    path = root / RUNTIME_ENV
    if not path.is_file():
        raise ConfigError(f"{path}: not found; `raydub submit` ships a raydub checkout (pip install -e .), "
                          f"and this one has no {RUNTIME_ENV}")
    env = yaml.safe_load(path.read_text())
    return {**env, "working_dir": str((root / env.get("working_dir", ".")).resolve())}


def job_config(config_path: str | None, root: Path = ROOT) -> str:
    """The --config the job gets: checked here, then named so that the head can read it."""
    config_path = config_path or DEFAULT_CONFIG
    if not uris.is_local(config_path):
        return config_path                   # read by the job with the cluster's credentials, maybe not ours
    local = Path(uris.strip_file(config_path))
    local = (local if local.is_absolute() or local.exists() else root / local).resolve()
    Config.load(str(local))                  # a bad key fails here, not minutes later in the job log
    try:
        relative = local.relative_to(root.resolve()).as_posix()
    except ValueError:
        relative = None
    # The runtime_env's allow-list names the top-level entries that ship ("!/cluster"); nothing else does.
    shipped = {e[2:] for e in runtime_env(root).get("excludes", []) if e.startswith("!/") and e != "!/."}
    if relative is None or relative.split("/")[0] not in shipped:
        raise ConfigError(f"{config_path}: the job could not read this file: only {', '.join(sorted(shipped))} "
                          f"of {root} ship to the cluster. Put it under cluster/, or on s3://")
    return relative


def entrypoint(catalog: str, out: str, langs: str | list[str] | None, config: str,
               extra_args: tuple[str, ...] | list[str] = ()) -> tuple[str, dict[str, str]]:
    """The job's command line, and the environment variables it reads.

    A URI that carries a secret (a presigned query, user:password@) reaches the job in an environment
    variable that the command names ("$RAYDUB_CATALOG"), not in the command line itself, which
    `ray job list` and the dashboard show to everyone. The job supervisor runs the command with a shell:
    every other argument is quoted.
    """
    env_vars: dict[str, str] = {}

    def arg(name: str, value: str) -> str:
        if uris.redacted(value) == value:
            return shlex.quote(value)
        env_vars[f"RAYDUB_{name}"] = value
        return f'"$RAYDUB_{name}"'

    words = ["python", "-m", "pipelines.localize", "--catalog", arg("CATALOG", uris.absolute(catalog)),
             "--out", arg("OUT", uris.absolute(out))]
    langs = parse_langs(langs)
    if langs:
        words += ["--langs", shlex.quote(",".join(langs))]
    words += ["--config", arg("CONFIG", config), *map(shlex.quote, extra_args)]
    return " ".join(words), env_vars


def exit_status(info) -> int:
    """0 for a job that SUCCEEDED; else its driver's exit code (2: refused, e.g. OUT in use), or 1."""
    if info.status == "SUCCEEDED":
        return 0
    code = getattr(info, "driver_exit_code", None)
    return code if isinstance(code, int) and code > 0 else 1


class RedactedLines:
    """Log chunks out as whole lines with URIs and tokens redacted: a chunk may end inside a URI."""

    def __init__(self, stream: TextIO):
        self.stream, self.rest = stream, ""

    def write(self, chunk: str) -> None:
        *lines, self.rest = (self.rest + chunk).split("\n")
        for line in lines:
            print(uris.redact_text(line), file=self.stream, flush=True)

    def close(self) -> None:
        if self.rest:
            print(uris.redact_text(self.rest), file=self.stream, flush=True)
        self.rest = ""


def submit(catalog: str, out: str, langs: str | list[str] | None = None, config_path: str | None = None,
           address: str | None = None, wait: bool = True, extra_args: tuple[str, ...] | list[str] = (),
           stream: TextIO | None = None) -> int:
    """Submit the catalog as a job and print its id. Waiting: stream its log, return its exit status (0: ok).
    Not waiting: return 0 once it is submitted. `extra_args` go to `raydub run` as they are (e.g. --no-resume)."""
    stream = stream or sys.stdout
    address = cluster_address(address)
    job_id = submit_job(catalog, out, langs, config_path, address, extra_args, stream)
    if not wait:
        print(f"follow it: ray job logs --follow {job_id}; stop it: ray job stop {job_id}", file=stream, flush=True)
        return 0
    return follow(job_id, address, stream)


def cluster_address(address: str | None) -> str:
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        # Never Ray's guess (the last cluster started on this machine): the user names the cluster.
        raise ConfigError("no Ray cluster to submit to: give --address http://HEAD:8265 or set RAY_ADDRESS")
    return address


def submit_job(catalog: str, out: str, langs: str | list[str] | None = None, config_path: str | None = None,
               address: str | None = None, extra_args: tuple[str, ...] | list[str] = (),
               stream: TextIO | None = None) -> str:
    """Submit the catalog as a job; returns its id (printed to `stream` when given). Nothing is sent before
    the languages and a local config have been checked."""
    address = cluster_address(address)
    command, secrets = entrypoint(catalog, out, langs, job_config(config_path), extra_args)
    env = runtime_env()
    env["env_vars"] = {**env.get("env_vars", {}), **secrets}
    job_id = _submitted(address, command, env)
    if stream:
        print(f"raydub job {job_id} submitted to {uris.redacted(address)}: {uris.redact_text(command)}",
              file=stream, flush=True)
    return job_id


def follow(job_id: str, address: str | None = None, stream: TextIO | None = None) -> int:
    """Stream a job's log (redacted) until it ends; returns its exit status (`exit_status`)."""
    stream = stream or sys.stdout
    client = _client(cluster_address(address))
    try:
        asyncio.run(_follow(client, job_id, RedactedLines(stream)))
        info = _finished(client, job_id)
    except KeyboardInterrupt:
        print(f"\nstopped following; job {job_id} goes on (stop it: ray job stop {job_id})", file=stream, flush=True)
        return 130
    code = exit_status(info)
    why = f": {uris.redact_text(info.message)}" if code and info.message else ""
    print(f"raydub job {job_id} {info.status.value} (exit status {code}){why}", file=stream, flush=True)
    return code


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except ConnectionError as e:
        raise ConfigError(f"no Ray cluster answers at {uris.redacted(address)} ({type(e).__name__}): is the head up, "
                          f"and is that its dashboard address (http://HEAD:8265)?") from None


def _submitted(address: str, command: str, env: dict) -> str:
    client = _client(address)
    # Named so that `ray job list` tells raydub's jobs apart.
    submission_id = f"raydub_{uuid.uuid4().hex[:16]}"
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            return client.submit_job(entrypoint=command, runtime_env=env, submission_id=submission_id)
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(2.0)


async def _follow(client, job_id: str, lines: RedactedLines) -> None:
    try:
        async for chunk in client.tail_job_logs(job_id):
            lines.write(chunk)
    except RuntimeError as e:
        # The log stream broke (a dashboard restart, a proxy): the job goes on; its end is polled for.
        lines.write(f"\n(log stream lost: {e}; waiting for the job to end)\n")
    finally:
        lines.close()


def _finished(client, job_id: str, poll_s: float = 2.0):
    while not (info := client.get_job_info(job_id)).status.is_terminal():
        time.sleep(poll_s)
    return info
