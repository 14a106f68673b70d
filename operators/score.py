"""First quality scores per (video, language): duration fit and back-transcription WER/CER."""
from __future__ import annotations

import jiwer

from operators import uri as uris
from operators.backends import load_asr
from operators.base import Operator, Resources, add_model
from operators.schema import RESULT

_NORMALIZE = jiwer.Compose([
    jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip(),
    jiwer.ReduceToListOfListOfWords(),
])
_NORMALIZE_CHARS = jiwer.Compose([
    jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip(),
    jiwer.ReduceToListOfListOfChars(),
])


def error_rates(references: list[str], hypotheses: list[str]) -> tuple[float, float]:
    """(WER, CER) after lower-casing and removing punctuation; an empty hypothesis scores 1.0.

    Pairs whose reference has no words are left out (there is nothing to get wrong).
    """
    pairs = [(r, h) for r, h in zip(references, hypotheses) if _NORMALIZE(r) != [[]]]
    if not pairs:
        return 0.0, 0.0
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    wer = jiwer.wer(refs, hyps, reference_transform=_NORMALIZE, hypothesis_transform=_NORMALIZE)
    cer = jiwer.cer(refs, hyps, reference_transform=_NORMALIZE_CHARS, hypothesis_transform=_NORMALIZE_CHARS)
    return float(wer), float(cer)


class Score(Operator):
    name = "score"
    reads = ("segments", "lang")
    writes = ("wer", "cer", "speech_rate_mean", "speech_rate_max", "share_sped_up",
              "overflow_s_total", "cut_s_total", "segments.back_text", "segments.wer")
    resources = Resources(num_cpus=1, pool=(1, 2))
    output_schema = RESULT

    def setup(self) -> None:
        if self.config.score.back_transcribe:
            self.backend = self.backend or load_asr(self.config.asr)

    def process_row(self, row: dict) -> dict:
        lang = row["lang"]
        segments = [dict(s) for s in row["segments"]]
        dubbed = [s for s in segments if s.get("fit_uri")]
        rates = [s["speech_rate"] for s in dubbed]
        scores = {
            "segments_dubbed": len(dubbed),
            "speech_rate_mean": sum(rates) / len(rates) if rates else None,
            "speech_rate_max": max(rates) if rates else None,
            "share_sped_up": sum(r > 1.0 + 1e-9 for r in rates) / len(rates) if rates else None,
            "overflow_s_total": sum(s["overflow_s"] for s in dubbed),
            "cut_s_total": sum(s["cut_s"] for s in dubbed),
        }
        if self.config.score.back_transcribe and dubbed:
            for s in dubbed:
                with uris.local_copy(s["fit_uri"]) as path:
                    s["back_text"] = self.backend.transcribe_text(path, lang)
                s["wer"], s["cer"] = error_rates([s["target_text"]], [s["back_text"]])
            scores["wer"], scores["cer"] = error_rates([s["target_text"] for s in dubbed],
                                                       [s["back_text"] for s in dubbed])
            add_model(row, self.name, self.backend.model_info(lang))
        return {**row, **scores, "segments": segments}
