"""The quality report at catalog scale: how long `raydub report` takes, and how much memory, on 300,000 results.

    python bench/report_scale.py [--videos 10000] [--langs 30] [--parts-per-lang 2] [--row-group-rows 200]
                                 [--top 50] [--out DIR [--reuse]]

Writes a manifest of videos x languages results (random but plausible scores, reviewed with the default
`[review]` settings; a few lines of a few words each per result) as Parquet parts straight with pyarrow,
then runs the text report and the HTML report (the worst `--top`; no frame strips: there is no media),
each in a process of its own so that each one's peak RSS is its own. Prints measured figures only.

A few dozen large parts keep the generation fast, but raydub never writes a part of more than
`run.manifest_batch_rows` (200) results: each row group of `--row-group-rows` rows stands in for one such
part, which a read of a few keys skips on its video_id statistics. `--row-group-rows 0` writes each part as
one row group (a manifest whose parts were merged whole, which raydub does not do).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LANGS = ("es", "de", "fr", "pt", "it", "ja", "ko", "zh", "ru", "ar", "hi", "tr", "pl", "nl", "sv", "da", "fi",
         "nb", "cs", "el", "he", "hu", "id", "ms", "ro", "th", "uk", "vi", "bg", "ca")
LINES_PER_RESULT = 4
WORDS_PER_LINE = 6
VOCABULARY = ("the", "scene", "opens", "on", "a", "quiet", "street", "where", "nobody", "has", "seen", "her",
              "since", "morning", "light", "falls", "across", "window", "and", "then", "everything", "changes")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024          # KiB on Linux


def _scores(rng, n: int) -> dict:
    """Plausible result scores: most results fine, a tail over the default thresholds."""
    import numpy as np

    status = rng.choice(np.array(["ok", "failed", "skipped"], dtype=object), n, p=[0.97, 0.02, 0.01])
    rendered = (status == "ok") & (rng.random(n) < 0.6)
    source_sync = np.clip(rng.normal(0.85, 0.06, n), 0.3, 1.0)
    wer = np.clip(rng.beta(1.5, 12, n), 0, 1)

    def lips(values):                     # lip scores exist only where the lips were re-rendered
        return [float(v) if r else None for v, r in zip(values, rendered)]

    scores = {
        "wer": wer.tolist(),
        "cer": (wer * rng.uniform(0.3, 0.7, n)).tolist(),
        "voice_cloned": (rng.random(n) < 0.7).tolist(),
        "speaker_similarity": np.clip(rng.normal(0.84, 0.04, n), 0, 1).tolist(),
        "loudness_diff_lu": rng.normal(0, 0.7, n).tolist(),
        "true_peak_dbfs": np.minimum(rng.normal(-2.5, 0.8, n), 0).tolist(),
        "speech_rate_max": (1 + rng.gamma(2, 0.06, n)).tolist(),
        "share_at_speed_cap": np.clip(rng.beta(1, 80, n), 0, 1).tolist(),
        "lines_over_cap": rng.poisson(0.03, n).tolist(),
        "cut_s_total": np.where(rng.random(n) < 0.01, rng.gamma(2, 0.3, n), 0.0).tolist(),
        "lines_cut": rng.poisson(0.02, n).tolist(),
        "face_coverage": np.where(rendered, rng.uniform(0.5, 1, n), rng.uniform(0, 0.45, n)).tolist(),
        "segments_dubbed": [LINES_PER_RESULT] * n,
        "lip_status": ["rendered" if r else ("unchanged" if s == "ok" else None) for r, s in zip(rendered, status)],
        "lip_reason": [None if r else "no face on screen" for r in rendered],
        "share_rerendered": lips(rng.uniform(0.2, 0.9, n)),
        "sync_offset_frames": [int(v) if r else None for v, r in zip(np.rint(rng.normal(0, 0.8, n)), rendered)],
        "sync_confidence": lips(np.clip(source_sync * rng.normal(0.95, 0.06, n), 0, 1)),
        "source_sync_confidence": lips(source_sync),
        "mouth_change_ratio": lips(rng.lognormal(-0.3, 0.25, n)),
        "visual_ssim_min": lips(np.clip(rng.beta(30, 3, n), 0, 1)),
        "visual_seam_max": lips(rng.gamma(2, 0.6, n)),
        "visual_flicker_max": lips(rng.gamma(2, 1.2, n)),
        "mouth_shape_error_max": lips(rng.gamma(2, 0.018, n)),
    }
    ok = status == "ok"                   # a failed or skipped result has no scores
    return {"status": status.tolist(), "error_stage": [None if s else "transcribe" for s in ok],
            "error": [None if s else "ASRError: no speech found" for s in ok],
            **{k: [v if s else None for v, s in zip(values, ok)] for k, values in scores.items()}}


def _lines(rng, video_ids, result_ids, n: int):
    """Each result's lines, nested (the manifest's `segments`, words included) and flat (the segments table)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from operators.schema import SEGMENT, SEGMENT_ROW, WORD

    m, w = n * LINES_PER_RESULT, n * LINES_PER_RESULT * WORDS_PER_LINE
    vocabulary = pa.array(VOCABULARY)
    word_start = np.repeat(np.arange(m) * 3.0, WORDS_PER_LINE) + np.tile(np.arange(WORDS_PER_LINE) * 0.4, m)
    words = pa.StructArray.from_arrays(
        [pa.array(word_start), pa.array(word_start + 0.35), vocabulary.take(rng.integers(0, len(vocabulary), w)),
         pa.array(rng.uniform(0.5, 1, w))], fields=list(WORD))
    word_offsets = pa.array(np.arange(0, w + 1, WORDS_PER_LINE, dtype=np.int32))
    owner = pa.array(np.repeat(np.arange(n), LINES_PER_RESULT))
    start = np.arange(m) * 3.0 % (3.0 * LINES_PER_RESULT) + 0.5
    text = pc.binary_join_element_wise(*(vocabulary.take(rng.integers(0, len(vocabulary), m)) for _ in range(5)),
                                       " ")
    values = {
        "segment_id": pc.binary_join_element_wise(pa.array(video_ids).take(owner),
                                                  pc.cast(pa.array(np.round(start * 1000).astype(np.int64)),
                                                          pa.string()), "@"),
        "start_s": pa.array(start), "end_s": pa.array(start + 2.4), "source_text": text,
        "words": pa.ListArray.from_arrays(word_offsets, words), "target_text": pc.utf8_upper(text),
        "fit_uri": pc.binary_join_element_wise("/work/", pa.array(video_ids).take(owner), ".fit.wav", ""),
        "speech_rate": pa.array(1 + rng.gamma(2, 0.05, m)), "back_text": text,
        "wer": pa.array(np.clip(rng.beta(1.5, 10, m), 0, 1)),
        "speaker_similarity": pa.array(np.clip(rng.normal(0.76, 0.08, m), 0, 1)),
        "loudness_diff_lu": pa.array(rng.normal(0, 1, m)),
        "sync_confidence": pa.array(np.clip(rng.normal(0.75, 0.1, m), 0, 1)),
        "source_sync_confidence": pa.array(np.clip(rng.normal(0.85, 0.06, m), 0, 1)),
    }
    lines = pa.StructArray.from_arrays([values.get(f.name, pa.nulls(m, f.type)) for f in SEGMENT], fields=list(SEGMENT))
    nested = pa.ListArray.from_arrays(pa.array(np.arange(0, m + 1, LINES_PER_RESULT, dtype=np.int32)), lines)
    keys = {"result_id": pa.array(result_ids).take(owner), "video_id": pa.array(video_ids).take(owner)}
    flat = pa.table([keys[f.name] if f.name in keys else lines.field(f.name) for f in SEGMENT_ROW if f.name != "lang"],
                    schema=pa.schema([f for f in SEGMENT_ROW if f.name != "lang"]))
    return nested, flat


def generate(out: str, videos: int, langs: tuple[str, ...], parts_per_lang: int, row_group_rows: int,
             seed: int = 0) -> int:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from operators import manifest, review
    from operators.config import Config
    from operators.schema import MANIFEST_VERSION, RESULT, result_id

    config = Config()
    rng = np.random.default_rng(seed)
    run_id = manifest.new_run_id()
    schema = pa.schema([f for f in RESULT if f.name != "lang"])
    seq = 0
    for lang in langs:
        for chunk in np.array_split(np.arange(videos), parts_per_lang):
            n = len(chunk)
            video_ids = [f"video-{v:06d}" for v in chunk]
            result_ids = [result_id(v, lang) for v in video_ids]
            columns = {"video_id": video_ids, "uri": [f"/media/{v}.mp4" for v in video_ids],
                       "result_id": result_ids, "manifest_version": [MANIFEST_VERSION] * n,
                       **_scores(rng, n)}
            rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
            reasons = [review.assess(r, config) for r in rows]
            columns.update(review_reasons=reasons, needs_review=[bool(r) for r in reasons])
            nested, flat = _lines(rng, video_ids, result_ids, n)
            table = pa.table([nested if f.name == "segments" else
                              pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type)
                              for f in schema], schema=schema)
            name = manifest.part_name(run_id, seq)
            for folder, part in (("segments", flat), ("manifest", table)):      # the manifest part last: the commit
                os.makedirs(os.path.join(out, folder, f"lang={lang}"), exist_ok=True)
                pq.write_table(part, os.path.join(out, folder, f"lang={lang}", name),
                               row_group_size=row_group_rows or None)
            seq += 1
    return seq


def measure(kind: str, out: str, top: int) -> dict:
    """One report, timed, in this process (started for it)."""
    from rich.console import Console

    from pipelines import report

    rss_before = _peak_rss_mib()
    started, cpu_started = time.perf_counter(), time.process_time()
    if kind == "text":
        printed = io.StringIO()
        report.print_report(out, console=Console(file=printed, width=120), top=top)
        size = len(printed.getvalue())
    else:
        path = os.path.join(out, "report.html")
        report.write_html(out, path, max_strips=0, top=top)
        size = os.path.getsize(path)
    return {"wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu_started,
            "peak_rss_mib": _peak_rss_mib(), "rss_after_imports_mib": rss_before, "output_bytes": size}


def _child(*args: str) -> str:
    # Each step in a fresh process: a child's peak RSS starts from its parent's RSS at fork, so this
    # parent stays small (no pyarrow) and the generation's memory is not counted in a report's.
    return subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True).stdout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=10_000)
    p.add_argument("--langs", type=int, default=30)
    p.add_argument("--parts-per-lang", type=int, default=2)
    p.add_argument("--row-group-rows", type=int, default=200)
    p.add_argument("--top", type=int, default=50)
    p.add_argument("--out", help="where to write the manifest (default: a new folder under /tmp)")
    p.add_argument("--reuse", action="store_true", help="measure the manifest this script wrote to --out before")
    p.add_argument("--step", choices=("generate", "text", "html"), help=argparse.SUPPRESS)   # in a child process
    args = p.parse_args()
    if args.step == "generate":
        started = time.perf_counter()
        parts = generate(args.out, args.videos, LANGS[:args.langs], args.parts_per_lang, args.row_group_rows)
        print(json.dumps({"parts": parts, "wall_s": time.perf_counter() - started}))
        return 0
    if args.step:
        print(json.dumps(measure(args.step, args.out, args.top)))
        return 0

    if args.reuse and not args.out:
        p.error("--reuse needs --out")
    out = args.out or tempfile.mkdtemp(prefix="report-scale-")
    common = ["--out", out, "--top", str(args.top)]
    if not args.reuse:
        made = json.loads(_child("--step", "generate", "--videos", str(args.videos), "--langs", str(args.langs),
                                 "--parts-per-lang", str(args.parts_per_lang), "--row-group-rows",
                                 str(args.row_group_rows), *common))
        on_disk = sum(f.stat().st_size for f in Path(out).rglob("*.parquet"))
        n_langs = min(args.langs, len(LANGS))
        groups = f"row groups of {args.row_group_rows} rows" if args.row_group_rows else "one row group a part"
        print(f"wrote {args.videos * n_langs} results ({args.videos} videos x {n_langs} languages, "
              f"{LINES_PER_RESULT} lines each) as {made['parts']} manifest parts and {made['parts']} segments "
              f"parts ({groups}), {on_disk / 2**20:.0f} MiB, in {made['wall_s']:.1f} s: {out}")
    for step, label in (("text", "raydub report (text)"), ("html", "report.html")):
        m = json.loads(_child("--step", step, *common).strip().splitlines()[-1])
        print(f"{label}, top {args.top}: {m['wall_s']:.2f} s ({m['cpu_s']:.2f} s CPU), peak RSS "
              f"{m['peak_rss_mib']:.0f} MiB ({m['rss_after_imports_mib']:.0f} MiB after imports), "
              f"{m['output_bytes'] / 1024:.0f} KiB written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
