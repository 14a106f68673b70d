import subprocess

import pytest

from operators.backends.apertium import ApertiumMT
from operators.backends.protocols import ModelInfo, TranslationBackend


@pytest.fixture(scope="module")
def mt():
    return ApertiumMT()


def test_translates_english_to_spanish(mt):
    assert isinstance(mt, TranslationBackend)
    assert mt.translate(["The house is red."], "en", "es") == ["La casa es roja."]


def test_one_output_per_input_in_order(mt):
    out = mt.translate(["The house is red.", "", "I have a car.\nThe dog runs."], "en", "es")
    assert len(out) == 3
    assert out[0] == "La casa es roja."
    assert out[1] == ""
    assert "coche" in out[2] and "perro" in out[2]
    assert mt.translate([], "en", "es") == []
    assert mt.translate(["I have a car."], "es", "en") != []


def test_routes_from_installed_modes(mt):
    assert mt.supports("en", "es")
    assert mt.supports("es", "en")
    assert mt.supports("es", "en-US")
    assert not mt.supports("en", "fr")
    assert {("en", "es"), ("es", "en"), ("es", "en-us")} <= set(mt.routes())


def test_unsupported_pair_names_the_installed_routes(mt):
    with pytest.raises(ValueError, match=r"no installed pair en->fr \(installed: .*en->es"):
        mt.translate(["Hello"], "en", "fr")


def test_model_info_records_the_debian_package(mt):
    dpkg = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "apertium-eng-spa"],
                          capture_output=True, text=True).stdout.strip()
    info = mt.model_info("en", "es")
    assert info == ModelInfo(name="apertium:eng-spa", version=dpkg or "unknown", license="GPL-3.0",
                             source="path:/usr/share/apertium/modes/eng-spa.mode")
    assert mt.model_info("es", "en").version == info.version


def test_line_count_mismatch_is_an_error(tmp_path):
    """A pair whose pipeline splits lines must fail loudly, not misalign the outputs."""
    (tmp_path / "modes").mkdir()
    (tmp_path / "modes" / "eng-spa.mode").write_text("sed -e 's/$/\\n/'\n")
    broken = ApertiumMT(data_dir=tmp_path)
    assert broken.routes() == [("en", "es")]
    with pytest.raises(RuntimeError, match="returned 3 lines for 2 inputs"):
        broken.translate(["one", "two"], "en", "es")


def test_apertium_output_is_tidied():
    from operators.backends.apertium import _tidy

    assert _tidy(" Hola,  soy un astronauta . ") == "Hola, soy un astronauta."
    assert _tidy("¿Qué tal ?  (bien )") == "¿Qué tal? (bien)"
