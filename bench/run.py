"""Benchmark: dub a catalog and print wall time per stage and the real-time factor.

    .venv/bin/python bench/run.py [--catalog catalogs/demo/build/catalog.jsonl] [--langs es,de] [--out bench-out]

Always a fresh run (no resume). Stage times are measured inside the operators
(per row); the real-time factor is processing seconds per second of source
video. Language-independent stages (probe, shots, transcribe) run once per
video and are counted once; per-language stages are counted per language.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from operators.catalog import parse_langs  # noqa: E402
from operators.config import Config  # noqa: E402
from pipelines.localize import ANALYZE, run  # noqa: E402

PER_VIDEO = {cls.name for cls in ANALYZE}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--catalog", default="catalogs/demo/build/catalog.jsonl")
    p.add_argument("--langs", default="es,de")
    p.add_argument("--out", default="bench-out")
    p.add_argument("--config")
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    config = Config.load(args.config).with_overrides(run={"resume": False})
    started = time.perf_counter()
    summary = run(args.catalog, args.out, langs=parse_langs(args.langs), config=config)
    wall = time.perf_counter() - started

    ok = [r for r in summary.results if r["status"] == "ok"]
    video_s = {r["video_id"]: r["duration_s"] for r in ok}
    total_video_s = sum(video_s.values())
    langs = sorted({r["lang"] for r in ok})
    per_video = defaultdict(dict)          # stage -> video -> s (counted once per video)
    per_lang = defaultdict(lambda: defaultdict(float))   # lang -> stage -> s
    for r in ok:
        for t in r["timings"]:
            if t["stage"] in PER_VIDEO:
                per_video[t["stage"]][r["video_id"]] = t["wall_s"]
            else:
                per_lang[r["lang"]][t["stage"]] += t["wall_s"]

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {len(video_s)} videos ok, "
          f"{total_video_s:.1f} s of video, languages {', '.join(langs)}")
    print(f"results: {len(summary.results)} ({len(ok)} ok); end-to-end wall {wall:.1f} s "
          f"(includes Ray start and model loading)")
    print(f"\n{'stage':<14}{'scope':<14}{'wall s':>9}{'s per video-s':>15}")
    for stage, by_video in per_video.items():
        s = sum(by_video.values())
        print(f"{stage:<14}{'per video':<14}{s:>9.2f}{s / total_video_s:>15.3f}")
    for lang in langs:
        for stage, s in per_lang[lang].items():
            print(f"{stage:<14}{'lang ' + lang:<14}{s:>9.2f}{s / total_video_s:>15.3f}")
    analysis = sum(sum(v.values()) for v in per_video.values())
    print("\nreal-time factor (processing s per s of video):")
    for lang in langs:
        lang_s = sum(per_lang[lang].values())
        print(f"  {lang}: {lang_s / total_video_s:.3f} for the language's own stages, "
              f"{(lang_s + analysis / len(langs)) / total_video_s:.3f} with its share of the analysis")
    print(f"  end to end: {wall / (total_video_s * len(langs)):.3f} wall s per video-s per language")
    return 0


if __name__ == "__main__":
    sys.exit(main())
