import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.catalog import CatalogError, load_catalog, parse_langs


def _jsonl(tmp_path, rows, name="c.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_three_formats_give_the_same_table(tmp_path):
    (tmp_path / "de.srt").write_text("")
    rows = [{"video_id": "a", "uri": "media/a.mp4", "target_langs": ["es", "de"],
             "source_lang": "en", "subtitles_uri_de": "de.srt"},
            {"video_id": "b", "uri": "/abs/b.mp4", "target_langs": None, "source_lang": None,
             "subtitles_uri_de": None}]
    from_jsonl = load_catalog(_jsonl(tmp_path, rows), default_langs=["fr"])
    csv = tmp_path / "c.csv"
    csv.write_text("video_id,uri,target_langs,source_lang,subtitles_uri_de\n"
                   'a,media/a.mp4,"es,de",en,de.srt\nb,/abs/b.mp4,,,\n')
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    for other in (str(csv), str(tmp_path / "c.parquet")):
        assert load_catalog(other, default_langs=["fr"]).to_pylist() == from_jsonl.to_pylist()
    a, b = from_jsonl.to_pylist()
    assert a["uri"] == str(tmp_path / "media" / "a.mp4")            # relative to the catalog's folder
    assert a["translations"] == [{"lang": "de", "subtitles_uri": str(tmp_path / "de.srt")}]
    assert a["target_langs"] == ["es", "de"] and b["target_langs"] == ["fr"]   # --langs fills the gap


@pytest.mark.parametrize("rows, needle", [
    ([{"video_id": "a", "uri": "x.mp4"}, {"video_id": "a", "uri": "y.mp4"}],
     "row 2 (video_id 'a'), field video_id: duplicate of row 1"),
    ([{"video_id": "Ep1", "uri": "x.mp4"}, {"video_id": "ep1", "uri": "y.mp4"}],
     "row 2 (video_id 'ep1'), field video_id: differs only in case from row 1"),
    ([{"video_id": "../x", "uri": "x.mp4"}], "row 1 (video_id '../x'), field video_id"),
    ([{"video_id": "a/b", "uri": "x.mp4"}], "field video_id"),
    ([{"video_id": "a", "uri": "x.mp4", "target_langs": ["es", "xx"]}],
     "row 1 (video_id 'a'), field target_langs: 'xx' is not a BCP 47 language tag"),
    ([{"video_id": "a", "uri": "x.mp4", "target_langs": ["qaa"]}],      # well-formed, but nobody speaks it
     "row 1 (video_id 'a'), field target_langs: unknown language code 'qaa'"),
    ([{"video_id": "a", "uri": ""}], "field uri: missing or empty"),
    ([{"video_id": "a", "uri": "x.mp4", "source_subtitles_uri": "s.srt"}], "field source_lang: required"),
    ([{"video_id": "a", "uri": "x.mp4", "subtitles_uri_de": "s.txt"}], "field subtitles_uri_de"),
    ([{"video_id": "a", "uri": "x.mp4", "subtitle_uri_de": "s.srt"}], "unknown column(s) subtitle_uri_de"),
    ([{"uri": "x.mp4"}], "missing required column(s) video_id"),
    ([{"video_id": "a", "uri": "face.jpg"}], "row 1 (video_id 'a'), field audio_uri: a photo (uri is an image) "
                                            "needs the speech it is to say"),
    ([{"video_id": "a", "uri": "x.mp4", "audio_uri": "s.wav"}], "field audio_uri: only a photo"),
])
def test_catalog_problems_name_the_row_and_field(tmp_path, rows, needle):
    with pytest.raises(CatalogError) as e:
        load_catalog(_jsonl(tmp_path, rows), default_langs=["es"])
    assert needle in str(e.value)


def test_no_target_languages_anywhere_is_an_error(tmp_path):
    with pytest.raises(CatalogError, match="no target languages"):
        load_catalog(_jsonl(tmp_path, [{"video_id": "a", "uri": "x.mp4"}]))


def test_malformed_files(tmp_path):
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"video_id": "a", "uri": "x"}\n{not json\n')
    with pytest.raises(CatalogError, match="line 2: not valid JSON"):
        load_catalog(str(bad), ["es"])
    bad_pq = tmp_path / "c.parquet"
    bad_pq.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(CatalogError, match="not a readable Parquet file"):
        load_catalog(str(bad_pq), ["es"])
    with pytest.raises(CatalogError, match="unknown catalog format"):
        load_catalog(str(tmp_path / "c.xlsx"), ["es"]) if (tmp_path / "c.xlsx").write_text("x") else None
    with pytest.raises(CatalogError, match="catalog file not found"):
        load_catalog(str(tmp_path / "missing.csv"), ["es"])
    empty = tmp_path / "e.csv"
    empty.write_text("video_id,uri\n")
    with pytest.raises(CatalogError, match="no rows"):
        load_catalog(str(empty), ["es"])


def test_parse_langs_normalises_and_dedupes():
    assert parse_langs("es, de,ES,pt_BR") == ["es", "de", "pt-br"]
    with pytest.raises(CatalogError, match="'klingon' is not a BCP 47 language tag"):
        parse_langs("es,klingon")


# Each of these passed validation before (only the part before the first '-' was checked), and the
# code then became part of output and work paths, or was printed into report.html.
HOSTILE_CODES = ["de-/../../../outside", "es-<img src=x onerror=alert(1)>", "de-..", "es-x/../../y",
                 "de-\\..\\..\\w", "es-%2e%2e", "de-\nx", "es-419/.."]


@pytest.mark.parametrize("code", HOSTILE_CODES)
def test_a_language_code_is_checked_whole_wherever_it_enters(tmp_path, code):
    (tmp_path / "s.srt").write_text("")
    def problem(row, default_langs=("es",)):
        with pytest.raises(CatalogError) as e:
            load_catalog(_jsonl(tmp_path, [{"video_id": "a", "uri": "x.mp4", **row}]), list(default_langs))
        return str(e.value)

    assert "row 1 (video_id 'a'), field target_langs: " in problem({"target_langs": ["es", code]})
    assert "row 1 (video_id 'a'), field source_lang: " in problem({"source_lang": code})
    column = f"subtitles_uri_{code}"
    assert f"row 1 (video_id 'a'), field {column}: in the column name" in problem({column: "s.srt"})
    with pytest.raises(CatalogError, match="--langs: "):
        parse_langs(f"es,{code}")
    from operators.config import Config, ConfigError
    with pytest.raises(ConfigError, match="tts.piper_voices"):
        Config.from_dict({"tts": {"piper_voices": {code: "en_US-lessac-medium"}}})


def test_valid_tags_are_normalised_everywhere(tmp_path):
    (tmp_path / "s.srt").write_text("")
    row = {"video_id": "a", "uri": "x.mp4", "target_langs": "pt_BR, es-419", "source_lang": "EN",
           "subtitles_uri_pt-BR": "s.srt"}
    (got,) = load_catalog(_jsonl(tmp_path, [row])).to_pylist()
    assert got["target_langs"] == ["pt-br", "es-419"] and got["source_lang"] == "en"
    assert got["translations"][0]["lang"] == "pt-br"


def test_a_presigned_subtitles_url_is_judged_by_its_path():
    from operators.catalog import _is_subtitles

    assert _is_subtitles("https://h/s.srt?X-Amz-Signature=abc&X-Amz-Credential=k")
    assert not _is_subtitles("https://h/s.txt?x=.srt")


def test_a_photo_row_keeps_its_speech_beside_it(tmp_path):
    (row,) = load_catalog(_jsonl(tmp_path, [{"video_id": "p", "uri": "face.png", "audio_uri": "speech/p.wav"}]),
                          default_langs=["es"]).to_pylist()
    assert row["uri"] == str(tmp_path / "face.png") and row["audio_uri"] == str(tmp_path / "speech" / "p.wav")
