"""Target-language text per segment: the catalog's translated subtitles, else machine translation."""
from __future__ import annotations

from operators import languages, subtitles
from operators.backends import load_translator
from operators.backends.apertium import install_hint
from operators.base import Operator, Resources, RowError, SkipRow, add_model, require_binary
from operators.config import TranslateConfig
from operators.schema import RESULT


class NoTranslationRoute(RowError):
    pass


# What a re-voiced line takes over from the source line under it: who speaks it, on which face.
SPEAKER_FIELDS = ("speaker_track_id", "speaker_id", "lip_reason", "source_sync_offset_frames",
                  "source_sync_confidence")


def replaced_lines(row: dict) -> dict:
    """Line replacement (ADR) in the video's own language: the catalog's lines become the dubbed
    segments; every source line they do not overlap keeps its voice (no target text: not dubbed).

    A replaced line takes the speaker and face of the source line it overlaps most, so its lips are
    re-rendered by that speaker's model; over no source line, it keeps the picture, with the reason."""
    from operators.schema import segment_id

    source = row["segments"] or []
    lines = sorted(row["replace_lines"], key=lambda x: x["start_s"])

    def overlap(s: dict, line: dict) -> float:
        return min(s["end_s"], line["end_s"]) - max(s["start_s"], line["start_s"])

    kept = [{**s, "target_text": None} for s in source if all(overlap(s, line) <= 0 for line in lines)]
    replaced = []
    for line in lines:
        under = [s for s in source if overlap(s, line) > 0]
        best = max(under, key=lambda s: overlap(s, line), default=None)
        spoken = "its new recording" if line.get("audio_uri") else "its new text"
        seg = {"segment_id": segment_id(row["video_id"], line["start_s"], line["end_s"]),
               "start_s": line["start_s"], "end_s": line["end_s"],
               "source_text": " ".join(s["source_text"] or "" for s in under).strip() or None,
               "words": [], "notes": [f"replaced line (ADR): {spoken}"],
               "target_text": line.get("text") or "", "replacement_audio_uri": line.get("audio_uri")}
        if best is not None:
            seg.update({k: best.get(k) for k in SPEAKER_FIELDS})
        else:
            seg["lip_reason"] = "no source line under the replaced line: no speaker to re-render"
        replaced.append(seg)
    row["segments"] = sorted(kept + replaced, key=lambda s: s["start_s"])
    row["translation_route"] = ["replaced lines"]
    row["models"] = list(row.get("models") or []) + [
        {"stage": "translate", "name": "catalog-replaced-lines", "version": "",
         "license": "the catalog's own (no model)", "source": "replace_lines"}]
    return row


class Translate(Operator):
    name = "translate"
    reads = ("segments", "source_lang", "lang", "translations", "replace_lines")
    writes = ("segments.target_text", "segments.target_alternatives", "translation_route")
    resources = Resources(num_cpus=1, pool=(1, 2))
    output_schema = RESULT

    def check_dependencies(self) -> None:
        if self.backend is None and self.config.translate.backend == "apertium":
            require_binary("apertium", "apertium apertium-en-es")

    def setup(self) -> None:
        self.backend = self.backend or load_translator(self.config.translate)

    def process_row(self, row: dict) -> dict:
        src, tgt = row["source_lang"], row["lang"]
        if src == tgt:
            if row.get("replace_lines"):
                return replaced_lines(row)
            raise SkipRow(f"target language {tgt} is the source language")
        segments = row["segments"]
        sidecar = next((t["subtitles_uri"] for t in row.get("translations") or [] if t["lang"] == tgt), None)
        notes: list[tuple[str, ...]] = [() for _ in segments]
        alternatives: list[list[str]] = [[] for _ in segments]
        if sidecar:
            # Tidied first: a duplicated cue would otherwise be spoken twice in its segment.
            cues = subtitles.tidy_cues(subtitles.read_cues(sidecar), "translated cue")
            assigned = subtitles.assign_cues([(s["start_s"], s["end_s"]) for s in segments], cues)
            texts, notes = [c.text for c in assigned], [c.notes for c in assigned]
            row["models"] = list(row.get("models") or []) + [
                {"stage": self.name, "name": "catalog-subtitles", "version": "",
                 "license": "the catalog's own (no model)", "source": sidecar}]
            row["translation_route"] = ["subtitles"]
        else:
            steps = self.backend.route(src, tgt) if self.backend is not None else []
            if not steps:
                raise NoTranslationRoute(self._no_route(src, tgt))
            texts = self.backend.translate([s["source_text"] for s in segments], src, tgt)
            alternatives = self._alternatives(segments, src, tgt, texts)
            for a, b in steps:   # a pivot is two models, each with its own version and licence
                add_model(row, self.name, self.backend.model_info(a, b))
            row["translation_route"] = [f"{a}-{b}" for a, b in steps]
        if len(texts) != len(segments):
            raise RuntimeError(f"translation returned {len(texts)} texts for {len(segments)} segments")
        row["segments"] = [{**s, "target_text": t.strip(), "target_alternatives": alt or None,
                            "notes": [*(s.get("notes") or []), *n]}
                           for s, t, n, alt in zip(segments, texts, notes, alternatives)]
        if not any(s["target_text"] for s in row["segments"]):
            raise SkipRow("the translation is empty for every segment")
        return row

    def _alternatives(self, segments: list[dict], src: str, tgt: str, texts: list[str]) -> list[list[str]]:
        """Each line's other wordings, where the backend offers them: distinct, not empty, not the chosen one."""
        n = self.config.translate.alternatives
        offered = getattr(self.backend, "alternatives", None)
        if not n or offered is None:
            return [[] for _ in segments]
        found = offered([s["source_text"] for s in segments], src, tgt, n)
        if len(found) != len(segments):
            raise RuntimeError(f"translation alternatives came back for {len(found)} of {len(segments)} segments")
        out = []
        for text, alts in zip(texts, found):
            seen = {text.strip()}
            out.append([a for a in (x.strip() for x in alts) if a and not (a in seen or seen.add(a))][:n])
        return out

    def _no_route(self, src: str, tgt: str) -> str:
        """Why there is no route, and what would give one."""
        backend = self.config.translate.backend
        fixes = [f"add a subtitles_uri_{tgt} column to the catalog"]
        if self.backend is None:
            why = f"machine translation is off (translate.backend = {backend!r})"
        else:
            pivots = self.config.translate.pivot_langs
            into = sorted({b for a, b in self.backend.routes() if languages.base(a) == languages.base(src)})
            why = (f"the {backend!r} backend translates {src} only into {', '.join(into) or 'nothing'} "
                   f"(pivots: {', '.join(pivots) or 'none allowed'})")
            if backend == "apertium":
                # The default pivots too: a pivot left out of the config may be all that is missing.
                candidates = list(dict.fromkeys([*pivots, *TranslateConfig().pivot_langs]))
                hint = install_hint(src, tgt, self.backend.routes(), candidates)
                fixes.append(f"apt-get {hint}" if hint.startswith("install ") else
                             hint if hint.startswith("allow ") else f"({hint})")
        return (f"no translation route {src}->{tgt}: the catalog has no subtitles_uri_{tgt} for this video and "
                f"{why}. To dub {tgt}: {'; or '.join(fixes)}")
