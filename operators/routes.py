"""Per target language, how raydub reaches it: ASR, machine translation and TTS, offline and in production.

One table behind `raydub languages`, `raydub validate` and the README's list:
the same backends a run would build, asked the same questions (Apertium's
installed pairs and pivots, the Piper voice table, espeak-ng's voices,
Whisper's languages), so what it prints is what a run does.

"Offline" is this machine with no network: models that Python packages ship
or the node cache holds. "Production" is what a connected cluster resolves:
Whisper large-v3 and Piper voices downloaded from the hub. Machine
translation is the same in both (the catalog's subtitles, else Apertium):
raydub has no neural MT backend yet.
"""
from __future__ import annotations

from dataclasses import dataclass

from operators import languages
from operators.config import Config, TranslateConfig

PRODUCTION_ASR = "whisper-large-v3"
# Every part of a route names its licence; these words mark one a studio may not ship.
_NON_COMMERCIAL = ("non-commercial", "noncommercial", "-nc-", "cpml")


@dataclass(frozen=True)
class Route:
    lang: str
    name: str
    mt: str                         # "direct", "pivot", "subtitles only" or "source" (nothing to translate)
    mt_steps: tuple[str, ...]       # the pairs, as recorded in translation_route: ("en-es", "es-pt")
    mt_hint: str                    # for "subtitles only": what would give a machine-translation route
    asr_offline: str | None         # the back-transcription model; None: the dub is not transcribed back
    asr_production: str | None
    tts_offline: str | None         # "piper:en_US-joe-medium", "espeak-ng:pt"; None: nothing speaks it here
    tts_production: str | None
    licences: tuple[tuple[str, str], ...]   # (part, licence) of every model on the offline route
    non_commercial: tuple[str, ...]          # the parts whose licence excludes commercial use

    @property
    def offline(self) -> bool:
        """Dubbed on this machine with no network and no translated subtitles."""
        return self.tts_offline is not None and self.mt != "subtitles only"


def whisper_language(code: str) -> str | None:
    """Whisper's code for a language, or None when Whisper does not know it."""
    from operators.backends.whisper import FasterWhisperASR

    try:
        return FasterWhisperASR._whisper_language(code)
    except ValueError:
        return None


class RouteTable:
    """Built once per command: loads the translation backend and reads the voice tables."""

    def __init__(self, config: Config | None = None) -> None:
        from operators.backends import load_translator
        from operators.backends.piper_tts import PiperTTS

        self.config = config or Config()
        self.mt_error = ""
        try:
            self.mt = load_translator(self.config.translate)
        except Exception as e:   # apertium not installed: every language is subtitles only, and says why
            self.mt, self.mt_error = None, f"{type(e).__name__}: {e}"
        self.piper = PiperTTS(self.config.tts)

    # --- the parts -----------------------------------------------------------------

    def translation(self, source: str, target: str) -> tuple[str, tuple[str, ...], str]:
        """(kind, steps, hint) for source -> target by machine translation."""
        from operators.backends.apertium import install_hint

        if languages.base(source) == languages.base(target):
            return "source", (), ""
        steps = self.mt.route(source, target) if self.mt is not None else []
        if steps:
            return ("direct" if len(steps) == 1 else "pivot"), tuple(f"{a}-{b}" for a, b in steps), ""
        if self.mt is None:
            hint = self.mt_error or f"machine translation is off (translate.backend = {self.config.translate.backend!r})"
        elif self.config.translate.backend == "apertium":
            # The default pivots too, as the translate stage's error does: one may be all that is missing.
            pivots = [*self.config.translate.pivot_langs, *TranslateConfig().pivot_langs]
            hint = install_hint(source, target, self.mt.routes(), list(dict.fromkeys(pivots)))
        else:
            hint = f"the {self.config.translate.backend!r} backend has no route"
        return "subtitles only", (), hint

    def asr(self, lang: str) -> tuple[str | None, str | None]:
        if whisper_language(lang) is None:
            return None, None
        offline = self.config.asr.model_en if languages.base(lang) == "en" else self.config.asr.model_multilingual
        return offline, PRODUCTION_ASR

    def tts(self, lang: str) -> tuple[str | None, str | None]:
        from operators.backends.piper_tts import _model_name
        from operators.models import available_offline

        backend = self.config.tts.backend
        voice = self.piper.voice_name(lang) if backend in ("auto", "piper") else None
        piper = _model_name(voice) if voice else None
        espeak = languages.espeak_voice(lang) if backend in ("auto", "espeak-ng") else None
        espeak = f"espeak-ng:{espeak}" if espeak else None
        if backend not in ("auto", "piper", "espeak-ng"):
            return backend, backend
        offline = piper if piper and available_offline(piper) else espeak
        return offline, piper or espeak

    # --- a row ---------------------------------------------------------------------

    def route(self, lang: str, source: str = "en") -> Route:
        from operators.models import registry_entry

        lang = languages.normalize(lang)
        kind, steps, hint = self.translation(source, lang)
        asr_offline, asr_production = self.asr(lang)
        tts_offline, tts_production = self.tts(lang)
        licences = []
        if asr_offline:
            entry = registry_entry(asr_offline)
            licences.append((asr_offline, entry.license if entry else "unknown"))
        for step in steps:
            licences.append((f"apertium:{step}", "GPL-3.0"))
        if tts_offline and tts_offline.startswith("espeak-ng:"):
            licences.append((tts_offline, "GPL-3.0"))
        elif tts_offline:
            entry = registry_entry(tts_offline)
            licences.append((tts_offline, entry.license if entry else "unknown"))
        non_commercial = tuple(part for part, lic in licences if any(w in lic.lower() for w in _NON_COMMERCIAL))
        return Route(lang=lang, name=_name(lang), mt=kind, mt_steps=steps, mt_hint=hint,
                     asr_offline=asr_offline, asr_production=asr_production,
                     tts_offline=tts_offline, tts_production=tts_production,
                     licences=tuple(licences), non_commercial=non_commercial)

    def targets(self, source: str = "en") -> list[str]:
        """Every language raydub can speak, one code per language (plus the regional ones a route names)."""
        from operators.models import DEFAULT_PIPER_VOICES

        codes = {languages.base(c) for c in languages.espeak_languages()} | set(DEFAULT_PIPER_VOICES)
        codes |= set(self.config.tts.piper_voices)
        if self.mt is not None:
            codes |= {b for a, b in self.mt.routes()}
        # An espeak voice that is not a language ("chr-us-qaaa-x-west" -> "chr" is fine; "qdb" is not one).
        return sorted(c for c in codes if _valid(c) and languages.is_known(c)
                      and languages.base(c) != languages.base(source))

    def table(self, source: str = "en") -> list[Route]:
        """Offline-reachable languages first (direct, then pivot), then the rest, each group by code."""
        order = {"direct": 0, "pivot": 1, "subtitles only": 2}
        routes = [self.route(c, source) for c in self.targets(source)]
        return sorted(routes, key=lambda r: (not r.offline, order.get(r.mt, 3), r.lang))

    def unspoken(self, source: str = "en") -> list[Route]:
        """Languages Apertium reaches that nothing here can speak (no espeak-ng voice, no Piper voice)."""
        if self.mt is None:
            return []
        reached = {b for _, b in self.mt.routes()}
        return [self.route(c, source) for c in sorted(reached)
                if _valid(c) and not languages.is_known(c) and self.mt.route(source, c)]


def _valid(code: str) -> bool:
    import langcodes

    return langcodes.tag_is_valid(code)


def _name(lang: str) -> str:
    voice = languages.espeak_voice(lang)
    name = languages.espeak_name(voice) if voice else None
    return name or lang
