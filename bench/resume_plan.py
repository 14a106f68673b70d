"""Resume planning at catalog scale: how long the driver takes, and how much memory, to decide what is done.

    python bench/resume_plan.py --videos 2000 --langs 3 [--s3]

Writes a finished-looking result marker (and its four output files) for every (video, language) into a
work dir, on local disk or on a moto S3 server started on 127.0.0.1, then times what a resumed run does
before its first task: read every earlier result and check that each one's outputs still exist. Prints
measured figures only.
"""
from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    server = os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(60):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    os.environ.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    return proc, port


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=2000)
    p.add_argument("--langs", type=int, default=3)
    p.add_argument("--s3", action="store_true", help="on a local moto S3 server instead of local disk")
    args = p.parse_args()

    proc = None
    if args.s3:
        proc, _ = _moto()
        import s3fs

        s3fs.S3FileSystem().mkdir("bench")
        base = "s3://bench/run"
    else:
        base = tempfile.mkdtemp(prefix="resume-plan-")
    try:
        from operators import manifest
        from operators import uri as uris
        from operators.schema import MANIFEST_VERSION, result_id

        langs = ["es", "de", "fr", "pt", "it", "ja"][:args.langs]
        out, work = uris.join(base, "out"), uris.join(base, "out", "_work")
        rows = []
        for v in range(args.videos):
            vid = f"video-{v:06d}"
            for lang in langs:
                outputs = {c: uris.join(out, "videos", vid, f"{vid}.{lang}.{c}") for c in manifest.OUTPUT_COLUMNS}
                rows.append({"video_id": vid, "uri": f"/m/{vid}.mp4", "lang": lang, "status": "ok",
                             "result_id": result_id(vid, lang),
                             "manifest_version": MANIFEST_VERSION, "inputs_fingerprint": "x", **outputs})
        t0 = time.perf_counter()
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda r: manifest.write_marker(work, r), rows))
            list(pool.map(lambda u: uris.write_bytes(u, b"x"),
                          [r[c] for r in rows for c in manifest.OUTPUT_COLUMNS]))
        print(f"wrote {len(rows)} markers and {len(rows) * len(manifest.OUTPUT_COLUMNS)} outputs "
              f"({'moto S3' if args.s3 else 'local disk'}) in {time.perf_counter() - t0:.1f} s")

        def plan(label: str) -> None:
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            t0 = time.perf_counter()
            previous = manifest.previous_results(out, work)
            t_read = time.perf_counter() - t0
            t0 = time.perf_counter()
            done = manifest.done_keys(list(previous.values()), out)
            t_check = time.perf_counter() - t0
            rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            assert len(previous) == len(rows) and len(done) == len(rows), (len(previous), len(done))
            print(f"{label}: resume planning for {len(rows)} results: read {t_read:.1f} s, outputs checked "
                  f"{t_check:.1f} s, total {t_read + t_check:.1f} s; driver peak RSS {rss1:.2f} GiB "
                  f"(before planning {rss0:.2f} GiB)")

        # A job killed before its end: every result is a marker of its own.
        plan("after a killed job (markers)")
        # A job that ended: the manifest holds the results, the markers are gone.
        t0 = time.perf_counter()
        manifest.write_manifest(out, manifest.read_markers(work))
        manifest.clear_markers(work)
        print(f"manifest written and markers cleared in {time.perf_counter() - t0:.1f} s")
        plan("after a finished job (manifest)")
    finally:
        if proc:
            proc.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
