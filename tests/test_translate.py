"""The translate stage: where each target's text comes from, the route recorded, and why a language has none."""
import pytest

from operators.base import RowError
from operators.config import Config
from operators.translate import NoTranslationRoute, Translate


def _row(lang, translations=None):
    return {"video_id": "v", "source_lang": "en", "lang": lang, "translations": translations or [], "models": [],
            "segments": [{"start_s": 0.5, "end_s": 2.0, "source_text": "The house is red.", "notes": []},
                         {"start_s": 3.0, "end_s": 4.5, "source_text": "I drink coffee every morning.",
                          "notes": []}]}


@pytest.fixture(scope="module")
def translate(tmp_path_factory):
    d = tmp_path_factory.mktemp("translate")
    op = Translate(Config(), str(d / "work"), str(d / "out"))
    op.setup()
    return op


def test_a_pivot_records_its_route_and_both_pairs(translate):
    out = translate.process_row(_row("pt"))
    assert [s["target_text"] for s in out["segments"]] == ["A casa é vermelha.", "Bebo café a cada amanhã."]
    assert out["translation_route"] == ["en-es", "es-pt"]
    assert [(m["name"], m["license"]) for m in out["models"]] == [("apertium:eng-spa", "GPL-3.0"),
                                                                  ("apertium:es-pt", "GPL-3.0")]
    assert out["models"][1]["source"] == "path:/usr/share/apertium/modes/es-pt.mode"


def test_a_direct_pair_and_subtitles(translate, tmp_path):
    assert translate.process_row(_row("es"))["translation_route"] == ["en-es"]
    srt = tmp_path / "v.pt.srt"
    srt.write_text("1\n00:00:00,500 --> 00:00:02,000\nA casa é vermelha.\n\n"
                   "2\n00:00:03,000 --> 00:00:04,500\nTomo café todas as manhãs.\n")
    out = translate.process_row(_row("pt", [{"lang": "pt", "subtitles_uri": str(srt)}]))
    assert out["translation_route"] == ["subtitles"]
    assert [s["target_text"] for s in out["segments"]] == ["A casa é vermelha.", "Tomo café todas as manhãs."]


def test_no_route_names_what_would_give_one(translate):
    with pytest.raises(NoTranslationRoute) as e:
        translate.process_row(_row("ro"))
    assert isinstance(e.value, RowError)
    message = str(e.value)
    assert message.startswith("no translation route en->ro: the catalog has no subtitles_uri_ro for this video "
                              "and the 'apertium' backend translates en only into ")
    assert message.endswith("(pivots: es, ca, gl). To dub ro: add a subtitles_uri_ro column to the catalog; or "
                            "(Debian's Apertium has no pair into ro (apertium-es-ro only translates from it))")


def test_pivots_can_be_turned_off(tmp_path):
    op = Translate(Config.from_dict({"translate": {"pivot_langs": []}}), str(tmp_path), str(tmp_path))
    op.setup()
    with pytest.raises(NoTranslationRoute, match=r"\(pivots: none allowed\)\. To dub pt: add a subtitles_uri_pt "
                                                 r"column to the catalog; or allow the pivot es in "
                                                 r"translate.pivot_langs \(en->es and es->pt are installed\)$"):
        op.process_row(_row("pt"))


class Reworder:
    """A translation backend that words each line several ways (as a seq2seq model's n-best would)."""

    def __init__(self, wordings):
        self.wordings = wordings        # source text -> [best, other, ...]

    def supports(self, src, tgt):
        return True

    def routes(self):
        return [("en", "es")]

    def route(self, src, tgt):
        return [(src, tgt)]

    def translate(self, texts, src, tgt):
        return [self.wordings[t][0] for t in texts]

    def alternatives(self, texts, src, tgt, n):
        return [self.wordings[t][1:n + 1] for t in texts]

    def model_info(self, src, tgt):
        from operators.backends.protocols import ModelInfo

        return ModelInfo(name="reworder", version="1", license="MIT", source="test")


def test_a_backend_that_offers_other_wordings_has_them_kept_per_line(tmp_path):
    backend = Reworder({"The house is red.": ["La casa es roja.", "La casa es roja.", " ", "Casa roja."],
                        "I drink coffee every morning.": ["Bebo café cada mañana.", "Tomo café cada mañana.",
                                                          "Tomo café.", "Café cada mañana."]})
    op = Translate(Config(), str(tmp_path), str(tmp_path), backend=backend)
    out = op.process_row(_row("es"))
    # The chosen wording and blanks are dropped, the rest kept best first, up to translate.alternatives (3).
    assert [s["target_alternatives"] for s in out["segments"]] == [
        ["Casa roja."], ["Tomo café cada mañana.", "Tomo café.", "Café cada mañana."]]
    op = Translate(Config.from_dict({"translate": {"alternatives": 0}}), str(tmp_path), str(tmp_path), backend=backend)
    assert [s["target_alternatives"] for s in op.process_row(_row("es"))["segments"]] == [None, None]
