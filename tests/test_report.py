"""`raydub report`: the summary, what needs review with reasons, and a self-contained HTML file."""
import base64
import re

from operators import manifest, review
from operators.config import Config
from operators.schema import result_id
from pipelines import report
from pipelines.cli import main


def _rows():
    seg = {"segment_id": "v@0", "start_s": 0.5, "end_s": 2.0, "source_text": "Hello.", "target_text": "Hallo.",
           "speech_rate": 1.1, "back_text": "Hallo", "wer": 0.0, "fit_uri": "/w/0.fit.wav", "sync_offset_frames": 0, "sync_confidence": 0.8}
    base = {"uri": "/m/v.mp4", "status": "ok", "wer": 0.1, "cer": 0.05, "lip_status": "rendered",
            "sync_offset_frames": 0, "sync_confidence": 0.85, "source_sync_confidence": 0.9,
            "loudness_diff_lu": 0.0, "true_peak_dbfs": -1.0, "segments": [seg], "manifest_version": "3",
            "video_out_uri": "/m/v.dub.mp4"}
    rows = [
        {**base, "video_id": "good", "lang": "de"},
        {**base, "video_id": "garbled", "lang": "de", "wer": 0.9},
        {**base, "video_id": "late", "lang": "es", "sync_offset_frames": 4},
        {"video_id": "broken", "lang": "es", "uri": "/m/b.mp4", "status": "failed", "error_stage": "probe",
         "error": "MediaError: not a readable video file", "manifest_version": "3"},
    ]
    return [review.apply({**r, "result_id": result_id(r["video_id"], r["lang"])}, Config()) for r in rows]


def test_report_summary_needs_review_and_html(tmp_path, capsys):
    out = str(tmp_path / "out")
    manifest.write_manifest(out, _rows())
    assert main(["report", out]) == 0
    printed = capsys.readouterr().out
    assert "needs review: 3 of 4" in printed
    assert "intelligibility: WER 0.90 > 0.5" in printed and "lip sync: offset +4 frames (> 2)" in printed
    # worst first: the failed result leads
    assert printed.index("broken -> es") < printed.index("garbled -> de")
    page = (tmp_path / "out" / "report.html").read_text()
    for section in ("summary", "attention", "scores", "needs-review", "results", "lines", "frames"):
        assert f"id='{section}'" in page
    assert "flagged for: failed 1, intelligibility 1, lip sync 1" in printed
    # the videos of these constructed rows do not exist: their strips say so, the report is still written
    assert "frames unavailable: FileNotFoundError" in page
    png = base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)", page).group(1))
    assert png.startswith(b"\x89PNG")
    assert "failed at probe: MediaError: not a readable video file" in page
    assert "Hallo." in page                                  # the lines of a flagged result


def test_needs_review_lists_only_what_to_look_at(tmp_path, capsys):
    out = str(tmp_path / "out")
    manifest.write_manifest(out, _rows())
    assert main(["report", out, "--needs-review"]) == 0
    printed = capsys.readouterr().out
    assert "good -> de" not in printed and "late -> es" in printed
    assert not (tmp_path / "out" / "report.html").exists()


def test_report_of_a_folder_without_a_manifest_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no manifest" in capsys.readouterr().err


LANGS = ("ar", "de", "es", "fr", "hi", "it", "ja", "ko", "pt", "zh")


def _many_rows(videos: int) -> list[dict]:
    """videos x 10 languages; what is flagged, and why, follows from the video's number (see the test)."""
    rows = []
    for v in range(videos):
        for lang in LANGS:
            row = {"video_id": f"v{v:05d}", "lang": lang, "uri": f"/m/v{v:05d}.mp4", "manifest_version": "7",
                   "result_id": result_id(f"v{v:05d}", lang), "status": "ok", "wer": 0.1, "cer": 0.05,
                   "segments": [{"segment_id": f"v{v:05d}@0", "start_s": 0.0, "end_s": 1.0,
                                 "source_text": "Hello.", "target_text": f"line of v{v:05d} {lang}",
                                 "words": [{"start_s": 0.0, "end_s": 0.5, "text": "Hello", "probability": 0.9}]}]}
            if v % 400 == 5 and lang == "es":
                row.update(status="failed", error_stage="mix", error="MixError: no audio")
            elif v % 500 == 9 and lang == "de":
                row.update(status="skipped", error_stage="probe", error="no speech")
            elif v % 100 == 42:
                row.update(wer=0.9, cer=0.6)                 # two reasons, of one kind
            elif v % 100 == 17:
                row.update(wer=0.9)
            rows.append(review.apply(row, Config()))
    return rows


def test_many_results_counted_from_scalar_columns_and_only_the_worst_read_whole(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "out")
    rows = _many_rows(2000)
    for i in range(0, len(rows), 5000):                      # four runs: four sets of parts
        manifest.write_manifest(out, rows[i:i + 5000])

    results = report.results_table(out)
    assert results.num_rows == 20_000 and "segments" not in results.column_names
    counts = report.summary(results)
    assert dict(counts["es"]) == {"ok": 1995, "failed": 5, "needs review": 45}
    assert dict(counts["de"]) == {"ok": 1996, "skipped": 4, "needs review": 44}
    assert all(dict(counts[lang]) == {"ok": 2000, "needs review": 40} for lang in LANGS if lang not in ("es", "de"))
    assert {kind: sum(c.values()) for kind, c in report.reason_counts(results).items()} == {
        "intelligibility": 400, "failed": 5, "skipped": 4}
    # failed, skipped, then by number of reasons, then by video and language
    worst = [(r["video_id"], r["lang"]) for r in report.worst_first(results, 12).to_pylist()]
    assert worst == [*((f"v{v:05d}", "es") for v in (5, 405, 805, 1205, 1605)),
                     *((f"v{v:05d}", "de") for v in (9, 509, 1009, 1509)),
                     ("v00042", "ar"), ("v00042", "de"), ("v00042", "es")]

    read_whole = []                                          # the results read with their lines
    scan = manifest.scan

    def counting_scan(out_dir, columns=None, table="manifest", filter=None):
        found = scan(out_dir, columns, table, filter)
        if table == "segments" or "segments" in found.column_names:
            read_whole.extend(zip(found["video_id"].to_pylist(), found["lang"].to_pylist()))
        return found

    monkeypatch.setattr(manifest, "scan", counting_scan)
    printed = report.print_report(out, top=12)
    assert [(r["video_id"], r["lang"]) for r in printed] == worst and not read_whole
    text = capsys.readouterr().out
    assert "needs review: 409 of 20000" in text
    assert "flagged for: intelligibility 400, failed 5, skipped 4" in text
    assert "397 more that need review not shown" in text

    page = tmp_path / "report.html"
    report.write_html(out, str(page), top=12)
    assert sorted(read_whole) == sorted(worst)               # 12 whole rows of 20,000, nothing else
    html = page.read_text()
    assert "Needs review (409), worst first" in html and "397 more that need review not shown" in html
    assert "The worst 12 results" in html and "19988 more results not shown" in html
    assert html.count("<h3>") == 12 and "line of v00042 es" in html and "line of v00017" not in html
