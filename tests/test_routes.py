"""The languages table for the pairs scripts/install.sh installs: what `raydub languages` and `validate` print."""
import json

import pytest

from operators.config import Config
from operators.routes import RouteTable
from pipelines.cli import main


@pytest.fixture(scope="module")
def table():
    return RouteTable(Config())


@pytest.mark.parametrize("lang, mt, steps, tts", [
    ("es", "direct", ("en-es",), "espeak-ng:es"),
    ("ca", "direct", ("en-ca",), "espeak-ng:ca"),
    ("pt", "pivot", ("en-es", "es-pt"), "espeak-ng:pt"),
    ("pt-br", "pivot", ("en-es", "es-pt-br"), "espeak-ng:pt-br"),
    ("it", "pivot", ("en-es", "es-it"), "espeak-ng:it"),
    ("fr", "pivot", ("en-es", "es-fr"), "espeak-ng:fr-fr"),
])
def test_installed_pairs_reach_these_languages_offline(table, lang, mt, steps, tts):
    r = table.route(lang)
    assert (r.mt, r.mt_steps, r.mt_hint, r.tts_offline) == (mt, steps, "", tts)
    assert (r.asr_offline, r.asr_production) == ("whisper-base", "whisper-large-v3")
    assert r.offline and r.non_commercial == ()
    assert dict(r.licences) == {"whisper-base": "MIT", **{f"apertium:{s}": "GPL-3.0" for s in steps}, tts: "GPL-3.0"}


def test_rows_without_a_route_say_what_would_give_one(table):
    ro = table.route("ro")
    assert (ro.mt, ro.mt_steps, ro.offline) == ("subtitles only", (), False)
    assert ro.mt_hint == "Debian's Apertium has no pair into ro (apertium-es-ro only translates from it)"
    assert (ro.tts_offline, ro.tts_production) == ("espeak-ng:ro", "piper:ro_RO-mihai-medium")
    de = table.route("de")
    assert (de.mt, de.mt_hint) == ("subtitles only", "Debian's Apertium has no pair into de")
    en = table.route("en-us", source="es")
    assert (en.mt, en.mt_steps, en.tts_offline, en.asr_offline) == (
        "direct", ("es-en-us",), "piper:en_US-joe-medium", "whisper-tiny.en")
    assert dict(en.licences)["piper:en_US-joe-medium"] == "CC0-1.0 (voice), MIT (package)"


def test_the_table_lists_offline_languages_first(table):
    rows = table.table()
    offline = [r.lang for r in rows if r.offline]
    assert {"es", "ca", "pt", "pt-br", "it", "fr"} <= set(offline)
    assert [r.lang for r in rows[:len(offline)]] == offline           # offline ones first
    assert all(r.lang != "en" and not r.lang.startswith("en-") for r in rows)
    assert {"de", "ro", "ja"} <= {r.lang for r in rows if r.mt == "subtitles only"}
    assert not any(r.offline for r in rows[len(offline):])


def test_turning_pivots_off_leaves_direct_pairs():
    pt = RouteTable(Config.from_dict({"translate": {"pivot_langs": []}})).route("pt")
    assert (pt.mt, pt.mt_hint) == ("subtitles only",
                                   "allow the pivot es in translate.pivot_langs (en->es and es->pt are installed)")


def test_languages_command(capsys):
    assert main(["languages", "--offline"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Dubbing from en: ") and out[1].split()[:3] == ["lang", "name", "MT"]
    rows = {line.split()[0]: line for line in out[2:] if line and not line.startswith("MT:")}
    assert "en-es, es-pt (pivot)" in rows["pt"] and "espeak-ng:pt / piper:pt_BR-faber-medium" in rows["pt"]
    assert "en-es (direct)" in rows["es"] and "whisper-base / whisper-large-v3" in rows["es"]
    assert "ro" not in rows and "de" not in rows


def test_validate_prints_each_pairs_route(tmp_path, capsys):
    catalog = tmp_path / "c.jsonl"
    catalog.write_text(json.dumps({"video_id": "a", "uri": "a.mp4", "source_lang": "en",
                                   "target_langs": ["es", "pt", "ro", "de"], "subtitles_uri_de": "a.de.srt"}) + "\n")
    assert main(["validate", "--catalog", str(catalog)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{catalog}: ok, 1 videos, 4 (video, language) pairs",
        "row 1 a (source en):",
        "  es: MT en-es (direct); TTS espeak-ng:es; back-transcription whisper-base",
        "  pt: MT en-es, es-pt (pivot); TTS espeak-ng:pt; back-transcription whisper-base",
        "  ro: MT NO ROUTE, will fail: add subtitles_uri_ro; Debian's Apertium has no pair into ro "
        "(apertium-es-ro only translates from it); TTS espeak-ng:ro; back-transcription whisper-base",
        "  de: MT subtitles_uri_de; TTS espeak-ng:de; back-transcription whisper-base",
    ]
