"""The quality report of an OUT folder (local or s3://): `raydub report OUT [--html FILE] [--needs-review] [--top N]`.

Built for a catalog's worth of results (300,000 and more). The counts, the
reasons and the score distributions come from the manifest's scalar columns
(`results_table`: scores, status and the reasons, never the lines), computed
with pyarrow; the lists show the worst N results (`top`), chosen from those
columns, and only those N results are read whole (`whole_rows`: their lines,
for the line tables and the frame strips).

Prints a summary per language and what needs review; writes one
self-contained HTML file (pictures embedded as PNG) with the summary, what
the flags are about, each score's distribution per language, the worst
results that need review (with reasons), the key scores of the worst
results, every line of those that need review, and source-vs-dub frames
around each lip-synced result's worst-synced line.
`notebooks/quality_report.ipynb` shows the same with these functions.
"""
from __future__ import annotations

import base64
import html
import io
import re
from collections import Counter
from functools import reduce

import pyarrow as pa
import pyarrow.compute as pc

from operators import manifest
from operators.lip_model import line_span_s

# The columns behind every result's row of the tables (`flags` is made from `review_reasons`).
RESULT_COLUMNS = ("video_id", "lang", "status", "needs_review", "flags", "wer", "cer", "speaker_similarity",
                  "sync_offset_frames", "sync_confidence", "source_sync_confidence", "mouth_change_ratio",
                  "visual_ssim_min", "loudness_diff_lu", "speech_rate_max", "share_at_speed_cap", "lines_over_cap",
                  "cut_s_total", "face_coverage", "share_rerendered")

# What the report reads of every result: scalars and the few reasons, never the lines (`segments`, each
# with its words: hundreds of KB a result), which only the N results shown are read with (`whole_rows`).
SCALAR_COLUMNS = tuple(dict.fromkeys([
    *(c for c in RESULT_COLUMNS if c != "flags"), "manifest_version", "review_reasons", "lip_status",
    "voice_cloned", "segments_dubbed", "visual_seam_max", "visual_flicker_max", "mouth_shape_error_max"]))

STATUS_RANK = ("failed", "skipped", "ok")      # what needs review first: failed, then skipped, then the rest
DOTS_MAX = 200                                 # a language with more ok results than this is plotted as a histogram


def results_table(out_dir: str) -> pa.Table:
    """Every result of the manifest, its SCALAR_COLUMNS only: what the counts, rankings and plots read."""
    return manifest.scan(out_dir, SCALAR_COLUMNS)


def _sync_ratio(results: pa.Table) -> pa.ChunkedArray:
    source = results["source_sync_confidence"]
    return pc.divide(results["sync_confidence"], pc.if_else(pc.equal(source, 0.0), pa.scalar(None, pa.float64()),
                                                            source))


def scores() -> tuple[tuple, ...]:
    """Scores plotted per language: (label, its values in a results table, threshold lines at the [review]
    defaults)."""
    from operators.config import ReviewConfig

    review = ReviewConfig()

    def column(name: str):
        return lambda results: results[name]

    return (
        ("back-transcription WER", column("wer"), (review.max_wer,)),
        ("back-transcription CER", column("cer"), (review.max_cer,)),
        ("voice similarity to the source speaker", column("speaker_similarity"), (review.min_speaker_similarity,)),
        ("lip-sync offset (frames)", column("sync_offset_frames"),
         (-review.max_sync_offset_frames, review.max_sync_offset_frames)),
        ("lip-sync confidence / the source's", _sync_ratio, (review.min_sync_confidence_ratio,)),
        ("mouth frame-to-frame change / the source's", column("mouth_change_ratio"), (review.max_mouth_change_ratio,)),
        ("face around the mouth, worst line (SSIM)", column("visual_ssim_min"), (review.min_visual_ssim,)),
        ("seam at the mouth box, worst line", column("visual_seam_max"), (review.max_visual_seam,)),
        ("flicker around the mouth, worst line", column("visual_flicker_max"), (review.max_visual_flicker,)),
        ("re-measured mouth off the asked shape", column("mouth_shape_error_max"), (review.max_mouth_shape_error,)),
        ("lines spoken past the speed-up cap", column("lines_over_cap"), ()),
        ("dialogue loudness - source (LU)", column("loudness_diff_lu"),
         (-review.max_loudness_diff_lu, review.max_loudness_diff_lu)),
        ("share of lines at the speed-up cap", column("share_at_speed_cap"), (review.max_share_sped_up_to_cap,)),
        ("share of frames re-rendered", column("share_rerendered"), ()),
    )


SEGMENT_COLUMNS = ("start_s", "end_s", "source_text", "target_text", "speech_rate", "lead_s", "overflow_s", "cut_s",
                   "back_text",
                   "wer", "speaker_similarity", "loudness_diff_lu", "speaker_track_id", "sync_offset_frames",
                   "sync_confidence", "mouth_change_ratio", "visual_ssim", "visual_seam", "visual_flicker",
                   "mouth_shape_error", "lip_reason")


# ------------------------------------------------------------------ counts, on the scalar columns

def _needs_review(results: pa.Table) -> pa.ChunkedArray:
    return pc.fill_null(results["needs_review"], False)


def _count(results: pa.Table, keys: list[str]) -> list[dict]:
    return results.group_by(keys).aggregate([([], "count_all")]).to_pylist()


def summary(results: pa.Table) -> dict[str, Counter]:
    """Per language: ok, failed, skipped, needs review."""
    out: dict[str, Counter] = {}
    for c in _count(results, ["lang", "status"]):
        out.setdefault(c["lang"], Counter({"needs review": 0}))[c["status"]] += c["count_all"]
    for c in _count(results.filter(_needs_review(results)), ["lang"]):
        out[c["lang"]]["needs review"] += c["count_all"]
    return out


def _reason_kinds(reasons: pa.Array) -> pa.Array:
    """The kind of each reason ("failed", "lip sync", ...): its text before the first ":" and before " at "."""
    def before(text: pa.Array, separator: str) -> pa.Array:
        return pc.list_element(pc.split_pattern(text, separator, max_splits=1), 0)

    return before(before(reasons, ":"), " at ")


def reason_counts(results: pa.Table) -> dict[str, Counter]:
    """Per kind of reason ("failed", "voice", "lip sync", ...): results flagged for it, per language."""
    reasons = results["review_reasons"].combine_chunks()
    kinds = pa.table({"row": pc.list_parent_indices(reasons), "kind": _reason_kinds(pc.list_flatten(reasons))})
    kinds = kinds.group_by(["row", "kind"]).aggregate([])       # a result with two lip-sync reasons counts once
    kinds = kinds.append_column("lang", results["lang"].take(kinds["row"]))
    out: dict[str, Counter] = {}
    for c in _count(kinds, ["kind", "lang"]):
        out.setdefault(c["kind"], Counter())[c["lang"]] += c["count_all"]
    return dict(sorted(out.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])))


def manifest_versions(results: pa.Table) -> str:
    return ", ".join(sorted(pc.unique(results["manifest_version"]).drop_null().to_pylist())) or "unknown"


def flags(row: dict) -> list[str]:
    """The kinds of reason a result is flagged for ("failed", "intelligibility", "lip sync", ...)."""
    kinds = [reason.split(":", 1)[0].split(" at ", 1)[0] for reason in row.get("review_reasons") or []]
    return list(dict.fromkeys(kinds))


# ------------------------------------------------------------------ the worst N, on the scalar columns

def _first(results: pa.Table, sort_keys: list[tuple[pa.Array | pa.ChunkedArray, str]], top: int | None) -> pa.Table:
    """The first `top` rows (all without it) in the order of `sort_keys`, (values, "ascending" or "descending")
    pairs, then of video and language, which no two results share: the same order every time.

    With `top`, a selection of k rows (select_k), not a sort of all of them."""
    keyed = results
    for n, (values, _) in enumerate(sort_keys):
        keyed = keyed.append_column(f"__key{n}", values)
    order = [(f"__key{n}", how) for n, (_, how) in enumerate(sort_keys)]
    order += [("video_id", "ascending"), ("lang", "ascending")]
    if top is None:
        return results.take(pc.sort_indices(keyed, sort_keys=order))
    return results.take(pc.select_k_unstable(keyed, k=min(top, results.num_rows), sort_keys=order))


def ranked(results: pa.Table, top: int | None = None) -> pa.Table:
    """Results worst first: those that need review first (failed, then skipped, then by number of reasons),
    then the rest by video and language; the first `top` of them."""
    rank = pc.fill_null(pc.index_in(results["status"], value_set=pa.array(STATUS_RANK)), len(STATUS_RANK))
    reasons = pc.fill_null(pc.list_value_length(results["review_reasons"]), 0)
    return _first(results, [(pc.cast(pc.invert(_needs_review(results)), pa.int8()), "ascending"),
                            (rank, "ascending"), (reasons, "descending")], top)


def worst_first(results: pa.Table, top: int | None = None) -> pa.Table:
    """Results that need review: failed and skipped first, then by number of reasons; the first `top`."""
    return ranked(results.filter(_needs_review(results)), top)


def _has_reason(results: pa.Table, prefix: str) -> pa.Array:
    """Per result: whether one of its reasons starts with `prefix`."""
    reasons = results["review_reasons"].combine_chunks()
    hit = pc.filter(pc.list_parent_indices(reasons), pc.fill_null(pc.starts_with(pc.list_flatten(reasons), prefix),
                                                                  False))
    return pc.is_in(pa.array(range(results.num_rows), pa.int64()), value_set=hit)


def lip_synced(results: pa.Table) -> pa.Table:
    """Ok results whose lips were re-rendered."""
    return results.filter(pc.and_(pc.equal(results["status"], "ok"), pc.equal(results["lip_status"], "rendered")))


def lip_synced_worst_first(results: pa.Table, top: int | None = None) -> pa.Table:
    """Ok results whose lips were re-rendered: those whose picture is flagged first (lowest SSIM around the
    mouth first), then the one whose lip sync falls furthest below the source's first; the first `top`."""
    rendered = lip_synced(results)
    picture = _has_reason(rendered, "picture:")
    ssim = pc.if_else(picture, pc.fill_null(rendered["visual_ssim_min"], 1.0), 0.0)
    below_source = pc.subtract(pc.fill_null(rendered["sync_confidence"], 0.0),
                               pc.fill_null(rendered["source_sync_confidence"], 0.0))
    return _first(rendered, [(pc.cast(pc.invert(picture), pa.int8()), "ascending"), (ssim, "ascending"),
                             (below_source, "ascending")], top)


def whole_rows(out_dir: str, keys: pa.Table) -> list[dict]:
    """The whole manifest rows (lines and all) of the results in `keys` (video_id, lang), in their order.

    Reads only these results: a filter per language, pushed down to the parts, so a part is read only for
    its own language's videos, and only where its video_id statistics say it can hold them.
    """
    wanted = list(zip(keys["video_id"].to_pylist(), keys["lang"].to_pylist()))
    if not wanted:
        return []
    videos: dict[str, list[str]] = {}
    for video, lang in wanted:
        videos.setdefault(lang, []).append(video)
    found = manifest.scan(out_dir, filter=reduce(pc.Expression.__or__, (
        (pc.field("lang") == lang) & pc.field("video_id").isin(ids) for lang, ids in videos.items())))
    by_key = {(r["video_id"], r["lang"]): r for r in found.to_pylist()}
    return [by_key[k] for k in wanted if k in by_key]


def _more(shown: int, total: int, what: str) -> str:
    return f"{total - shown} more {what} not shown (the worst {shown} are; --top N shows more)" if total > shown else ""


def print_report(out_dir: str, needs_review_only: bool = False, console=None, top: int = 50) -> list[dict]:
    """The summary and the worst `top` results that need review, with reasons. Returns those results
    (their scalar columns)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # Ids, codes and reasons come from the catalog: printed as text, never read as Rich markup.
    console = console or Console()
    results = results_table(out_dir)
    if not results.num_rows:
        raise FileNotFoundError(f"no manifest in {out_dir} (expected {out_dir}/manifest/lang=*/)")
    if not needs_review_only:
        table = Table(title=escape(f"{out_dir}: {results.num_rows} results"))
        for col in ("language", "ok", "failed", "skipped", "needs review"):
            table.add_column(col, justify="right" if col != "language" else "left")
        for lang, c in sorted(summary(results).items()):
            table.add_row(escape(lang), *(str(c[k]) for k in ("ok", "failed", "skipped", "needs review")))
        console.print(table)
    n_flagged = pc.sum(_needs_review(results)).as_py() or 0
    console.print(f"needs review: {n_flagged} of {results.num_rows}")
    kinds = reason_counts(results)
    if kinds:
        console.print("  flagged for: " + ", ".join(f"{kind} {sum(c.values())}" for kind, c in kinds.items()),
                      highlight=False, markup=False)
    flagged = worst_first(results, top).to_pylist()
    for r in flagged:
        console.print(f"  {r['video_id']} -> {r['lang']} ({r['status']})", highlight=False, markup=False)
        for reason in r.get("review_reasons") or []:
            console.print(f"      - {reason}", highlight=False, markup=False)
    if more := _more(len(flagged), n_flagged, "that need review"):
        console.print(f"  ... {more}", highlight=False, markup=False)
    return flagged


# ------------------------------------------------------------------ the score plot

def _lang_groups(ok: pa.Table, langs: list[str]):
    """Per language (in the order of `langs`), the positions of its rows in `ok`."""
    import numpy as np

    index = pc.index_in(ok["lang"], value_set=pa.array(langs, pa.string())).to_numpy(zero_copy_only=False)
    order = np.argsort(index, kind="stable")
    return np.split(order, np.cumsum(np.bincount(index, minlength=len(langs)))[:-1])


def score_figure(results: pa.Table):
    """Each score's distribution per language over the ok results: a dot per result, or for a language with
    more than DOTS_MAX of them a histogram (wider where more results are); dashed: the default review
    threshold. One artist per kind per panel, and the languages named under the bottom panels only: a
    tick label costs more to draw than ten thousand results."""
    import numpy as np
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    langs = sorted(pc.unique(results["lang"]).drop_null().to_pylist())
    ok = results.filter(pc.fill_null(pc.equal(results["status"], "ok"), False))
    groups = _lang_groups(ok, langs)
    panels = scores()
    columns = 3
    n_rows = (len(panels) + columns - 1) // columns
    fig = Figure(figsize=(max(4.2, 0.28 * len(langs)) * columns, 2.6 * n_rows))
    axes = fig.subplots(n_rows, columns, squeeze=False, sharex=True)
    for k, (ax, (label, value, thresholds)) in enumerate(zip(axes.flat, panels)):
        values = pc.cast(value(ok), pa.float64()).to_numpy(zero_copy_only=False)        # null: NaN
        per_lang = [(i, v[~np.isnan(v)]) for i, v in enumerate(values[rows] for rows in groups)]
        dots = [(i, v) for i, v in per_lang if 0 < len(v) <= DOTS_MAX]
        if dots:
            ax.scatter(np.concatenate([np.full(len(v), i) for i, v in dots]), np.concatenate([v for _, v in dots]),
                       c=[f"C{i % 10}" for i, v in dots for _ in v], alpha=0.7)
        many = [(i, v) for i, v in per_lang if len(v) > DOTS_MAX]
        if many:
            edges = np.histogram_bin_edges(np.concatenate([v for _, v in many]), bins=40)
            y = np.repeat(edges, 2)[1:-1]
            shapes = []
            for i, v in many:
                counts = np.histogram(v, edges)[0]
                half = np.repeat(0.4 * counts / counts.max(), 2)
                shapes.append(np.column_stack([np.r_[i - half, (i + half)[::-1]], np.r_[y, y[::-1]]]))
            ax.add_collection(PolyCollection(shapes, facecolors=[f"C{i % 10}" for i, _ in many], alpha=0.7,
                                             linewidths=0))
            ax.autoscale_view()
        for t in thresholds:
            ax.axhline(t, color="#b00", linestyle="--", linewidth=1)
        ax.tick_params(labelbottom=k + columns >= len(panels))         # no panel below it
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.set_title(label, fontsize=9)
    many_langs = len(langs) > 8
    axes[0][0].set_xticks(range(len(langs)), langs, rotation=90 if many_langs else 0,
                          fontsize=7 if many_langs else None)
    axes[0][0].set_xlim(-0.5, len(langs) - 0.5)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def score_png(results: pa.Table) -> bytes:
    buf = io.BytesIO()
    score_figure(results).savefig(buf, format="png", dpi=80)
    return buf.getvalue()


# Table headers a reviewer reads; the column name is the cell's tooltip.
LABELS = {
    "video_id": "video", "lang": "language", "needs_review": "needs review", "flags": "flagged for",
    "wer": "WER", "cer": "CER", "speaker_similarity": "voice similarity", "sync_offset_frames": "lip offset (frames)",
    "sync_confidence": "lip sync", "source_sync_confidence": "source's lip sync",
    "mouth_change_ratio": "mouth change / source's", "loudness_diff_lu": "loudness vs source (LU)",
    "speech_rate_max": "largest speed-up", "share_at_speed_cap": "lines at the speed-up cap",
    "face_coverage": "face on screen", "share_rerendered": "frames re-rendered", "start_s": "start (s)",
    "end_s": "end (s)", "source_text": "source", "target_text": "translation", "speech_rate": "speed-up",
    "overflow_s": "into the pause (s)", "lead_s": "early start (s)",
    "cut_s": "cut (s)", "back_text": "heard back", "speaker_track_id": "face track",
    "lip_reason": "lips left alone because", "visual_ssim": "face kept (SSIM)", "visual_seam": "seam",
    "visual_flicker": "flicker", "mouth_shape_error": "mouth off shape", "visual_ssim_min": "face kept, worst line",
    "lines_over_cap": "lines past the cap", "cut_s_total": "speech cut (s)",
}


def _h(value) -> str:
    """Text as HTML that shows as written, in element content or a quoted attribute alike.

    Everything a catalog or a run put in the manifest (ids, languages, subtitles, errors, URIs) is written
    by outsiders and read in a browser: every value goes into the page through here.
    """
    return html.escape(str(value), quote=True)


def markdown_text(value) -> str:
    """Text for a Markdown display (the notebook) that shows as written: Markdown's punctuation
    backslash-escaped, then HTML's characters as entities (a Markdown renderer passes raw HTML through)."""
    return _h(re.sub(r"([\\`*_{}\[\]()#+\-.!|~$])", r"\\\1", str(value)))


def _cell(value, column: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "<span class='bad'>yes</span>" if value else "no"
    if isinstance(value, float):
        if column.startswith("share_") or column == "face_coverage":
            return f"{value:.0%}"
        return f"{value:.2f}".replace("-0.00", "0.00")
    if isinstance(value, list):
        return _h(", ".join(str(v) for v in value))
    return _h(value)


def _base64(png: bytes) -> str:
    return base64.b64encode(png).decode()


def _table(rows: list[dict], columns: tuple[str, ...]) -> str:
    head = "".join(f"<th title='{_h(c)}'>{_h(LABELS.get(c, c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c), c)}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<div class='wide'><table><tr>{head}</tr>{body}</table></div>"




def write_html(out_dir: str, path: str, max_strips: int = 12, top: int = 50) -> None:
    """The report as one self-contained HTML file (sections: summary, attention, scores, needs-review,
    results, lines, frames); its lists hold the worst `top` results, and say how many more there are."""
    results = results_table(out_dir)
    if not results.num_rows:
        raise FileNotFoundError(f"no manifest in {out_dir}")
    total = results.num_rows
    langs = sorted(pc.unique(results["lang"]).to_pylist())
    parts = [f"<!doctype html><meta charset='utf-8'><title>raydub report: {_h(out_dir)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top}"
             "th{background:#f4f4f4}.wide{overflow-x:auto}.bad{color:#b00}img{max-width:100%}</style>",
             f"<h1>raydub quality report</h1><p>{_h(out_dir)}: {total} results "
             f"(manifest version {_h(manifest_versions(results))}). A result is one video in one "
             "language. It <b>needs review</b> when it failed, was skipped, or a score crossed a threshold "
             "of the run's <code>[review]</code> config; the reasons say which and by how much.</p>",
             "<h2 id='summary'>Summary per language</h2><table><tr><th>language</th><th>ok</th><th>failed</th>"
             "<th>skipped</th><th>needs review</th></tr>"]
    for lang, c in sorted(summary(results).items()):
        parts.append(f"<tr><td>{_h(lang)}</td>" + "".join(f"<td>{c[k]}</td>" for k in
                                                       ("ok", "failed", "skipped", "needs review")) + "</tr>")
    parts.append("</table>")
    parts.append("<h2 id='attention'>What the flags are about</h2><p>Results flagged for each kind of reason "
                 "(one result can have several).</p><table><tr><th>reason</th>"
                 + "".join(f"<th>{_h(lang)}</th>" for lang in langs) + "</tr>")
    for kind, per_lang in reason_counts(results).items():
        parts.append(f"<tr><td>{_h(kind)}</td>" + "".join(f"<td>{per_lang[lang]}</td>" for lang in langs)
                     + "</tr>")
    parts.append("</table>")
    own_voice = results.filter(pc.fill_null(pc.and_(pc.and_(pc.equal(results["status"], "ok"),
                                                            pc.equal(results["voice_cloned"], False)),
                                                    pc.is_valid(results["speaker_similarity"])), False))
    if own_voice.num_rows:
        sims = pc.min_max(own_voice["speaker_similarity"]).as_py()
        parts.append(f"<p>{own_voice.num_rows} ok results were spoken by a TTS that does not clone voices, so "
                     f"they are in the TTS's own voice, not the speaker's (similarity to the source speaker "
                     f"{sims['min']:.2f}&ndash;{sims['max']:.2f}). That alone does not flag them "
                     "(<code>review.voice_check</code>).</p>")
    parts.append("<h2 id='scores'>Scores per language</h2><p>One dot per ok result, or where a language has "
                 f"more than {DOTS_MAX}, a histogram (wider where more results are); dashed red lines: the default "
                 "review thresholds (the voice threshold applies only to TTS that clones voices). What each score "
                 "means is in the README (\"The manifest\").</p>")
    parts.append(f"<img alt='score distributions' src='data:image/png;base64,{_base64(score_png(results))}'>")

    n_flagged = pc.sum(_needs_review(results)).as_py() or 0
    flagged = worst_first(results, top)
    n_rendered = lip_synced(results).num_rows
    rendered = lip_synced_worst_first(results, max_strips)
    keys = [pa.table({"video_id": t["video_id"], "lang": t["lang"]}) for t in (flagged, rendered)]
    whole = {(r["video_id"], r["lang"]): r for r in whole_rows(out_dir, pa.concat_tables(keys))}

    parts.append(f"<h2 id='needs-review'>Needs review ({n_flagged}), worst first</h2><table><tr><th>video</th>"
                 "<th>language</th><th>status</th><th>reasons</th></tr>")
    for r in flagged.to_pylist():
        reasons = "<br>".join(_h(x) for x in r.get("review_reasons") or [])
        parts.append(f"<tr><td>{_h(r['video_id'])}</td><td>{_h(r['lang'])}</td><td>{_h(r['status'])}</td>"
                     f"<td class='bad'>{reasons}</td></tr>")
    parts.append("</table>")
    if more := _more(flagged.num_rows, n_flagged, "that need review"):
        parts.append(f"<p>{_h(more)}.</p>")
    shown = ranked(results, top).to_pylist()
    parts.append(f"<h2 id='results'>{'All results' if len(shown) == total else f'The worst {len(shown)} results'}"
                 "</h2><p>Those that need review first, worst first, then the others by video and language.</p>")
    parts.append(_table([{**r, "flags": flags(r)} for r in shown], RESULT_COLUMNS))
    if more := _more(len(shown), total, "results"):
        parts.append(f"<p>{_h(more)}.</p>")
    parts.append("<h2 id='lines'>Lines of the results that need review</h2>")
    for r in flagged.to_pylist():
        segments = whole.get((r["video_id"], r["lang"]), {}).get("segments") or []
        if not segments:
            continue
        parts.append(f"<h3>{_h(r['video_id'])} &rarr; {_h(r['lang'])}</h3>")
        parts.append(_table(segments, SEGMENT_COLUMNS))
    parts.append("<h2 id='frames'>Frames around the worst line</h2><p>For each result whose lips were "
                 "re-rendered (worst-synced first"
                 + (f", the first {max_strips} of {n_rendered}" if n_rendered > max_strips else "")
                 + "): source frames above dubbed frames at the same times, across its line whose picture is "
                 "worst where the picture is flagged, else its line whose lip sync falls furthest below the "
                 "source's own.</p>")
    for key in zip(rendered["video_id"].to_pylist(), rendered["lang"].to_pylist()):
        r = whole.get(key)
        segment = worst_synced_segment(r) if r else None
        if segment is None:
            continue
        parts.append(f"<h3>{_h(r['video_id'])} &rarr; {_h(r['lang'])}</h3>")
        try:
            png = frame_strip_png(r, segment)
        except Exception as e:    # a moved or deleted video costs its strip, not the report
            parts.append(f"<p class='bad'>frames unavailable: {_h(f'{type(e).__name__}: {e}')}</p>")
            continue
        if png is None:
            continue
        parts.append(f"<p>source: <i>{_h(segment.get('source_text') or '')}</i><br>"
                     f"{_h(r['lang'])}: <i>{_h(segment.get('target_text') or '')}</i></p>"
                     f"<img alt='frames of {_h(r['video_id'])} {_h(r['lang'])}' "
                     f"src='data:image/png;base64,{_base64(png)}'>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))


# ------------------------------------------------------------------ frame strips

def worst_synced_segment(row: dict) -> dict | None:
    """The dubbed line whose picture is worst where the review flags the picture (lowest SSIM around the mouth,
    then the highest seam or flicker); else the one whose lip sync falls furthest below the source's own;
    without sync scores, the longest."""
    dubbed = [s for s in row.get("segments") or [] if s.get("fit_uri")]
    if any(reason.startswith("picture:") for reason in row.get("review_reasons") or []):
        seen = [s for s in dubbed if s.get("visual_ssim") is not None]
        if seen:
            return min(seen, key=lambda s: (s["visual_ssim"], -(s.get("visual_seam") or 0),
                                            -(s.get("visual_flicker") or 0)))
    synced = [s for s in dubbed if s.get("sync_confidence") is not None]
    if synced:
        return min(synced, key=lambda s: s["sync_confidence"] - (s.get("source_sync_confidence") or 0.0))
    return max(dubbed, key=lambda s: s["end_s"] - s["start_s"], default=None)


def _face_crop(row: dict, segment: dict, times_s: list[float], shape: tuple[int, ...]):
    """A square around the speaker's face over the strip's frames, or None (no tracked speaker, or no faces file)."""
    import numpy as np

    from operators import uri as uris
    from operators.lip_model import track_series
    from operators.faces_file import load as load_faces_file

    tid = segment.get("speaker_track_id")
    if tid is None or not row.get("faces_uri") or not uris.exists(row["faces_uri"]):
        return None
    faces = load_faces_file(row["faces_uri"], with_crops=False)
    track_frames, landmarks = track_series(faces, tid)
    wanted = {int(np.searchsorted(faces["frame_times_s"], t, side="right")) - 1 for t in times_s}
    points = landmarks[np.isin(track_frames, list(wanted))]
    if not len(points):
        return None
    (x0, y0), (x1, y1) = points.reshape(-1, 2).min(axis=0), points.reshape(-1, 2).max(axis=0)
    side = 1.5 * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    height, width = shape[:2]
    side = min(side, width, height)
    left = int(np.clip(cx - side / 2, 0, width - side))
    top = int(np.clip(cy - side / 2, 0, height - side))
    return left, top, left + int(side), top + int(side)


def frame_strip_png(row: dict, segment: dict | None = None, n_frames: int = 6) -> bytes | None:
    """Source frames above dub frames at the same times, across one line (default: the worst-synced), as PNG.

    Cropped to the speaker's face when the result has a tracked speaker for
    the line. None for a result without an output video or dubbed lines.
    """
    from matplotlib.figure import Figure

    from operators import paths
    from operators import uri as uris
    from operators.media import frames_at

    segment = segment or worst_synced_segment(row)
    if segment is None or row.get("status") != "ok" or not row.get("video_out_uri"):
        return None
    start, end = line_span_s(segment)
    times = [start + (k + 0.5) * (end - start) / n_frames for k in range(n_frames)]
    with uris.local_copy(paths.picture(row)) as path:
        source = frames_at(path, times)
    with uris.local_copy(row["video_out_uri"]) as path:
        dub = frames_at(path, times)
    crop = _face_crop(row, segment, times, source[0].shape)
    if crop is not None:
        x0, y0, x1, y1 = crop
        source, dub = ([f[y0:y1, x0:x1] for f in frames] for frames in (source, dub))

    cell_h = 1.9 * source[0].shape[0] / source[0].shape[1]
    fig = Figure(figsize=(1.9 * n_frames, 2 * cell_h + 0.8))
    axes = fig.subplots(2, n_frames, squeeze=False)
    for k, t in enumerate(times):
        for r, (frames, label) in enumerate(((source, "source"), (dub, f"dub ({row['lang']})"))):
            ax = axes[r][k]
            ax.imshow(frames[k])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{t:.2f} s", fontsize=9)
            if k == 0:
                ax.set_ylabel(label, fontsize=10)
    sync = segment.get("sync_confidence")
    reference = segment.get("source_sync_confidence")
    score = (f"lip sync {sync:.2f}" + (f" (source {reference:.2f})" if reference is not None else "")
             if sync is not None else (segment.get("lip_reason") or "lips not scored"))
    fig.suptitle(f"{row['video_id']} \u2192 {row['lang']}, line at {segment['start_s']:.2f}\u2013"
                 f"{segment['end_s']:.2f} s: {score}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()
