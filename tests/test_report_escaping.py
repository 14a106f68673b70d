"""The manifest's text is written by outsiders (catalog ids, languages, subtitles, error messages, URIs):
report.html and the notebook's rich outputs show it as text, never as markup."""
import html
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from operators import manifest, review
from operators.config import Config
from operators.media import ffmpeg
from operators.schema import RESULT, SEGMENT_ROW, conform, result_id
from pipelines import report
from tests.conftest import execute_notebook

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quality_report.ipynb"

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
ATTR = "\"'><svg onload=alert(1)>"
PAYLOADS = (SCRIPT, IMG, ATTR)
# A language is a folder name of the manifest (lang=...), so it cannot hold the "/" of SCRIPT.
LANG_IMG, LANG_ATTR = f"es-{IMG}", f"de{ATTR}"


def _segment(**values) -> dict:
    return {"segment_id": f"{SCRIPT}@0", "start_s": 0.2, "end_s": 0.8, "source_text": f"Hello {SCRIPT}",
            "target_text": f"Hola {IMG}", "back_text": f"Hola {ATTR}", "lip_reason": SCRIPT, "wer": 0.9,
            "fit_uri": f"/w/{IMG}.wav", "sync_offset_frames": 0, "sync_confidence": 0.2,
            "source_sync_confidence": 0.9, **values}


def _rows(video: str) -> list[dict]:
    models = [{"stage": IMG, "name": SCRIPT, "version": ATTR, "license": IMG, "source": f"s3://{IMG}"}]
    tracks = [{"track_id": 0, "shot_index": 0, "start_frame": 0, "end_frame": 25, "start_s": 0.0, "end_s": 1.0,
               "face_height_px": 20.0, "end_reason": ATTR}]
    rendered = {"status": "ok", "lip_status": "rendered", "lip_reason": IMG, "manifest_version": "3",
                "source_lang": ATTR, "detected_lang": SCRIPT, "models": models, "face_tracks": tracks,
                "wer": 0.9, "cer": 0.5, "sync_offset_frames": 0, "source_sync_confidence": 0.9}
    rows = [
        # the worst-synced lip-synced result, with real (tiny) media: its frame strip, caption and alt text
        {**rendered, "video_id": SCRIPT, "lang": LANG_IMG, "uri": video, "video_out_uri": video,
         "sync_confidence": 0.2, "segments": [_segment()]},
        # lip-synced, its videos gone: "frames unavailable" with the URI in the message
        {**rendered, "video_id": ATTR, "lang": LANG_IMG, "uri": f"/nowhere/{ATTR}.mp4",
         "video_out_uri": f"/nowhere/{IMG}.mp4", "sync_confidence": 0.85,
         "segments": [_segment(source_text=ATTR, target_text=SCRIPT, sync_confidence=0.85)]},
        {"video_id": IMG, "lang": LANG_ATTR, "uri": f"/m/{ATTR}.mp4", "status": "failed", "error_stage": IMG,
         "error": f"MediaError: {SCRIPT}", "manifest_version": "3"},
    ]
    rows = [review.apply({**r, "result_id": result_id(r["video_id"], r["lang"])}, Config()) for r in rows]
    return [{**r, "review_reasons": [*r["review_reasons"], f"custom: {ATTR}"]} for r in rows]


@pytest.fixture
def hostile_out(tmp_path) -> str:
    video = str(tmp_path / "tiny.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1", "-pix_fmt", "yuv420p", video)
    out = str(tmp_path / "out")
    # raydub itself no longer writes such a language (operators.paths refuses it as a folder name), so
    # the manifest is written as an older version or another tool could have: straight with pyarrow.
    rows = [manifest.public(r) for r in _rows(video)]
    for table, schema, items in (("manifest", RESULT, rows), ("segments", SEGMENT_ROW, manifest.segment_rows(rows))):
        for lang in {r["lang"] for r in items}:
            part = Path(out, table, f"lang={lang}")
            part.mkdir(parents=True)
            pq.write_table(conform([r for r in items if r["lang"] == lang], schema).drop_columns(["lang"]),
                           part / "part-0.parquet")
    return out


class _Elements(HTMLParser):
    """Every element and its attributes, and the text, as a browser would parse them."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_report_html_shows_the_manifests_markup_as_text(hostile_out, tmp_path):
    page_path = tmp_path / "report.html"
    report.write_html(hostile_out, str(page_path))
    page = page_path.read_text()
    for payload in PAYLOADS:
        assert payload not in page
        assert html.escape(payload) in page
    assert "&lt;script&gt;" in page

    parsed = _Elements()
    parsed.feed(page)
    tags = [tag for tag, _ in parsed.tags]
    assert "script" not in tags and "svg" not in tags
    assert not [(tag, name) for tag, attrs in parsed.tags for name in attrs if name.startswith("on")]
    images = [attrs for tag, attrs in parsed.tags if tag == "img"]
    assert all(a["src"].startswith("data:image/png;base64,") for a in images)
    # the score plot and the one strip with media; its alt text is the data, as written
    assert [a["alt"] for a in images] == ["score distributions", f"frames of {SCRIPT} {LANG_IMG}"]
    assert all(set(attrs) <= {"title"} for tag, attrs in parsed.tags if tag == "th")
    text = "".join(parsed.text)
    for shown in (LANG_IMG, LANG_ATTR, f"{SCRIPT} \u2192 {LANG_IMG}", f"Hello {SCRIPT}", f"Hola {IMG}",
                  f"Hola {ATTR}", f"failed at {IMG}: MediaError: {SCRIPT}", f"custom: {ATTR}",
                  "frames unavailable: FileNotFoundError", f"{ATTR}.mp4"):
        assert shown in text, shown


def test_notebook_rich_outputs_show_the_manifests_markup_as_text(hostile_out, monkeypatch):
    pytest.importorskip("nbformat")
    outputs = execute_notebook(NOTEBOOK, hostile_out, monkeypatch)
    assert not [o for o in outputs if o.output_type == "error"]
    rich = {mime: [o["data"][mime] for o in outputs if mime in o.get("data", {})]
            for mime in ("text/html", "text/markdown")}
    assert rich["text/html"] and len(rich["text/markdown"]) == 1      # the tables; the frame strip's caption
    for mime, shown in rich.items():
        for payload in PAYLOADS:
            assert not [s for s in shown if payload in s], (mime, payload)
    tables = "\n".join(rich["text/html"])
    for payload in PAYLOADS:                     # pandas escapes <, > and &; quotes are harmless in text
        assert html.escape(payload, quote=False) in tables
    caption = rich["text/markdown"][0]
    assert f"source: *Hello {report.markdown_text(SCRIPT)}*" in caption
    assert report.markdown_text(SCRIPT) == "&lt;script&gt;alert\\(1\\)&lt;/script&gt;"
    assert len([o for o in outputs if "image/png" in o.get("data", {})]) == 2   # score plot, frame strip
