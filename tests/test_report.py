"""`raydub report`: the summary, what needs review with reasons, and a self-contained HTML file."""
import base64
import re

from operators import manifest, review
from operators.config import Config
from operators.schema import result_id
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
