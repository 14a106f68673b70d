"""A catalog's credentials never reach a stored or printed byte: outputs, work files, manifest, report, log.

The catalog names its media by presigned URLs and a user:password@ URL, served
by a web server on loopback; the whole run goes through the CLI in its own
process, so its log is exactly what a user would see.
"""
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.parse

import pytest

from catalogs import dummies
from operators import manifest
from operators import uri as uris

SECRET = "Zq8sEcReT0KEN4x2"
# Two halves of the user:password pair, so either alone is searched for.
USER, PASSWORD = "studio-ops", "pW9-hunter2-Qx"
LINES = [(0.5, "The house is red."), (2.6, "I drink coffee.")]


def _presigned(base: str, path: str) -> str:
    return (f"{base}/{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA{SECRET}%2F20261130"
            f"&X-Amz-Expires=900&X-Amz-Signature={SECRET}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    speech = str(root / "speech.wav")
    cues = dummies.speech_track(LINES, 4.5, speech, background="hum")
    dummies.still_video(dummies.portrait("astronaut"), str(root / "clip.mp4"), 4.5, audio_wav=speech)
    dummies.write_subtitles([dummies.Cue(c.start_s, c.end_s, t) for c, (_, t) in zip(cues, LINES)],
                            str(root / "clip.en.srt"))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def _leaks(data: bytes) -> list[str]:
    needles = [SECRET, PASSWORD, urllib.parse.quote(SECRET), urllib.parse.quote(PASSWORD)]
    return [n for n in needles if n.encode() in data]


def test_no_secret_in_any_output_file_or_the_log(server, tmp_path):
    base = server
    authed = base.replace("http://", f"http://{USER}:{PASSWORD}@")
    rows = [
        {"video_id": "clip", "uri": _presigned(base, "clip.mp4"), "target_langs": ["es"], "source_lang": "en",
         "source_subtitles_uri": _presigned(base, "clip.en.srt")},
        {"video_id": "gone", "uri": _presigned(base, "gone.mp4"), "target_langs": ["es"]},
        {"video_id": "locked", "uri": f"{authed}/missing.mp4?token={SECRET}", "target_langs": ["es"]},
    ]
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "small.toml"
    config.write_text("[run]\nnum_cpus = 2\n" + "".join(
        f"[resources.{s}]\nnum_cpus = 0.2\n" for s in
        ("probe", "shots", "transcribe", "faces", "lip_model", "translate", "synthesize", "fit_duration", "mix",
         "render", "mux", "score", "sync")))
    out = tmp_path / "out"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    cli = [sys.executable, "-m", "pipelines.cli"]
    proc = subprocess.run([*cli, "run", "--catalog", str(catalog), "--out", str(out), "--config", str(config)],
                          capture_output=True, env=env, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log.decode(errors="replace")[-3000:]
    report = subprocess.run([*cli, "report", str(out)], capture_output=True, env=env, timeout=300)
    assert report.returncode == 0, report.stderr.decode(errors="replace")
    log += report.stdout + report.stderr

    by_id = {r["video_id"]: r for r in manifest.read_manifest(str(out))}
    assert by_id["clip"]["status"] == "ok", by_id["clip"]["error"]
    assert by_id["gone"]["status"] == by_id["locked"]["status"] == "failed"
    assert "not found" in by_id["gone"]["error"]     # the reason is kept, the credentials are not
    assert by_id["clip"]["uri"] == uris.redacted(rows[0]["uri"]).replace("http://", "http://") \
        and "X-Amz-Signature=REDACTED" in by_id["clip"]["uri"]
    assert by_id["locked"]["uri"].startswith("http://REDACTED@127.0.0.1:")
    assert b"gone" in log and b"X-Amz-Signature=REDACTED" in log      # the failure is printed, redacted

    assert _leaks(log) == [], "secret in the log"
    files = [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs]
    assert any(f.endswith("report.html") for f in files) and any(f.endswith(".es.mp4") for f in files)
    leaking = {f: _leaks(open(f, "rb").read()) for f in files}
    assert {f: n for f, n in leaking.items() if n} == {}
    assert not any(_leaks(f.encode()) for f in files), "secret in a file name"
