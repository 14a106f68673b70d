import pytest

from operators import languages as L


def test_normalize_and_base():
    assert L.normalize(" pt_BR ") == "pt-br"
    assert L.base("pt-BR") == "pt"
    assert L.base("es") == "es"


def test_espeak_languages_parsed_from_the_voices_list():
    langs = L.espeak_languages()
    assert {"en-us", "es", "es-419", "cmn", "de", "pt-br"} <= langs
    assert "language" not in langs          # the header line is not a language
    assert L.espeak_languages() is langs    # parsed once


def test_is_known():
    assert L.is_known("es")
    assert L.is_known("pt-BR")
    assert L.is_known("de-AT")              # espeak-ng knows the base
    assert L.is_known("zh")                 # an espeak-ng alias of cmn, and a Piper default
    assert not L.is_known("xx")
    assert not L.is_known("")


def test_espeak_voice():
    assert L.espeak_voice("es") == "es"
    assert L.espeak_voice("pt_BR") == "pt-br"
    assert L.espeak_voice("zh") == "cmn"
    assert L.espeak_voice("es-MX") == "es-419"
    assert L.espeak_voice("de-AT") == "de"
    assert L.espeak_voice("xx") is None


def test_alpha3_for_apertium():
    expected = {"en": "eng", "es": "spa", "de": "deu", "ca": "cat", "pt": "por", "fr": "fra",
                "it": "ita", "gl": "glg", "eu": "eus", "oc": "oci", "pt-br": "por", "spa": "spa",
                "ast": "ast", "nb": "nob"}
    assert {code: L.alpha3(code) for code in expected} == expected
    with pytest.raises(KeyError):
        L.alpha3("xx")
    assert L.from_alpha3("spa") == "es"
    assert L.from_alpha3("ast") == "ast"


def test_iso639_2b_for_mp4_tags():
    assert [L.iso639_2b(c) for c in ("es", "de", "en", "fr", "zh", "pt-BR", "xx")] == [
        "spa", "ger", "eng", "fre", "chi", "por", "und"]
