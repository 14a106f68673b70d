"""`raydub`: run a catalog, print the configuration, check a catalog."""
from __future__ import annotations

import argparse
import logging
import sys

from operators import languages, uri as uris
from operators.base import MissingDependency
from operators.catalog import CatalogError, load_catalog, parse_langs
from operators.config import Config, ConfigError, defaults_toml
from operators.lock import OutInUse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raydub", description="Batch video dubbing on Ray.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="dub a catalog into OUT (embedded local Ray unless run.ray_address is set)")
    r.add_argument("--catalog", required=True, help="catalog file (.parquet, .csv, .jsonl), local or s3://")
    r.add_argument("--out", required=True, help="output folder, local or s3://")
    r.add_argument("--langs", help="target languages for rows without target_langs, e.g. es,de")
    r.add_argument("--config", help="TOML config file overriding the defaults (see `raydub config`)")
    r.add_argument("--no-resume", action="store_true", help="redo pairs that are already ok in OUT")
    r.add_argument("--quiet", action="store_true", help="no progress display")

    s = sub.add_parser("submit", help="dub a catalog as a job on a running Ray cluster (what cluster/submit.sh "
                                      "does): print the job id, stream its log, exit with its status")
    s.add_argument("--catalog", required=True, help="catalog file as the cluster reads it: s3://, or a path on "
                                                    "the head")
    s.add_argument("--out", required=True, help="output folder as the cluster reads it: s3://, or a path on the head")
    s.add_argument("--langs", help="target languages for rows without target_langs, e.g. es,de")
    s.add_argument("--config", help="TOML config: a file under cluster/ (it ships with the job) or s3:// "
                                    "(default: cluster/cluster.toml)")
    s.add_argument("--address", help="the cluster's dashboard, e.g. http://head:8265 (default: $RAY_ADDRESS)")
    s.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    s.add_argument("--no-resume", action="store_true", help="redo pairs that are already ok in OUT")

    c = sub.add_parser("config", help="print the default configuration (TOML), or check a file")
    c.add_argument("--check", metavar="FILE", help="validate FILE and print the merged result")

    v = sub.add_parser("validate", help="check a catalog without running anything; print each pair's route")
    v.add_argument("--catalog", required=True)
    v.add_argument("--langs")
    v.add_argument("--config", help="TOML config file (its translate, asr and tts settings decide the routes)")

    g = sub.add_parser("languages", help="every language raydub can dub into, and how: ASR, MT and TTS routes, "
                                         "offline and production")
    g.add_argument("--source", default="en", help="source language of the routes (default: en)")
    g.add_argument("--config", help="TOML config file (its translate, asr and tts settings decide the routes)")
    g.add_argument("--offline", action="store_true", help="only the languages dubbed offline with no subtitles")

    q = sub.add_parser("report", help="quality report of OUT: summary and what needs review; an HTML file")
    q.add_argument("out", help="the output folder of a run, local or s3://")
    q.add_argument("--html", help="where to write the HTML report (default: OUT/report.html, or ./report.html "
                                  "for a remote OUT)")
    q.add_argument("--needs-review", action="store_true", help="only list the results that need review, "
                                                               "with reasons (no HTML)")
    q.add_argument("--top", type=_positive, default=50, metavar="N",
                   help="how many of the worst results to list, in the terminal and the HTML (default: 50)")
    return p


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {n}")
    return n


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "config":
            if args.check:
                import json

                from operators.provenance import Signing

                config = Config.load(args.check)
                Signing(config)             # a configured signing key must be able to sign (a test signature)
                print(json.dumps(config.model_dump(), indent=2))
            else:
                print(defaults_toml(), end="")
            return 0
        if args.command == "validate":
            config = Config.load(args.config)
            table = load_catalog(args.catalog, default_langs=parse_langs(args.langs))
            pairs = sum(len(x) for x in table.column("target_langs").to_pylist())
            print(f"{uris.redacted(args.catalog)}: ok, {table.num_rows} videos, {pairs} (video, language) pairs")
            _print_pair_routes(table.to_pylist(), config)
            return 0
        if args.command == "languages":
            _print_languages(Config.load(args.config), languages.normalize(args.source), args.offline)
            return 0
        if args.command == "report":
            return _report(args)
        if args.command == "submit":
            from pipelines.submit import submit

            return submit(args.catalog, args.out, args.langs, args.config, args.address, wait=not args.no_wait,
                          extra_args=["--no-resume"] if args.no_resume else [])
        return _run(args)
    except (CatalogError, ConfigError, MissingDependency, OutInUse) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _mt_label(route) -> str:
    if route.mt in ("direct", "pivot"):
        return f"{', '.join(route.mt_steps)} ({route.mt})"
    return route.mt


def _print_languages(config: Config, source: str, offline_only: bool) -> None:
    from operators.routes import RouteTable

    routes = RouteTable(config)
    rows = [r for r in routes.table(source) if r.offline or not offline_only]
    header = ("lang", "name", "MT (offline = production)", "ASR offline / production", "TTS offline / production",
              "non-commercial", "machine translation would need")
    lines = [header]
    for r in rows:
        lines.append((r.lang, r.name, _mt_label(r), f"{r.asr_offline or 'none'} / {r.asr_production or 'none'}",
                      f"{r.tts_offline or 'none'} / {r.tts_production or 'none'}",
                      ", ".join(r.non_commercial) or "none", r.mt_hint))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    print(f"Dubbing from {source}: {sum(r.offline for r in rows)} languages offline (this machine, no network, "
          f"no subtitles needed), {len(rows)} listed.")
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)) + "  " + line[-1])
    unspoken = routes.unspoken(source)
    if unspoken and not offline_only:
        print("\nTranslated to, but nothing here speaks them (no espeak-ng or Piper voice): "
              + "; ".join(f"{r.lang} ({', '.join(r.mt_steps)})" for r in unspoken))
    print("\nMT: the catalog's subtitles_uri_<lang> always come first; a pivot chains two Apertium pairs and is "
          "flagged for review (review.flag_pivoted). ASR none: the dub is not transcribed back (no WER/CER). "
          "Piper voices other than en_US-joe download from rhasspy/piper-voices: each voice's licence is in its "
          "MODEL_CARD.")


def _print_pair_routes(rows: list[dict], config: Config) -> None:
    """Per catalog row and language, the route a run will take."""
    from operators.routes import RouteTable

    routes = RouteTable(config)
    for row in rows:
        source = row.get("source_lang")
        where = f"source {source}" if source else "source detected at run time; routes shown from en"
        print(f"row {row['catalog_row']} {row['video_id']} ({where}):")
        subtitled = {t["lang"] for t in row.get("translations") or []}
        for lang in row["target_langs"]:
            r = routes.route(lang, source or "en")
            if lang in subtitled:
                mt = f"subtitles_uri_{lang}"
            elif r.mt == "subtitles only":
                mt = f"NO ROUTE, will fail: add subtitles_uri_{lang}; {r.mt_hint}"
            else:
                mt = _mt_label(r)
            print(f"  {lang}: MT {mt}; TTS {r.tts_offline or 'none'}; back-transcription {r.asr_offline or 'none'}")


def _report(args) -> int:
    from pipelines.report import print_report, write_html

    try:
        print_report(args.out, needs_review_only=args.needs_review, top=args.top)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.needs_review:
        path = args.html or (uris.join(args.out, "report.html") if uris.is_local(args.out) else "report.html")
        write_html(args.out, path, top=args.top)
        print(f"report: {path}")
    return 0


def _run(args) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipelines.localize import run

    config = Config.load(args.config)
    if args.no_resume:
        config = config.with_overrides(run={"resume": False})
    langs = parse_langs(args.langs)
    console = Console(stderr=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not sys.stderr.isatty():
        # A job log (`ray job submit`, a pipe): the counts every run.log_every_s, with the time, and the
        # resume plan and exactly-once proof (even with --quiet, which hides the per-result lines).
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s raydub: %(message)s", "%Y-%m-%d %H:%M:%S"))
        status = logging.getLogger("raydub.progress")
        status.setLevel(logging.INFO)
        status.addHandler(handler)
        status.propagate = False
    show = config.run.progress and not args.quiet
    progress = Progress(TextColumn("[bold]dubbing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.description}"), console=console, disable=not show)

    task = None

    def on_result(row: dict, done: int, total: int) -> None:
        nonlocal task
        if task is None:
            task = progress.add_task("", total=total)
        mark = {"ok": "[green]ok", "failed": "[red]failed", "skipped": "[yellow]skipped"}[row["status"]]
        why = f" ({row['error_stage']}: {row['error']})" if row["status"] != "ok" else ""
        # Ids and errors are text, never Rich markup (an error may hold "[...]").
        progress.console.print(f"{mark}[/] " + escape(f"{row['video_id']} -> {row['lang']}{why}"))
        progress.update(task, completed=done, description=escape(f"{row['video_id']} {row['lang']}"))

    shard_task = None

    def on_shard(row: dict, done: int, total: int | None) -> None:
        # A long video shows movement while its shards are analysed, long before its first result.
        nonlocal shard_task
        if shard_task is None:
            shard_task = progress.add_task("", total=None)
        shard = row["shards"][row["shard_index"]]
        progress.update(shard_task, completed=done, description=escape(
            f"analysed {row['video_id']} shard {row['shard_index'] + 1}/{row['num_shards']} "
            f"({shard['start_s']:.0f}-{shard['end_s']:.0f} s)"))

    with progress:
        summary = run(args.catalog, args.out, langs=langs, config=config, on_result=on_result, on_shard=on_shard)
    _print_summary(summary, console)
    return 0


def _print_summary(summary, console) -> None:
    from rich.table import Table

    table = Table(title=f"raydub: {summary.total} results in {summary.wall_s:.1f} s")
    for col in ("language", "ok", "failed", "skipped"):
        table.add_column(col, justify="right" if col != "language" else "left")
    for lang, c in sorted(summary.counts.items()):
        table.add_row(lang, str(c["ok"]), str(c["failed"]), str(c["skipped"]))
    console.print(table)
    if summary.resumed:
        console.print(f"{summary.resumed} result(s) were already done in OUT and kept (resume).")
    for r in summary.failures:
        console.print(f"  {r['status']}: {r['video_id']} -> {r['lang']} at {r['error_stage']}: {r['error']}",
                      markup=False, highlight=False)
    not_ok = sum(c["failed"] + c["skipped"] for c in summary.counts.values())
    if not_ok > len(summary.failures):
        console.print(f"  ... and {not_ok - len(summary.failures)} more: `raydub report {summary.out_dir} "
                      f"--needs-review` lists them all")
    console.print(f"videos:   {summary.out_dir}/videos/<video_id>/<video_id>.<lang>.mp4 or .mov (.wav, .srt, .vtt)")
    console.print(f"manifest: {summary.manifest_uri} (Parquet, partitioned by lang)")


if __name__ == "__main__":
    sys.exit(main())
