"""Throughput of a multi-video catalog: per stage, end to end for 1, 2 and 4 languages, and on 1 and 2 cores.

    python bench/throughput.py [--catalog catalogs/demo/build/catalog.jsonl] [--langs es,de,pt,ca]
                               [--out bench-throughput] [--skip-scaling]

Every run is a fresh job in its own process (the real driver and an embedded Ray). Per stage it prints
how many items the stage processed (rows: videos, shards or results) and their summed wall time inside
the operators, so that the language-independent stages can be seen to run once per video whatever the
number of languages. Scaling: the catalog in its first language, with the job (and so every Ray process)
pinned to 1 core and then to 2, and the ratio of the wall times. Prints measured figures only.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(args) -> int:
    if args.cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
    from operators.catalog import parse_langs
    from operators.config import Config
    from pipelines.localize import run

    config = Config().with_overrides(run={"resume": False, "progress": False, "log_every_s": 0})
    started = time.perf_counter()
    summary = run(args.catalog, args.out, langs=parse_langs(args.langs), config=config)
    wall = time.perf_counter() - started
    stages: dict[str, dict] = defaultdict(lambda: {"items": 0, "wall_s": 0.0})
    video_s: dict[str, float] = {}
    for r in summary.results:
        if r["status"] != "ok":
            continue
        first = r["video_id"] not in video_s          # a per-video stage's timings ride on every language's row
        video_s[r["video_id"]] = r["duration_s"]
        for t in r["timings"] or []:                  # one entry per item: a shard stage has one per shard
            if first or t["stage"] not in PER_VIDEO:
                stages[t["stage"]]["items"] += 1
                stages[t["stage"]]["wall_s"] += t["wall_s"]
    out = {"wall_s": wall, "video_s": sum(video_s.values()), "results": summary.total,
           "ok": sum(c["ok"] for c in summary.counts.values()), "cores": len(os.sched_getaffinity(0)),
           "stages": dict(stages)}
    print(json.dumps(out))
    return 0


def _per_video() -> set[str]:
    from pipelines.localize import ANALYZE

    return {cls.name for cls in ANALYZE}


PER_VIDEO: set[str] = set()


def _job(args, langs: str, out: str, cores: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--catalog", args.catalog, "--langs", langs, "--out", out]
    if cores:
        cmd += ["--cores", str(cores)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"job {langs} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    global PER_VIDEO
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--catalog", default="catalogs/demo/build/catalog.jsonl")
    p.add_argument("--langs", default="es,de,pt,ca", help="four target languages; runs use the first 1, 2, 4")
    p.add_argument("--out", default="bench-throughput")
    p.add_argument("--skip-scaling", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cores", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    PER_VIDEO = _per_video()
    if args.child:
        return child(args)

    langs = args.langs.split(",")
    print(f"machine: {os.cpu_count()} cores; catalog {args.catalog}")
    # Rows that name their own target_langs would ignore --langs: every run gets the catalog without them.
    rows = [json.loads(line) for line in Path(args.catalog).read_text().splitlines() if line.strip()]
    base = Path(args.catalog).resolve().parent
    Path(args.out).mkdir(parents=True, exist_ok=True)
    args.catalog = str(Path(args.out).resolve() / "catalog.jsonl")
    Path(args.catalog).write_text("".join(
        json.dumps({**{k: v for k, v in r.items() if k != "target_langs"},
                    **{k: str(base / v) for k, v in r.items() if k == "uri" or k.endswith("subtitles_uri")
                       or k.startswith("subtitles_uri_")}}) + "\n" for r in rows))
    runs = {}
    for n in (1, 2, 4):
        fig = runs[n] = _job(args, ",".join(langs[:n]), f"{args.out}/{n}-langs")
        print(f"\n== {n} language(s) ({','.join(langs[:n])}): {fig['ok']} of {fig['results']} results ok, "
              f"{fig['video_s']:.1f} s of video; end to end {fig['wall_s']:.1f} s, "
              f"{fig['wall_s'] / (fig['video_s'] * n):.2f} s per second of video per language "
              f"(includes Ray start and model loading)")
        print(f"{'stage':<14}{'scope':<11}{'items':>6}{'wall s':>9}{'items/s':>9}{'x real time':>12}")
        for stage, s in fig["stages"].items():
            scope = "per video" if stage in PER_VIDEO else "per lang"
            rate = s["items"] / s["wall_s"] if s["wall_s"] else float("inf")
            print(f"{stage:<14}{scope:<11}{s['items']:>6}{s['wall_s']:>9.2f}{rate:>9.2f}"
                  f"{s['wall_s'] / fig['video_s']:>12.3f}")
    analysis = {n: sum(s["wall_s"] for k, s in runs[n]["stages"].items() if k in PER_VIDEO) for n in runs}
    print("\nlanguage-independent stages, summed wall s (once per video, whatever the languages): "
          + ", ".join(f"{n} lang: {analysis[n]:.1f} s" for n in runs))
    if not args.skip_scaling:
        one = _job(args, langs[0], f"{args.out}/1-core", cores=1)
        two = _job(args, langs[0], f"{args.out}/2-cores", cores=2)
        print(f"\nscaling ({langs[0]}): 1 core {one['wall_s']:.1f} s, 2 cores {two['wall_s']:.1f} s: "
              f"{one['wall_s'] / two['wall_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
