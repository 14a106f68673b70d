"""`ray job submit` against a real head node on loopback (make test-slow).

The head (tests/conftest.py `ray_head`) runs as a child process (`ray start --head --block`) and is
stopped by its own pid; nothing else on the machine is touched.
"""
import json
import os
import subprocess
import sys

import pytest

from catalogs import dummies
from operators import manifest
from operators.config import STAGES

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout + job.stderr
    rows = manifest.read_manifest(str(out))
    assert [(r["video_id"], r["lang"], r["status"]) for r in rows] == [("a", "es", "ok")]
    assert os.path.exists(rows[0]["video_out_uri"])
