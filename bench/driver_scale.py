"""The driver at catalog scale: its peak memory, and how long a resumed job takes to plan.

    python bench/driver_scale.py --videos 2000 --langs 3 [--s3] [--segments 20]

Runs the real driver (`pipelines.localize.run`: the lock, resume planning, the
manifest writer and its commits, compaction, the exactly-once proof) in a
child process, with Ray's passes stood in by generated rows: each result has
`--segments` lines with words, and its four outputs are written. So the
figures are the driver's own, at the catalog's size; Ray Data's executor,
which holds only what is in flight, is not in them. Catalog, manifest,
outputs and work dir are on local disk, or with --s3 on a moto S3 server on
127.0.0.1. Four jobs:

1. a fresh job, every result made;
2. every setting's fingerprint changed (so every result is redone), killed
   with SIGKILL half-way;
3. the same job submitted again: it commits what the killed one finished,
   plans, and makes the rest;
4. once more: everything is done, it only plans.

Prints measured figures only.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LANGS = ["es", "de", "fr", "pt", "it", "ja"]


def _stand_in_passes(out: str, segments: int, slow_s: float):
    """`pipelines.localize._passed` without Ray: plan and analysis pass rows through; the localize pass
    yields a full result per (video, language), its outputs written as a worker would."""
    from operators import manifest, paths
    from operators import uri as uris
    from operators.schema import MANIFEST_VERSION, empty_segment, result_id

    pool = ThreadPoolExecutor(16)

    def result(row: dict, lang: str) -> dict:
        vid = row["video_id"]
        outputs = {c: paths.output(out, vid, lang, s) for c, s in zip(
            manifest.OUTPUT_COLUMNS, (".mp4", ".wav", ".srt", ".vtt"))}
        list(pool.map(lambda u: uris.write_bytes(u, b"x"), outputs.values()))
        lines = []
        for i in range(segments):
            words = [{"word": f"word{j}", "start_s": i * 4.0 + j * 0.3, "end_s": i * 4.0 + j * 0.3 + 0.25,
                      "probability": 0.9} for j in range(10)]
            lines.append(empty_segment(segment_id=f"{vid}@{i}", start_s=i * 4.0, end_s=i * 4.0 + 3.0,
                                       source_text=" ".join(w["word"] for w in words), words=words,
                                       target_text="una frase traducida de longitud normal", speech_rate=1.1))
        return {**row, "lang": lang, "result_id": result_id(vid, lang), "manifest_version": MANIFEST_VERSION,
                "status": "ok", "duration_s": 4.0 * segments, "segments": lines, "wer": 0.05,
                "speaker_similarity": 0.8, **outputs}

    def passed(rows, schema, ops):
        kind = type(ops[0]).__name__
        for row in rows:
            if kind == "ProbeMedia":
                yield {**row, "status": None}
            elif kind == "MergeShards":
                for lang in row["target_langs"]:
                    if slow_s:
                        time.sleep(slow_s)
                    yield result(row, lang)

    return passed


def child(args) -> int:
    import logging

    from operators.config import Config
    from pipelines import localize

    logging.basicConfig(level=logging.WARNING)
    progress = logging.getLogger("raydub.progress")
    progress.setLevel(logging.INFO)
    lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())
            print(record.getMessage(), file=sys.stderr, flush=True)

    progress.addHandler(Keep())
    localize._passed = _stand_in_passes(args.out, args.segments, args.slow_s)
    localize.start_ray = lambda config: False
    localize.check_pools_fit = lambda ops, config: None
    config = Config().with_overrides(run={"log_every_s": 0, "manifest_batch_rows": args.batch})
    if args.change:
        config = config.with_overrides(translate={"alternatives": 2})
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    t0 = time.perf_counter()
    summary = localize.run(args.catalog, args.out, langs=LANGS[:args.langs], config=config)
    wall = time.perf_counter() - t0
    plan = next((float(x.rsplit("(", 1)[1].split(" s)")[0]) for x in lines if x.startswith("resume plan")), None)
    print(json.dumps({"wall_s": round(wall, 1), "plan_s": plan, "resumed": summary.resumed,
                      "made": summary.total - summary.resumed, "rss_before_mib": round(rss0),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10),
                      "proof": next((x for x in lines if x.startswith("exactly once")), None),
                      "recovered": next((x for x in lines if x.startswith("committed")), None)}))
    return 0


def _moto() -> subprocess.Popen:
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(60):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    # The child jobs inherit these.
    os.environ.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    return proc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=2000)
    p.add_argument("--langs", type=int, default=3)
    p.add_argument("--segments", type=int, default=20, help="lines per result")
    p.add_argument("--batch", type=int, default=200, help="run.manifest_batch_rows")
    p.add_argument("--s3", action="store_true", help="on a local moto S3 server instead of local disk")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--catalog", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--change", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--slow-s", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    moto = None
    if args.s3:
        moto = _moto()
        import s3fs

        s3fs.S3FileSystem().mkdir("bench")
        base = f"s3://bench/run-{int(time.time())}"
    else:
        base = tempfile.mkdtemp(prefix="driver-scale-")
    try:
        from operators import uri as uris

        catalog, out = uris.join(base, "catalog.jsonl"), uris.join(base, "out")
        uris.write_text(catalog, "".join(json.dumps({"video_id": f"video-{v:06d}", "uri": f"/m/video-{v:06d}.mp4"})
                                         + "\n" for v in range(args.videos)))
        where = "moto S3" if args.s3 else "local disk"
        print(f"{args.videos} videos x {args.langs} languages = {args.videos * args.langs} results, "
              f"{args.segments} lines each, on {where}")

        def job(label: str, *extra: str, kill_after: int | None = None) -> None:
            cmd = [sys.executable, __file__, "--child", "--catalog", catalog, "--out", out, "--langs",
                   str(args.langs), "--segments", str(args.segments), "--batch", str(args.batch), *extra]
            if kill_after is None:
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"{label} failed:\n{done.stderr[-3000:]}")
                figures = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"{label}: {json.dumps(figures)}")
                return
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            fs, root = uris.filesystem(uris.join(out, "_work", "_results"))
            mfs, mroot = uris.filesystem(uris.join(out, "manifest"))
            t0 = time.perf_counter()
            while proc.poll() is None:
                time.sleep(2)
                parts = [p for p in mfs.find(mroot) if "part-" in p] if mfs.exists(mroot) else []
                if len(parts) >= kill_after:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    left = len(fs.find(root)) if fs.exists(root) else 0
                    print(f"{label}: killed (SIGKILL) after {time.perf_counter() - t0:.1f} s with "
                          f"{len(parts)} manifest parts and {left} uncommitted markers")
                    return
            raise SystemExit(f"{label}: ended before it could be killed")

        job("1 fresh job")
        mfs, mroot = uris.filesystem(uris.join(out, "manifest"))
        parts = len(mfs.find(mroot))
        # The redo marks take a part per language per batch, as the results do; kill when half the new
        # results are in.
        per_job = -(-args.videos * args.langs // args.batch) * args.langs
        job("2 settings changed, every result redone", "--change", "--slow-s", "0.02",
            kill_after=parts + per_job + per_job // 2)
        job("3 submitted again after the kill", "--change")
        job("4 submitted again after it finished", "--change")
    finally:
        if moto:
            moto.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
