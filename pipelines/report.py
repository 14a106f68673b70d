"""The quality report of an OUT folder (local or s3://): `raydub report OUT [--html FILE] [--needs-review]`.

Reads the manifest only. Prints a summary per language and what needs
review; writes one self-contained HTML file (plots embedded as PNG) with
the summary, each score's distribution per language, the results that
need review (worst first, with reasons) and every line of those results.
"""
from __future__ import annotations

import base64
import html
import io
from collections import Counter

from operators import manifest

# Scores plotted per language: column, label, and whether higher is worse.
SCORES = (
    ("wer", "back-transcription WER", True),
    ("cer", "back-transcription CER", True),
    ("sync_confidence", "lip-sync confidence", False),
    ("sync_offset_frames", "lip-sync offset (frames)", True),
    ("loudness_diff_lu", "dialogue loudness vs source (LU)", True),
    ("speech_rate_max", "largest speech-rate change", True),
    ("share_rerendered", "share of frames re-rendered", False),
)
SEGMENT_COLUMNS = ("start_s", "end_s", "source_text", "target_text", "speech_rate", "overflow_s", "back_text",
                   "wer", "speaker_track_id", "sync_offset_frames", "sync_confidence", "lip_reason")


def summary(rows: list[dict]) -> dict[str, Counter]:
    """Per language: ok, failed, skipped, needs review."""
    out: dict[str, Counter] = {}
    for r in rows:
        c = out.setdefault(r["lang"], Counter())
        c[r["status"]] += 1
        c["needs review"] += bool(r.get("needs_review"))
    return out


def worst_first(rows: list[dict]) -> list[dict]:
    """Results that need review: failed and skipped first, then by number of reasons."""
    flagged = [r for r in rows if r.get("needs_review")]
    rank = {"failed": 0, "skipped": 1, "ok": 2}
    return sorted(flagged, key=lambda r: (rank.get(r["status"], 3), -len(r.get("review_reasons") or []),
                                          r["video_id"], r["lang"]))


def print_report(out_dir: str, needs_review_only: bool = False, console=None) -> list[dict]:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    rows = manifest.read_manifest(out_dir)
    if not rows:
        raise FileNotFoundError(f"no manifest in {out_dir} (expected {out_dir}/manifest/lang=*/)")
    if not needs_review_only:
        table = Table(title=f"{out_dir}: {len(rows)} results")
        for col in ("language", "ok", "failed", "skipped", "needs review"):
            table.add_column(col, justify="right" if col != "language" else "left")
        for lang, c in sorted(summary(rows).items()):
            table.add_row(lang, *(str(c[k]) for k in ("ok", "failed", "skipped", "needs review")))
        console.print(table)
    flagged = worst_first(rows)
    console.print(f"needs review: {len(flagged)} of {len(rows)}")
    for r in flagged:
        console.print(f"  {r['video_id']} -> {r['lang']} ({r['status']})", highlight=False)
        for reason in r.get("review_reasons") or []:
            console.print(f"      - {reason}", highlight=False, markup=False)
    return flagged


def _plot_png(rows: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = sorted({r["lang"] for r in rows})
    fig, axes = plt.subplots(1, len(SCORES), figsize=(3.2 * len(SCORES), 3.0))
    for ax, (column, label, _) in zip(axes, SCORES):
        for i, lang in enumerate(langs):
            values = [r[column] for r in rows if r["lang"] == lang and r["status"] == "ok"
                      and r.get(column) is not None]
            ax.scatter([i] * len(values), values, alpha=0.7)
        ax.set_xticks(range(len(langs)), langs)
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    return html.escape(str(value))


def write_html(out_dir: str, path: str) -> None:
    rows = manifest.read_manifest(out_dir)
    if not rows:
        raise FileNotFoundError(f"no manifest in {out_dir}")
    parts = [f"<!doctype html><meta charset='utf-8'><title>raydub report: {html.escape(out_dir)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top}"
             ".bad{color:#b00}</style>",
             f"<h1>raydub quality report</h1><p>{html.escape(out_dir)}: {len(rows)} results "
             f"(manifest version {_cell(rows[0].get('manifest_version'))})</p>",
             "<h2 id='summary'>Summary per language</h2><table><tr><th>language</th><th>ok</th><th>failed</th>"
             "<th>skipped</th><th>needs review</th></tr>"]
    for lang, c in sorted(summary(rows).items()):
        parts.append(f"<tr><td>{lang}</td>" + "".join(f"<td>{c[k]}</td>" for k in
                                                       ("ok", "failed", "skipped", "needs review")) + "</tr>")
    parts.append("</table>")
    parts.append("<h2 id='scores'>Scores per language</h2><p>One dot per ok result. Thresholds are in the "
                 "config's [review] section.</p>")
    parts.append(f"<img alt='score distributions' src='data:image/png;base64,{_plot_png(rows)}'>")
    flagged = worst_first(rows)
    parts.append(f"<h2 id='needs-review'>Needs review ({len(flagged)})</h2><table><tr><th>video</th>"
                 "<th>language</th><th>status</th><th>reasons</th></tr>")
    for r in flagged:
        reasons = "<br>".join(html.escape(x) for x in r.get("review_reasons") or [])
        parts.append(f"<tr><td>{html.escape(r['video_id'])}</td><td>{r['lang']}</td><td>{r['status']}</td>"
                     f"<td class='bad'>{reasons}</td></tr>")
    parts.append("</table><h2 id='lines'>Lines of the results that need review</h2>")
    for r in flagged:
        segments = r.get("segments") or []
        if not segments:
            continue
        parts.append(f"<h3>{html.escape(r['video_id'])} &rarr; {r['lang']}</h3><table><tr>"
                     + "".join(f"<th>{c}</th>" for c in SEGMENT_COLUMNS) + "</tr>")
        for s in segments:
            parts.append("<tr>" + "".join(f"<td>{_cell(s.get(c))}</td>" for c in SEGMENT_COLUMNS) + "</tr>")
        parts.append("</table>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
