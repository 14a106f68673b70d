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
    # Without its full stop (Whisper's multilingual models often leave it out) Apertium's tagger misreads the
    # line ("I café de bebida cada mañana"); it is sent as a sentence.
    assert mt.translate(["I drink coffee every morning"], "en", "es") == ["Bebo café cada mañana."]
    assert mt.translate(["Is it red?"], "en", "es") == ["Es rojo?"]


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
    assert not mt.supports("en", "de")      # Debian has no Apertium pair into German
    assert {("en", "es"), ("es", "en"), ("es", "en-us")} <= set(mt.routes())


def test_unsupported_pair_names_the_installed_routes(mt):
    with pytest.raises(ValueError, match=r"no installed pair en->de \(installed: .*en->es"):
        mt.translate(["Hello"], "en", "de")


# The pairs scripts/install.sh installs: English to Portuguese, Italian and French go through Spanish.
@pytest.mark.parametrize("target, route", [
    ("pt", [("en", "es"), ("es", "pt")]),
    ("pt-BR", [("en", "es"), ("es", "pt-br")]),
    ("it", [("en", "es"), ("es", "it")]),
    ("fr", [("en", "es"), ("es", "fr")]),
    ("ca", [("en", "ca")]),
])
def test_routes_of_the_installed_pairs(mt, target, route):
    assert mt.route("en", target) == route and mt.supports("en", target)


def test_pivot_through_spanish(mt):
    """Rule-based twice: "every morning" becomes "cada mañana", then "a cada amanhã" (tomorrow)."""
    texts = ["The house is red.", "", "I drink coffee every morning."]
    expected = ["A casa é vermelha.", "", "Bebo café a cada amanhã."]
    assert mt.translate(texts, "en", "pt") == expected
    # the same as the two pairs one after the other (the tidying in between changes nothing here)
    assert mt.translate(mt.translate(texts, "en", "es"), "es", "pt") == expected
    assert [mt.model_info(*step).name for step in mt.route("en", "pt")] == ["apertium:eng-spa", "apertium:es-pt"]
    assert mt.model_info("es", "pt").license == "GPL-3.0"


def _fake_pairs(tmp_path, modes: dict[str, str]):
    (tmp_path / "modes").mkdir()
    for name, script in modes.items():
        (tmp_path / "modes" / f"{name}.mode").write_text(script + "\n")
    return tmp_path


def _word_swaps(tmp_path, swaps: dict[str, str]):
    """Pairs that each swap one word (a chain's order shows in the result) and log one line per process start."""
    script = tmp_path / "swap.sh"
    script.write_text(f"#!/bin/sh\necho \"$1\" >> '{tmp_path}/starts.log'\nexec sed -e \"$2\"\n")
    script.chmod(0o755)
    return _fake_pairs(tmp_path, {m: f"'{script}' {m} 's/{sed}/g'" for m, sed in swaps.items()})


def test_pivot_order_chain_and_one_process_per_pair(tmp_path):
    from operators.config import TranslateConfig

    data = _word_swaps(tmp_path, {"eng-spa": "house/casa", "spa-por": "casa/lar", "eng-cat": "house/casa-ca",
                                  "cat-por": "casa-ca/llar-pt", "cat-ita": "casa-ca/casa-it", "ron-spa": "casa/casa"})
    mt = ApertiumMT(data_dir=data)
    assert mt.route("en", "pt") == [("en", "es"), ("es", "pt")]        # es is the first pivot
    assert mt.route("en", "it") == [("en", "ca"), ("ca", "it")]        # the next pivot that has both halves
    assert mt.route("en", "ro") == []                                  # only ro->es exists
    assert mt.route("en", "es") == [("en", "es")]                      # direct wins
    # a line without final punctuation is sent as a sentence (a full stop added), blank lines stay blank
    assert mt.translate(["my house", "", "a house here", "no"], "en", "pt") == ["my lar.", "", "a lar here.", "no."]
    assert sorted((tmp_path / "starts.log").read_text().split()) == ["eng-spa", "spa-por"]
    catalan_first = ApertiumMT(TranslateConfig(pivot_langs=["ca", "es"]), data_dir=data)
    assert catalan_first.route("en", "pt") == [("en", "ca"), ("ca", "pt")]
    assert catalan_first.translate(["my house"], "en", "pt") == ["my llar-pt."]
    direct_only = ApertiumMT(TranslateConfig(pivot_langs=[]), data_dir=data)
    assert direct_only.route("en", "pt") == [] and not direct_only.supports("en", "pt")


def test_a_failing_second_pair_fails_the_batch(tmp_path):
    data = _fake_pairs(tmp_path, {"eng-spa": "sed -e 's/^/x/'", "spa-por": "cat >/dev/null; echo broken >&2; exit 3"})
    mt = ApertiumMT(data_dir=data)
    with pytest.raises(RuntimeError, match=r"apertium eng-spa \| spa-por failed \(exit \[0, 3\]\): broken"):
        mt.translate(["one"], "en", "pt")


def test_a_mode_without_its_data_is_not_a_route(tmp_path):
    """Debian's apertium-eo-es ships es-eo.mode but not the files it names."""
    data = _fake_pairs(tmp_path, {"es-eo": f"lt-proc '{tmp_path}/apertium-eo-es/es-eo.automorf.bin'",
                                  "eng-spa": "cat"})
    assert ApertiumMT(data_dir=data).routes() == [("en", "es")]


def test_install_hint_names_the_packages_that_would_give_a_route():
    from operators.backends.apertium import install_hint

    pivots = ["es", "ca", "gl"]
    assert install_hint("en", "es", [], pivots) == "install apertium-eng-spa (en->es)"
    assert install_hint("en", "fr", [("en", "es")], pivots) == (
        "install apertium-fr-es (through es), or apertium-eng-cat and apertium-fra-cat (through ca)")
    assert install_hint("en", "pt", [("en", "es"), ("en", "ca")], ["es"]) == "install apertium-es-pt (through es)"
    assert install_hint("en", "ro", [], pivots) == (
        "Debian's Apertium has no pair into ro (apertium-es-ro only translates from it)")
    assert install_hint("en", "de", [], pivots) == "Debian's Apertium has no pair into de"


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
