"""The quality report of an OUT folder (local or s3://): `raydub report OUT [--html FILE] [--needs-review]`.

Reads the manifest (and, for frame strips, the videos and face tracks it
points to). Prints a summary per language and what needs review; writes
one self-contained HTML file (pictures embedded as PNG) with the summary,
what the flags are about, each score's distribution per language, the
results that need review (worst first, with reasons), every line of those
results, and source-vs-dub frames around each lip-synced result's
worst-synced line. `notebooks/quality_report.ipynb` shows the same with
these functions.
"""
from __future__ import annotations

import base64
import html
import io
import re
from collections import Counter

from operators import manifest
from operators.lip_model import line_span_s


def _sync_ratio(row: dict) -> float | None:
    dub, source = row.get("sync_confidence"), row.get("source_sync_confidence")
    return dub / source if dub is not None and source else None


def scores() -> tuple[tuple, ...]:
    """Scores plotted per language: (label, value of a row, threshold lines at the [review] defaults)."""
    from operators.config import ReviewConfig

    review = ReviewConfig()
    return (
        ("back-transcription WER", lambda r: r.get("wer"), (review.max_wer,)),
        ("back-transcription CER", lambda r: r.get("cer"), (review.max_cer,)),
        ("voice similarity to the source speaker", lambda r: r.get("speaker_similarity"),
         (review.min_speaker_similarity,)),
        ("lip-sync offset (frames)", lambda r: r.get("sync_offset_frames"),
         (-review.max_sync_offset_frames, review.max_sync_offset_frames)),
        ("lip-sync confidence / the source's", _sync_ratio, (review.min_sync_confidence_ratio,)),
        ("mouth frame-to-frame change / the source's", lambda r: r.get("mouth_change_ratio"),
         (review.max_mouth_change_ratio,)),
        ("face around the mouth, worst line (SSIM)", lambda r: r.get("visual_ssim_min"), (review.min_visual_ssim,)),
        ("seam at the mouth box, worst line", lambda r: r.get("visual_seam_max"), (review.max_visual_seam,)),
        ("flicker around the mouth, worst line", lambda r: r.get("visual_flicker_max"),
         (review.max_visual_flicker,)),
        ("re-measured mouth off the asked shape", lambda r: r.get("mouth_shape_error_max"),
         (review.max_mouth_shape_error,)),
        ("lines spoken past the speed-up cap", lambda r: r.get("lines_over_cap"), ()),
        ("dialogue loudness - source (LU)", lambda r: r.get("loudness_diff_lu"),
         (-review.max_loudness_diff_lu, review.max_loudness_diff_lu)),
        ("share of lines at the speed-up cap", lambda r: r.get("share_at_speed_cap"),
         (review.max_share_sped_up_to_cap,)),
        ("share of frames re-rendered", lambda r: r.get("share_rerendered"), ()),
    )


SEGMENT_COLUMNS = ("start_s", "end_s", "source_text", "target_text", "speech_rate", "lead_s", "overflow_s", "cut_s",
                   "back_text",
                   "wer", "speaker_similarity", "loudness_diff_lu", "speaker_track_id", "sync_offset_frames",
                   "sync_confidence", "mouth_change_ratio", "visual_ssim", "visual_seam", "visual_flicker",
                   "mouth_shape_error", "lip_reason")


def summary(rows: list[dict]) -> dict[str, Counter]:
    """Per language: ok, failed, skipped, needs review."""
    out: dict[str, Counter] = {}
    for r in rows:
        c = out.setdefault(r["lang"], Counter())
        c[r["status"]] += 1
        c["needs review"] += bool(r.get("needs_review"))
    return out


def reason_counts(rows: list[dict]) -> dict[str, Counter]:
    """Per kind of reason ("failed", "voice", "lip sync", ...): results flagged for it, per language."""
    out: dict[str, Counter] = {}
    for r in rows:
        for kind in flags(r):
            out.setdefault(kind, Counter())[r["lang"]] += 1
    return dict(sorted(out.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])))


def lip_synced_worst_first(rows: list[dict]) -> list[dict]:
    """Ok results whose lips were re-rendered: those whose picture is flagged first (lowest SSIM around the
    mouth first), then the one whose lip sync falls furthest below the source's first."""
    rendered = [r for r in rows if r["status"] == "ok" and r.get("lip_status") == "rendered"]

    def picture_flagged(r: dict) -> bool:
        return any(reason.startswith("picture:") for reason in r.get("review_reasons") or [])

    return sorted(rendered, key=lambda r: (not picture_flagged(r), r.get("visual_ssim_min") or 1.0
                                           if picture_flagged(r) else 0.0,
                                           (r.get("sync_confidence") or 0) - (r.get("source_sync_confidence") or 0),
                                           r["video_id"], r["lang"]))


def worst_first(rows: list[dict]) -> list[dict]:
    """Results that need review: failed and skipped first, then by number of reasons."""
    flagged = [r for r in rows if r.get("needs_review")]
    rank = {"failed": 0, "skipped": 1, "ok": 2}
    return sorted(flagged, key=lambda r: (rank.get(r["status"], 3), -len(r.get("review_reasons") or []),
                                          r["video_id"], r["lang"]))


def print_report(out_dir: str, needs_review_only: bool = False, console=None) -> list[dict]:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # Ids, codes and reasons come from the catalog: printed as text, never read as Rich markup.
    console = console or Console()
    rows = manifest.read_manifest(out_dir)
    if not rows:
        raise FileNotFoundError(f"no manifest in {out_dir} (expected {out_dir}/manifest/lang=*/)")
    if not needs_review_only:
        table = Table(title=escape(f"{out_dir}: {len(rows)} results"))
        for col in ("language", "ok", "failed", "skipped", "needs review"):
            table.add_column(col, justify="right" if col != "language" else "left")
        for lang, c in sorted(summary(rows).items()):
            table.add_row(escape(lang), *(str(c[k]) for k in ("ok", "failed", "skipped", "needs review")))
        console.print(table)
    flagged = worst_first(rows)
    console.print(f"needs review: {len(flagged)} of {len(rows)}")
    kinds = reason_counts(rows)
    if kinds:
        console.print("  flagged for: " + ", ".join(f"{kind} {sum(c.values())}" for kind, c in kinds.items()),
                      highlight=False, markup=False)
    for r in flagged:
        console.print(f"  {r['video_id']} -> {r['lang']} ({r['status']})", highlight=False, markup=False)
        for reason in r.get("review_reasons") or []:
            console.print(f"      - {reason}", highlight=False, markup=False)
    return flagged


def score_figure(rows: list[dict]):
    """Each score's distribution per language, one dot per ok result; dashed: the default review threshold."""
    from matplotlib.figure import Figure

    langs = sorted({r["lang"] for r in rows})
    panels = scores()
    columns = 3
    n_rows = (len(panels) + columns - 1) // columns
    fig = Figure(figsize=(4.2 * columns, 2.6 * n_rows))
    axes = fig.subplots(n_rows, columns, squeeze=False)
    for ax, (label, value, thresholds) in zip(axes.flat, panels):
        for i, lang in enumerate(langs):
            values = [v for r in rows if r["lang"] == lang and r["status"] == "ok"
                      and (v := value(r)) is not None]
            ax.scatter([i] * len(values), values, alpha=0.7)
        for t in thresholds:
            ax.axhline(t, color="#b00", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(langs)), langs)
        ax.set_xlim(-0.5, len(langs) - 0.5)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.set_title(label, fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def score_png(rows: list[dict]) -> bytes:
    buf = io.BytesIO()
    score_figure(rows).savefig(buf, format="png", dpi=80)
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


RESULT_COLUMNS = ("video_id", "lang", "status", "needs_review", "flags", "wer", "cer", "speaker_similarity",
                  "sync_offset_frames", "sync_confidence", "source_sync_confidence", "mouth_change_ratio",
                  "visual_ssim_min", "loudness_diff_lu", "speech_rate_max", "share_at_speed_cap", "lines_over_cap",
                  "cut_s_total", "face_coverage", "share_rerendered")


def flags(row: dict) -> list[str]:
    """The kinds of reason a result is flagged for ("failed", "intelligibility", "lip sync", ...)."""
    kinds = [reason.split(":", 1)[0].split(" at ", 1)[0] for reason in row.get("review_reasons") or []]
    return list(dict.fromkeys(kinds))


def _base64(png: bytes) -> str:
    return base64.b64encode(png).decode()


def _table(rows: list[dict], columns: tuple[str, ...]) -> str:
    head = "".join(f"<th title='{_h(c)}'>{_h(LABELS.get(c, c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c), c)}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<div class='wide'><table><tr>{head}</tr>{body}</table></div>"


def write_html(out_dir: str, path: str, max_strips: int = 12) -> None:
    """The report as one self-contained HTML file (sections: summary, attention, scores, needs-review,
    results, lines, frames)."""
    rows = manifest.read_manifest(out_dir)
    if not rows:
        raise FileNotFoundError(f"no manifest in {out_dir}")
    langs = sorted({r["lang"] for r in rows})
    parts = [f"<!doctype html><meta charset='utf-8'><title>raydub report: {_h(out_dir)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top}"
             "th{background:#f4f4f4}.wide{overflow-x:auto}.bad{color:#b00}img{max-width:100%}</style>",
             f"<h1>raydub quality report</h1><p>{_h(out_dir)}: {len(rows)} results "
             f"(manifest version {_cell(rows[0].get('manifest_version'))}). A result is one video in one "
             "language. It <b>needs review</b> when it failed, was skipped, or a score crossed a threshold "
             "of the run's <code>[review]</code> config; the reasons say which and by how much.</p>",
             "<h2 id='summary'>Summary per language</h2><table><tr><th>language</th><th>ok</th><th>failed</th>"
             "<th>skipped</th><th>needs review</th></tr>"]
    for lang, c in sorted(summary(rows).items()):
        parts.append(f"<tr><td>{_h(lang)}</td>" + "".join(f"<td>{c[k]}</td>" for k in
                                                       ("ok", "failed", "skipped", "needs review")) + "</tr>")
    parts.append("</table>")
    parts.append("<h2 id='attention'>What the flags are about</h2><p>Results flagged for each kind of reason "
                 "(one result can have several).</p><table><tr><th>reason</th>"
                 + "".join(f"<th>{_h(lang)}</th>" for lang in langs) + "</tr>")
    for kind, per_lang in reason_counts(rows).items():
        parts.append(f"<tr><td>{_h(kind)}</td>" + "".join(f"<td>{per_lang[lang]}</td>" for lang in langs)
                     + "</tr>")
    parts.append("</table>")
    own_voice = [r for r in rows if r["status"] == "ok" and r.get("voice_cloned") is False
                 and r.get("speaker_similarity") is not None]
    if own_voice:
        sims = [r["speaker_similarity"] for r in own_voice]
        parts.append(f"<p>{len(own_voice)} ok results were spoken by a TTS that does not clone voices, so they "
                     f"are in the TTS's own voice, not the speaker's (similarity to the source speaker "
                     f"{min(sims):.2f}&ndash;{max(sims):.2f}). That alone does not flag them "
                     "(<code>review.voice_check</code>).</p>")
    parts.append("<h2 id='scores'>Scores per language</h2><p>One dot per ok result; dashed red lines: the default "
                 "review thresholds (the voice threshold applies only to TTS that clones voices). What each score "
                 "means is in the README (\"The manifest\").</p>")
    parts.append(f"<img alt='score distributions' src='data:image/png;base64,{_base64(score_png(rows))}'>")
    flagged = worst_first(rows)
    parts.append(f"<h2 id='needs-review'>Needs review ({len(flagged)}), worst first</h2><table><tr><th>video</th>"
                 "<th>language</th><th>status</th><th>reasons</th></tr>")
    for r in flagged:
        reasons = "<br>".join(_h(x) for x in r.get("review_reasons") or [])
        parts.append(f"<tr><td>{_h(r['video_id'])}</td><td>{_h(r['lang'])}</td><td>{_h(r['status'])}</td>"
                     f"<td class='bad'>{reasons}</td></tr>")
    parts.append("</table>")
    parts.append("<h2 id='results'>All results</h2>")
    parts.append(_table(sorted(({**r, "flags": flags(r)} for r in rows), key=lambda r: (r["video_id"], r["lang"])),
                        RESULT_COLUMNS))
    parts.append("<h2 id='lines'>Lines of the results that need review</h2>")
    for r in flagged:
        segments = r.get("segments") or []
        if not segments:
            continue
        parts.append(f"<h3>{_h(r['video_id'])} &rarr; {_h(r['lang'])}</h3>")
        parts.append(_table(segments, SEGMENT_COLUMNS))
    rendered = lip_synced_worst_first(rows)
    parts.append("<h2 id='frames'>Frames around the worst line</h2><p>For each result whose lips were "
                 "re-rendered (worst-synced first"
                 + (f", the first {max_strips}" if len(rendered) > max_strips else "")
                 + "): source frames above dubbed frames at the same times, across its line whose picture is "
                 "worst where the picture is flagged, else its line whose lip sync falls furthest below the "
                 "source's own.</p>")
    for r in rendered[:max_strips]:
        segment = worst_synced_segment(r)
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
