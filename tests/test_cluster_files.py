"""The cluster files a studio deploys: cluster/kuberay-rayjob.yaml (KubeRay) and cluster/aws-cluster.yaml (`ray up`).

Parsed, never applied: no Ray is started and nothing reaches a network. The checks are the facts a
deployment depends on: the head schedules no work, GPU pods land on GPU nodes, the job runs the
pipeline with a config that exists and loads, torch stays pinned, and no credential is written down.
"""
import copy
import fnmatch
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from operators.config import Config

ROOT = Path(__file__).resolve().parent.parent
RAYJOB = ROOT / "cluster" / "kuberay-rayjob.yaml"
AWS = ROOT / "cluster" / "aws-cluster.yaml"
SECRET_PATTERNS = (re.compile(r"AKIA[0-9A-Z]{16}"),
                   re.compile(r"aws_secret_access_key\s*[:=]\s*\S{20,}", re.IGNORECASE))


def _pin(package: str) -> str:
    """The exact version pyproject.toml pins `package` to."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (dep,) = [d for d in deps if re.match(rf"{re.escape(package)}(\[[^]]*\])?==", d)]
    return dep.split("==", 1)[1].split()[0]


@pytest.fixture(scope="module")
def rayjob() -> dict:
    return yaml.safe_load(RAYJOB.read_text())


@pytest.fixture(scope="module")
def aws() -> dict:
    return yaml.safe_load(AWS.read_text())


def _pods(rayjob: dict) -> dict[str, dict]:
    """Pod spec per group: "head" and each worker group's name."""
    spec = rayjob["spec"]["rayClusterSpec"]
    pods = {"head": spec["headGroupSpec"]["template"]["spec"]}
    pods.update({g["groupName"]: g["template"]["spec"] for g in spec["workerGroupSpecs"]})
    return pods


def _commands(aws: dict) -> list[str]:
    """Every shell command the launcher runs on a node, in order, split at ; && || and if/then/else."""
    lists = [aws.get(k) or [] for k in ("initialization_commands", "setup_commands", "head_setup_commands",
                                        "worker_setup_commands", "head_start_ray_commands",
                                        "worker_start_ray_commands")]
    lists += [t.get(k) or [] for t in aws["available_node_types"].values()
              for k in ("initialization_commands", "worker_setup_commands")]
    parts = []
    for line in (c for cmds in lists for c in cmds):
        parts += [p.strip() for p in re.split(r";|&&|\|\||\b(?:if|then|else|fi)\b", line) if p.strip()]
    return parts


def _torch_requirements(command: str) -> list[str]:
    """The torch requirements a `pip install` command names ("torch==2.13.0", "torch", "torch>=2")."""
    argv = shlex.split(command)
    if "install" not in argv or not any(Path(a).name in ("pip", "pip3") for a in argv[:argv.index("install")]):
        return []
    return [a for a in argv[argv.index("install") + 1:] if re.fullmatch(r"torch(\[[^]]*\])?([=<>!~].*)?", a)]


def _secret_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(p.search(line) for p in SECRET_PATTERNS)]


# KubeRay RayJob

def test_rayjob_runs_the_ray_version_raydub_pins(rayjob):
    assert (rayjob["apiVersion"], rayjob["kind"]) == ("ray.io/v1", "RayJob")
    assert rayjob["spec"]["rayClusterSpec"]["rayVersion"] == _pin("ray") == "2.60.0"


def test_rayjob_head_schedules_no_work(rayjob):
    params = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]
    # KubeRay passes rayStartParams as strings; an int 0 would be rejected by its CRD.
    assert params["num-cpus"] == "0"
    assert params["dashboard-host"] == "0.0.0.0"


def test_rayjob_has_one_gpu_group_that_tolerates_gpu_nodes_and_scales_from_zero(rayjob):
    groups = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    limits = {g["groupName"]: g["template"]["spec"]["containers"][0]["resources"]["limits"] for g in groups}
    gpu_groups = [g for g in groups if "nvidia.com/gpu" in limits[g["groupName"]]]
    assert [g["groupName"] for g in gpu_groups] == ["gpu"]
    (gpu,) = gpu_groups
    assert int(limits["gpu"]["nvidia.com/gpu"]) == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["template"]["spec"]["tolerations"]
    assert gpu["minReplicas"] == 0 < gpu["maxReplicas"]


def test_rayjob_cpu_group_asks_for_what_it_is_limited_to(rayjob):
    (cpu,) = [g for g in rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"] if g["groupName"] == "cpu"]
    resources = cpu["template"]["spec"]["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in resources["limits"]
    for key in ("cpu", "memory"):
        assert resources["requests"][key] == resources["limits"][key]
    assert cpu["minReplicas"] <= cpu["replicas"] <= cpu["maxReplicas"]


def test_rayjob_autoscales_and_deletes_its_cluster_when_done(rayjob):
    spec = rayjob["spec"]
    assert spec["rayClusterSpec"]["enableInTreeAutoscaling"] is True
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] > 0
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["backoffLimit"] == 0


def test_rayjob_entrypoint_runs_localize_with_the_cluster_config(rayjob):
    from pipelines.cli import _parser

    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "pipelines.localize"]
    assert (ROOT / (argv[2].replace(".", "/") + ".py")).is_file()
    args = _parser().parse_args(["run", *argv[3:]])       # the options localize accepts
    assert args.config == "cluster/cluster.toml"
    assert args.catalog.startswith("s3://") and args.out.startswith("s3://")
    assert (ROOT / args.config).is_file()
    assert Config.load(str(ROOT / args.config)).run.ray_address == "auto"
    # The driver runs from the head container's working directory: the relative --config resolves there.
    assert _pods(rayjob)["head"]["containers"][0]["workingDir"] == "/app"


def test_rayjob_pods_share_one_image_and_one_aws_identity(rayjob):
    pods = _pods(rayjob)
    assert {c["image"] for p in pods.values() for c in p["containers"]} == {"your-registry/raydub:latest"}
    assert {c["workingDir"] for p in pods.values() for c in p["containers"]} == {"/app"}
    assert {p["serviceAccountName"] for p in pods.values()} == {"raydub-s3"}


def test_rayjob_uses_token_auth_and_writes_no_credential_value(rayjob):
    assert rayjob["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    credential = re.compile(r"AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)|RAY_AUTH_TOKEN")
    for pod in _pods(rayjob).values():
        for container in pod["containers"]:
            for env in container.get("env", []):
                assert not (credential.fullmatch(env["name"]) and "value" in env), env["name"]


# AWS cluster launcher

def test_aws_config_passes_the_launchers_own_validation(aws):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(aws)))   # Ray's ray-schema.json, as `ray up` checks it


def test_aws_head_schedules_no_work(aws):
    assert aws["available_node_types"][aws["head_node_type"]]["resources"] == {"CPU": 0}
    (start,) = [c for c in aws["head_start_ray_commands"] if "ray start" in c]
    argv = shlex.split(start.split("ray start", 1)[1])
    for flag in ("--head", "--num-cpus=0", "--dashboard-host=0.0.0.0",
                 "--autoscaling-config=~/ray_bootstrap_config.yaml"):
        assert flag in argv
    (join,) = [c for c in aws["worker_start_ray_commands"] if "ray start" in c]
    assert "--address=$RAY_HEAD_IP:6379" in join.split()


def test_aws_gpu_workers_have_one_gpu_each_and_scale_from_zero(aws):
    types = aws["available_node_types"]
    gpu_types = {name: t for name, t in types.items() if t["resources"].get("GPU")}
    assert list(gpu_types) == ["gpu_workers"]
    gpu = gpu_types["gpu_workers"]
    assert gpu["resources"]["GPU"] == 1
    assert gpu["node_config"]["InstanceType"] in ("g5.xlarge", "g5.2xlarge")
    assert gpu["min_workers"] == 0 < gpu["max_workers"]
    assert types["cpu_workers"]["node_config"]["InstanceType"] == "c6i.8xlarge"
    assert types[aws["head_node_type"]]["node_config"]["InstanceType"] == "m5.2xlarge"


def test_aws_nodes_join_with_the_token_that_the_launcher_copies(aws):
    assert aws["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = [c for c in aws[key] if "ray start" in c]
        assert "export RAY_AUTH_MODE=token" in start


def test_aws_ships_the_checkout_but_not_local_state(aws):
    assert aws["file_mounts"]["~/raydub"] == "."
    assert ".gitignore" in aws["rsync_filter"]            # the virtualenv and outputs stay behind
    excludes = aws["rsync_exclude"]
    for name in (".git", ".env", ".env.local", "credentials", "id_ed25519", "server.key"):
        assert any(fnmatch.fnmatch(name, p) for p in excludes), name
    # The launcher sends its own files through the same rsync options: none may be excluded.
    for name in ("ray_bootstrap_key.pem", "ray_bootstrap_config.yaml", "auth_token"):
        assert not any(fnmatch.fnmatch(name, p) for p in excludes), name


def test_aws_setup_pins_torch_before_installing_raydub(aws):
    commands = _commands(aws)
    torch_installs = [i for i, c in enumerate(commands) if _torch_requirements(c)]
    # Two installs: the CUDA build where a GPU answers, the CPU build elsewhere.
    assert len(torch_installs) == 2
    for i in torch_installs:
        assert _torch_requirements(commands[i]) == [f"torch=={_pin('torch')}"]
    (raydub,) = [i for i, c in enumerate(commands) if "pip install" in c and " -e " in c]
    assert max(torch_installs) < raydub


def test_torch_requirement_reader_sees_an_unpinned_torch():
    assert _torch_requirements('pip install -q torch "numpy<2"') == ["torch"]
    assert _torch_requirements("~/venv/bin/pip install torch>=2 torchaudio") == ["torch>=2"]
    assert _torch_requirements("python -m pip install torch==2.1") == ["torch==2.1"]
    assert _torch_requirements("pip install -e .") == []


def test_aws_setup_installs_the_system_packages_of_install_sh(aws):
    script = (ROOT / "scripts" / "install.sh").read_text()
    wanted = set(re.findall(r"need\+=\((\S+?)\)", script)) - {'"${pair#*:}"'}
    wanted |= set(re.findall(r"\S+?:(apertium-[\w-]+)", script))
    assert {"ffmpeg", "espeak-ng", "apertium", "fonts-dejavu-core", "apertium-eng-spa"} <= wanted
    installed = {w for c in _commands(aws) if "apt-get" in c and " install " in c for w in c.split()}
    assert sorted(wanted - installed) == []


# Both files

@pytest.mark.parametrize("path", [RAYJOB, AWS], ids=lambda p: p.name)
def test_no_credential_is_written_in_the_file(path):
    assert _secret_lines(path.read_text()) == []


@pytest.mark.parametrize("path", [RAYJOB, AWS], ids=lambda p: p.name)
def test_every_torch_version_written_is_the_one_pyproject_pins(path):
    # The RayJob names it in the image's recipe, the AWS config in its pip commands; a bump must reach both.
    versions = re.findall(r"(?<![\w-])torch==([\w.+]+)", path.read_text())
    assert versions and set(versions) == {_pin("torch")}


def test_credential_patterns_find_planted_keys():
    planted = "aws_access_key_id = AKIA" + "Q" * 16 + "\naws_secret_access_key: " + "x" * 40 + "\nregion: eu-west-1"
    assert len(_secret_lines(planted)) == 2


def test_cluster_config_reaches_no_more_than_the_rayjob_can_grow_to(rayjob):
    """run.reachable_resources feeds the start-up check (the GPU group starts at 0 nodes): it may not claim more."""
    reachable = Config.load(str(ROOT / "cluster" / "cluster.toml")).run.reachable_resources
    groups = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    most = {"CPU": 0.0, "GPU": 0.0, "memory": 0.0}
    for g in groups:
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        most["CPU"] += g["maxReplicas"] * float(limits["cpu"])
        most["GPU"] += g["maxReplicas"] * float(limits.get("nvidia.com/gpu", 0))
        most["memory"] += g["maxReplicas"] * float(limits["memory"].removesuffix("Gi")) * 2**30
    assert reachable["CPU"] <= most["CPU"] and reachable["GPU"] == most["GPU"] > 0
    assert reachable["memory"] <= 0.7 * most["memory"]          # Ray keeps about 30% for its object store
