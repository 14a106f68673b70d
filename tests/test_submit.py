"""`raydub submit` without a cluster: the job's command line as the job supervisor's shell runs it, the
runtime_env, where the config is read, and secrets kept out of what is printed and shown.
(tests/test_cluster_faults.py submits to a real head.)"""
import io
import shutil
import subprocess

import pytest
import yaml
from ray.job_submission import JobDetails, JobStatus, JobType

from operators.config import ConfigError
from pipelines import submit as sub

SECRET = "s3cr3tSIG"


def _as_the_job_runs_it(command: str, env_vars: dict[str, str]) -> list[str]:
    """The arguments `raydub run` receives: the job supervisor runs the entrypoint with /bin/sh -c
    (subprocess shell=True), its runtime_env's env_vars set."""
    head = "python -m pipelines.localize "
    assert command.startswith(head)
    shown = subprocess.run(["/bin/sh", "-c", "printf '%s\\n' " + command[len(head):]], env=env_vars,
                           capture_output=True, text=True, check=True).stdout
    return shown.split("\n")[:-1]


def test_every_argument_reaches_the_job_whole(tmp_path):
    out = str(tmp_path / "dubs of 'the' $HOME")
    command, env_vars = sub.entrypoint("s3://bucket/my catalog;rm -rf.jsonl", out, "es, de", "cluster/cluster.toml",
                                       ["--no-resume"])
    assert env_vars == {}
    assert _as_the_job_runs_it(command, env_vars) == [
        "--catalog", "s3://bucket/my catalog;rm -rf.jsonl", "--out", out, "--langs", "es,de",
        "--config", "cluster/cluster.toml", "--no-resume"]


def test_a_relative_local_path_is_made_absolute_and_langs_are_optional(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command, env_vars = sub.entrypoint("c.jsonl", "out", None, "s3://b/c.toml")
    assert _as_the_job_runs_it(command, env_vars) == [
        "--catalog", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "out"), "--config", "s3://b/c.toml"]


def test_a_uri_with_a_secret_reaches_the_job_outside_its_command_line():
    catalog = f"https://bucket.s3.amazonaws.com/c.jsonl?X-Amz-Credential=AKIAX&X-Amz-Signature={SECRET}"
    out = f"s3://user:{SECRET}@bucket/out"
    config = f"https://h/c.toml?token={SECRET}"
    command, env_vars = sub.entrypoint(catalog, out, "es", config)
    assert SECRET not in command                      # `ray job list` and the dashboard show the command
    assert env_vars == {"RAYDUB_CATALOG": catalog, "RAYDUB_OUT": out, "RAYDUB_CONFIG": config}
    assert _as_the_job_runs_it(command, env_vars) == [
        "--catalog", catalog, "--out", out, "--langs", "es", "--config", config]


def test_bad_langs_fail_before_anything_is_sent():
    with pytest.raises(Exception, match="--langs: 'zz' is not a BCP 47 language tag"):
        sub.entrypoint("s3://b/c.jsonl", "s3://b/out", "es,zz", "cluster/cluster.toml")


def test_the_runtime_env_is_cluster_runtime_env_yaml_from_the_checkout_wherever_submit_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = sub.runtime_env()
    shipped = yaml.safe_load((sub.ROOT / "cluster" / "runtime_env.yaml").read_text())
    assert env == {**shipped, "working_dir": str(sub.ROOT)}
    assert env["env_vars"] == {"RAY_USAGE_STATS_ENABLED": "0"}


def test_the_config_is_checked_here_and_named_as_the_job_finds_it(tmp_path, monkeypatch):
    root = tmp_path / "checkout"
    (root / "cluster").mkdir(parents=True)
    shutil.copy(sub.ROOT / "cluster" / "runtime_env.yaml", root / "cluster")
    (root / "cluster" / "mine.toml").write_text("[run]\nray_address = 'auto'\n")
    (root / "out").mkdir()
    (root / "out" / "mine.toml").write_text("[run]\nray_address = 'auto'\n")
    (root / "cluster" / "bad.toml").write_text("[run]\nray_adress = 'auto'\n")
    monkeypatch.chdir(tmp_path)

    assert sub.job_config(None) == "cluster/cluster.toml"                     # what cluster/submit.sh passes
    assert sub.job_config("cluster/mine.toml", root) == "cluster/mine.toml"   # relative to the checkout
    assert sub.job_config(str(root / "cluster" / "mine.toml"), root) == "cluster/mine.toml"
    assert sub.job_config("s3://bucket/configs/x.toml", root) == "s3://bucket/configs/x.toml"
    with pytest.raises(ConfigError, match="unknown key 'run.ray_adress'"):
        sub.job_config("cluster/bad.toml", root)
    with pytest.raises(ConfigError, match="could not read this file: only catalogs, cluster, operators, pipelines, "
                                          "pyproject.toml of .* ship to the cluster. Put it under cluster/"):
        sub.job_config(str(root / "out" / "mine.toml"), root)          # in the checkout, but not shipped
    (tmp_path / "elsewhere.toml").write_text("")
    with pytest.raises(ConfigError, match="could not read this file"):
        sub.job_config("elsewhere.toml", root)


def test_what_submit_prints_and_sends_holds_no_secret(monkeypatch):
    sent = []

    def submitted(address, command, env):           # what the JobSubmissionClient would be given
        sent.append((address, command, env))
        return "raydub_0123456789abcdef"

    monkeypatch.setattr(sub, "_submitted", submitted)
    monkeypatch.setenv("RAY_ADDRESS", f"http://admin:{SECRET}@head:8265")
    catalog = f"https://b.s3.amazonaws.com/c.jsonl?X-Amz-Signature={SECRET}"
    printed = io.StringIO()

    assert sub.submit(catalog, "s3://b/out", "es", "s3://b/c.toml", wait=False, stream=printed) == 0

    [(address, command, env)] = sent
    assert address == f"http://admin:{SECRET}@head:8265"
    assert env["env_vars"] == {"RAY_USAGE_STATS_ENABLED": "0", "RAYDUB_CATALOG": catalog}
    assert env["working_dir"] == str(sub.ROOT)
    assert printed.getvalue().splitlines() == [
        "raydub job raydub_0123456789abcdef submitted to http://REDACTED@head:8265: python -m pipelines.localize "
        '--catalog "$RAYDUB_CATALOG" --out s3://b/out --langs es --config s3://b/c.toml',
        "follow it: ray job logs --follow raydub_0123456789abcdef; stop it: ray job stop raydub_0123456789abcdef"]


def test_no_cluster_named_is_an_error_not_a_guess(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ConfigError, match="give --address http://HEAD:8265 or set RAY_ADDRESS"):
        sub.submit("s3://b/c.jsonl", "s3://b/out", "es", "s3://b/c.toml")


def test_the_log_is_redacted_line_by_line_even_when_a_chunk_ends_inside_a_uri():
    printed = io.StringIO()
    lines = sub.RedactedLines(printed)
    lines.write("reading https://b.s3.amazonaws.com/c.jsonl?X-Amz-Sig")
    lines.write(f"nature={SECRET}&X-Amz-Date=1 now\nok a -> es\nlast token={SECRET}")
    lines.close()
    assert printed.getvalue().splitlines() == [
        "reading https://b.s3.amazonaws.com/c.jsonl?X-Amz-Signature=REDACTED&X-Amz-Date=REDACTED now",
        "ok a -> es", "last token=REDACTED"]


@pytest.mark.parametrize("status, driver_exit_code, expected", [
    (JobStatus.SUCCEEDED, 0, 0),
    (JobStatus.FAILED, 2, 2),          # refused: OUT in use, a bad catalog
    (JobStatus.FAILED, 1, 1),
    (JobStatus.FAILED, None, 1),       # the driver never ran (runtime_env setup failed)
    (JobStatus.STOPPED, None, 1),
    (JobStatus.FAILED, -9, 1),         # killed by a signal
])
def test_exit_status_of_a_job(status, driver_exit_code, expected):
    info = JobDetails(type=JobType.SUBMISSION, status=status, entrypoint="python -m pipelines.localize",
                      driver_exit_code=driver_exit_code)
    assert sub.exit_status(info) == expected


def test_an_address_where_no_cluster_answers_is_an_error_that_shows_no_password():
    from tests.conftest import _free_port

    port = _free_port()
    with pytest.raises(ConfigError, match=rf"no Ray cluster answers at http://REDACTED@127\.0\.0\.1:{port} ") as e:
        sub.submit("s3://b/c.jsonl", "s3://b/out", "es", "s3://b/c.toml",
                   address=f"http://me:{SECRET}@127.0.0.1:{port}")
    assert SECRET not in str(e.value)
