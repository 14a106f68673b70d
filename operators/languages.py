"""Language codes: one spelling inside raydub, translated at the edges.

Inside raydub a language is a lowercase BCP-47-like code with '-' ("es",
"pt-br", "es-419"). Tools want other spellings: espeak-ng its voice names,
Apertium ISO 639-2/3 codes ("spa"), mp4 containers ISO 639-2/B ("ger").
"""
from __future__ import annotations

import logging
import re
import shutil
import subprocess
from functools import lru_cache

log = logging.getLogger(__name__)

# ISO 639-1 -> ISO 639-2/T (= ISO 639-3 for individual languages), which is
# what Apertium names its pairs with. Covers Apertium's languages, Whisper's
# and espeak-ng's common ones.
_ALPHA3: dict[str, str] = {
    "af": "afr", "am": "amh", "an": "arg", "ar": "ara", "as": "asm", "az": "aze",
    "ba": "bak", "be": "bel", "bg": "bul", "bn": "ben", "bo": "bod", "br": "bre",
    "bs": "bos", "ca": "cat", "co": "cos", "cs": "ces", "cv": "chv", "cy": "cym",
    "da": "dan", "de": "deu", "el": "ell", "en": "eng", "eo": "epo", "es": "spa",
    "et": "est", "eu": "eus", "fa": "fas", "fi": "fin", "fo": "fao", "fr": "fra",
    "fy": "fry", "ga": "gle", "gd": "gla", "gl": "glg", "gn": "grn", "gu": "guj",
    "ha": "hau", "he": "heb", "hi": "hin", "hr": "hrv", "ht": "hat", "hu": "hun",
    "hy": "hye", "ia": "ina", "id": "ind", "io": "ido", "is": "isl", "it": "ita",
    "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz", "kl": "kal", "km": "khm",
    "kn": "kan", "ko": "kor", "ku": "kur", "ky": "kir", "la": "lat", "lb": "ltz",
    "ln": "lin", "lo": "lao", "lt": "lit", "lv": "lav", "mg": "mlg", "mi": "mri",
    "mk": "mkd", "ml": "mal", "mn": "mon", "mr": "mar", "ms": "msa", "mt": "mlt",
    "my": "mya", "nb": "nob", "ne": "nep", "nl": "nld", "nn": "nno", "no": "nor",
    "oc": "oci", "om": "orm", "or": "ori", "pa": "pan", "pl": "pol", "ps": "pus",
    "pt": "por", "qu": "que", "ro": "ron", "ru": "rus", "sa": "san", "sc": "srd",
    "sd": "snd", "se": "sme", "si": "sin", "sk": "slk", "sl": "slv", "sn": "sna",
    "so": "som", "sq": "sqi", "sr": "srp", "su": "sun", "sv": "swe", "sw": "swa",
    "ta": "tam", "te": "tel", "tg": "tgk", "th": "tha", "tk": "tuk", "tl": "tgl",
    "tn": "tsn", "tr": "tur", "tt": "tat", "ug": "uig", "uk": "ukr", "ur": "urd",
    "uz": "uzb", "vi": "vie", "wa": "wln", "xh": "xho", "yi": "yid", "yo": "yor",
    "zh": "zho", "zu": "zul",
}
_FROM_ALPHA3: dict[str, str] = {v: k for k, v in _ALPHA3.items()}
# Apertium also uses macrolanguage members and a few codes of its own.
_FROM_ALPHA3.update({"cmn": "zh", "arb": "ar", "zlm": "ms", "hbs": "sh"})
# Languages with no two-letter code (Apertium has pairs for several): kept as is.
_ALPHA3_ONLY = frozenset({
    "ast", "crh", "csb", "dsb", "fur", "hsb", "kum", "lad", "lij", "mwl", "nog", "rup",
    "sah", "scn", "sma", "smj", "smn", "sms", "szl", "vec", "yue", "cmn", "hbs",
})

# ISO 639-2/B where it differs from /T: the codes mp4/mov language tags use.
_BIBLIOGRAPHIC: dict[str, str] = {
    "sq": "alb", "hy": "arm", "eu": "baq", "bo": "tib", "my": "bur", "zh": "chi",
    "cs": "cze", "nl": "dut", "fr": "fre", "ka": "geo", "de": "ger", "el": "gre",
    "is": "ice", "mk": "mac", "mi": "mao", "ms": "may", "fa": "per", "ro": "rum",
    "sk": "slo", "cy": "wel",
}


def normalize(code: str) -> str:
    """' pt_BR ' -> 'pt-br'."""
    return code.strip().lower().replace("_", "-")


def base(code: str) -> str:
    """'pt-br' -> 'pt'."""
    return normalize(code).split("-", 1)[0]


@lru_cache(maxsize=1)
def _espeak_voices() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        log.warning("espeak-ng not found: no espeak-ng languages (apt-get install espeak-ng)")
        return ""
    return subprocess.run([exe, "--voices"], capture_output=True, text=True, encoding="utf-8",
                          errors="replace", timeout=30, check=True).stdout


@lru_cache(maxsize=1)
def _espeak_table() -> tuple[frozenset[str], dict[str, str]]:
    """(languages of `espeak-ng --voices`, alias -> voice from its "Other Languages" column)."""
    languages: list[str] = []
    aliases: dict[str, tuple[int, str]] = {}
    for line in _espeak_voices().splitlines()[1:]:
        cols = line.split()
        if len(cols) < 2:
            continue
        lang = normalize(cols[1])
        languages.append(lang)
        # "(zh-cmn 5)(zh 5)": other codes this voice answers to, with a priority
        # (lower wins), as espeak-ng itself picks a voice for "-v zh".
        for alias, prio in re.findall(r"\(([^()\s]+)\s+(\d+)\)", line):
            alias = normalize(alias)
            if alias not in aliases or int(prio) < aliases[alias][0]:
                aliases[alias] = (int(prio), lang)
    return frozenset(languages), {a: v for a, (_, v) in aliases.items()}


def espeak_name(voice: str) -> str | None:
    """espeak-ng's name of one of its voices: 'pt-br' -> 'Portuguese (Brazil)'."""
    for line in _espeak_voices().splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 4 and normalize(cols[1]) == normalize(voice):
            return cols[3].replace("_", " ")
    return None


def espeak_languages() -> frozenset[str]:
    """The "Language" column of `espeak-ng --voices`, lowercased ("en-us", "es-419", "cmn")."""
    return _espeak_table()[0]


def espeak_voice(code: str) -> str | None:
    """The espeak-ng voice for a language: exact, then alias ("zh" -> "cmn"), then the base's."""
    languages, aliases = _espeak_table()
    for candidate in dict.fromkeys((normalize(code), base(code))):
        if candidate in languages:
            return candidate
        if candidate in aliases:
            return aliases[candidate]
    return None


def checked(code: object) -> str:
    """A language code checked whole, normalised ('pt_BR' -> 'pt-br'); ValueError saying why not.

    First BCP 47 syntax (langcodes, against the IANA subtag registry), then
    known to raydub. The whole code is checked, not only its base: codes
    become file and partition names (OUT/manifest/lang=<code>/), so
    'de-/../../x' or 'es-<img ...>' must never get past here.
    """
    import langcodes

    if not isinstance(code, str) or not code.strip():
        raise ValueError(f"expected a language code like 'es' or 'pt-BR', got {code!r}")
    tag = code.strip().replace("_", "-")
    if not langcodes.tag_is_valid(tag):
        raise ValueError(f"{code!r} is not a BCP 47 language tag (like 'es', 'pt-BR', 'es-419')")
    if not is_known(tag):
        raise ValueError(f"unknown language code {code!r} (not known to espeak-ng or Piper)")
    return normalize(tag)


def is_known(code: str) -> bool:
    """Whether raydub can speak this language at all (espeak-ng or a default Piper voice)."""
    from operators.models import DEFAULT_PIPER_VOICES

    if not normalize(code):
        return False
    return (espeak_voice(code) is not None
            or normalize(code) in DEFAULT_PIPER_VOICES or base(code) in DEFAULT_PIPER_VOICES)


def alpha3(code: str) -> str:
    """ISO 639-2/T code as Apertium uses it: 'es' -> 'spa', 'pt-br' -> 'por'. KeyError if unknown."""
    b = base(code)
    if b in _ALPHA3:
        return _ALPHA3[b]
    if b in _FROM_ALPHA3 or b in _ALPHA3_ONLY:   # already a three-letter code
        return b
    raise KeyError(f"no ISO 639-2 code known for language {code!r}")


def from_alpha3(code: str) -> str:
    """'spa' -> 'es'; a code without a two-letter form ('ast') is returned as is."""
    c = normalize(code)
    return _FROM_ALPHA3.get(c, c)


def from_track_tag(tag: str | None) -> str | None:
    """The base language of a container's audio track tag ('ger', 'deu', 'de', 'en-US'), or None ('und', none)."""
    if not tag or normalize(tag) in ("und", "mul", "zxx", "mis"):
        return None
    code = base(tag)
    code = {b: two for two, b in _BIBLIOGRAPHIC.items()}.get(code, code)
    return from_alpha3(code) if len(code) == 3 else code


def iso639_2b(code: str) -> str:
    """mp4 language tag: 'de' -> 'ger', 'es' -> 'spa'; 'und' when unknown."""
    b = base(code)
    if b in _BIBLIOGRAPHIC:
        return _BIBLIOGRAPHIC[b]
    try:
        return alpha3(b)
    except KeyError:
        return "und"
