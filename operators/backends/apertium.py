"""Rule-based machine translation with Apertium (Debian packages), for the pairs installed.

A target with no direct pair is reached through a pivot: two installed pairs
chained (en-es, then es-pt), in one pipe of two `apertium` processes.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

from operators import languages
from operators.backends.protocols import ModelInfo
from operators.config import TranslateConfig

log = logging.getLogger(__name__)

_INSTALL_HINT = "sudo apt-get install apertium apertium-eng-spa  (one apertium-<pair> package per language pair)"
# Debian 12's Apertium pair packages and the (source, target) modes each installs, in raydub's codes
# (from their mode files). Used only to name the package that would give a missing route; what is
# installed is always read from the modes folder. Some packages translate one way only
# (apertium-es-ro: Romanian to Spanish), and two ship a mode without its data (es-eo, ca-eo).
DEBIAN_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "apertium-eng-spa": (("en", "es"), ("es", "en")),
    "apertium-eng-cat": (("en", "ca"), ("ca", "en")),
    "apertium-en-gl": (("en", "gl"), ("gl", "en")),
    "apertium-eo-en": (("en", "eo"), ("eo", "en")),
    "apertium-es-pt": (("es", "pt"), ("es", "pt-br"), ("pt", "es")),
    "apertium-spa-ita": (("es", "it"), ("it", "es")),
    "apertium-fr-es": (("es", "fr"), ("fr", "es")),
    "apertium-es-gl": (("es", "gl"), ("gl", "es")),
    "apertium-spa-cat": (("es", "ca"), ("ca", "es")),
    "apertium-spa-arg": (("es", "an"), ("an", "es")),
    "apertium-spa-ast": (("es", "ast"),),
    "apertium-oc-es": (("es", "oc"), ("oc", "es")),
    "apertium-es-ro": (("ro", "es"),),
    "apertium-eu-es": (("eu", "es"),),
    "apertium-eu-en": (("eu", "en"),),
    "apertium-eo-es": (("eo", "es"),),
    "apertium-por-cat": (("ca", "pt"), ("ca", "pt-br"), ("pt", "ca")),
    "apertium-cat-ita": (("ca", "it"), ("it", "ca")),
    "apertium-fra-cat": (("ca", "fr"), ("fr", "ca")),
    "apertium-cat-srd": (("ca", "sc"),),
    "apertium-oc-ca": (("ca", "oc"), ("oc", "ca")),
    "apertium-arg-cat": (("ca", "an"), ("an", "ca")),
    "apertium-pt-gl": (("gl", "pt"), ("pt", "gl")),
    "apertium-oci-fra": (("fr", "oc"), ("oc", "fr")),
    "apertium-isl-eng": (("is", "en"),),
    "apertium-mkd-eng": (("mk", "en"),),
}
# "eng-spa", "spa-eng_US" (a target variant), old two-letter pairs "en-es".
_MODE_NAME = re.compile(r"^(?P<src>[a-z]{2,3})-(?P<tgt>[a-z]{2,3})(?:_(?P<variant>[A-Za-z]+))?$")


def _data_dir() -> Path:
    # The same default as the `apertium` script itself.
    return Path(os.environ.get("APERTIUM_DATADIR", "/usr/share/apertium"))


@lru_cache(maxsize=None)
def _package_version(package: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


class ApertiumMT:
    """One `apertium -u <mode>` process per batch, one text per line."""

    def __init__(self, config: TranslateConfig | None = None, *, data_dir: str | Path | None = None,
                 timeout_s: float = 600.0) -> None:
        self.config = config or TranslateConfig()
        self.timeout_s = timeout_s
        if shutil.which("apertium") is None:
            raise RuntimeError(f"apertium is not installed; install it with: {_INSTALL_HINT}")
        self.data_dir = Path(data_dir) if data_dir is not None else _data_dir()
        self._modes = self._discover_modes()

    def _discover_modes(self) -> dict[tuple[str, str], str]:
        """(source, target) -> mode name, from the installed `modes/*.mode` files whose data is there."""
        modes: dict[tuple[str, str], str] = {}
        for f in sorted((self.data_dir / "modes").glob("*.mode")):
            m = _MODE_NAME.match(f.stem)
            if not m:
                continue   # debugging modes such as eng-spa-tagger
            missing = _missing_data(f)
            if missing:
                # Debian's apertium-eo-es ships es-eo.mode without its files: that mode prints nothing.
                log.warning("Apertium mode %s skipped: its data is not installed (%s)", f.stem, missing)
                continue
            src = languages.from_alpha3(m["src"])
            tgt = languages.from_alpha3(m["tgt"])
            if m["variant"]:
                tgt = f"{tgt}-{m['variant'].lower()}"
            modes.setdefault((src, tgt), f.stem)
        return modes

    def _mode(self, source_lang: str, target_lang: str) -> str | None:
        src, tgt = languages.normalize(source_lang), languages.normalize(target_lang)
        for key in ((src, tgt), (src, languages.base(tgt)), (languages.base(src), tgt),
                    (languages.base(src), languages.base(tgt))):
            if key in self._modes:
                return self._modes[key]
        return None

    def _require_mode(self, source_lang: str, target_lang: str) -> str:
        mode = self._mode(source_lang, target_lang)
        if mode is None:
            routes = ", ".join(f"{s}->{t}" for s, t in self.routes()) or "none"
            raise ValueError(f"Apertium has no installed pair {source_lang}->{target_lang} "
                             f"(installed: {routes}); install apertium-<pair> or use catalog subtitles")
        return mode

    def _pair(self, source_lang: str, target_lang: str) -> tuple[str, str] | None:
        """The installed pair's own (source, target) key that `_mode` picks, or None."""
        mode = self._mode(source_lang, target_lang)
        return next((k for k, v in self._modes.items() if v == mode), None) if mode else None

    # --- TranslationBackend --------------------------------------------------------

    def routes(self) -> list[tuple[str, str]]:
        return sorted(self._modes)

    def route(self, source_lang: str, target_lang: str) -> list[tuple[str, str]]:
        """The installed pairs a translation goes through: one (direct), two (a pivot), or none.

        A direct pair always wins. Otherwise the first of `translate.pivot_langs`
        with both halves installed: the pivot list is ordered by the quality of
        the pair from the source, which decides most of the result.
        """
        direct = self._pair(source_lang, target_lang)
        if direct is not None:
            return [direct]
        ends = {languages.base(source_lang), languages.base(target_lang)}
        for pivot in self.config.pivot_langs:
            if languages.base(pivot) in ends:
                continue
            first, second = self._pair(source_lang, pivot), self._pair(pivot, target_lang)
            if first is not None and second is not None:
                return [first, second]
        return []

    def supports(self, source_lang: str, target_lang: str) -> bool:
        return bool(self.route(source_lang, target_lang))

    def translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[str]:
        """Same number of outputs as inputs, same order; blank inputs give ''."""
        steps = self.route(source_lang, target_lang)
        if not steps:
            self._require_mode(source_lang, target_lang)   # raises, naming the installed pairs
        modes = [self._modes[step] for step in steps]
        # One text per line: internal newlines would split a text in two.
        lines = [_as_sentence(" ".join(t.split())) for t in texts]
        todo = [i for i, line in enumerate(lines) if line]
        out = [""] * len(texts)
        if not todo:
            return out
        payload = "".join(lines[i] + "\n" for i in todo)
        stdout = self._pipe(modes, payload)
        label = " | ".join(modes)
        # Only non-blank lines were sent, so trailing blank lines are never a translation.
        translated = stdout.rstrip("\n").split("\n")
        if len(translated) != len(todo):
            raise RuntimeError(f"apertium {label} returned {len(translated)} lines for {len(todo)} inputs; "
                               "outputs cannot be matched to inputs")
        for i, line in zip(todo, translated):
            out[i] = _tidy(line)
        return out

    def _pipe(self, modes: list[str], payload: str) -> str:
        """`apertium -u m1 | apertium -u m2`: one process per mode for the whole batch, streaming into each other.

        Untidied text goes from one to the next: Apertium reads its own spacing
        fine, and tidying in between would cost a third pass.
        """
        label = " | ".join(modes)
        with tempfile.TemporaryFile() as err:   # a file, not a pipe: stderr can never block a process
            procs: list[subprocess.Popen] = []
            for mode in modes:
                procs.append(subprocess.Popen(
                    ["apertium", "-d", str(self.data_dir), "-u", mode],
                    stdin=procs[-1].stdout if procs else subprocess.PIPE, stdout=subprocess.PIPE, stderr=err))
                if len(procs) > 1:
                    procs[-2].stdout.close()   # the next one owns it now: an early exit there ends this one
            # Fed from a thread while the last process is read: a big batch would fill both pipes otherwise.
            # The feeder owns the first stdin: communicate() below must not flush or close it too.
            stdin, procs[0].stdin = procs[0].stdin, None
            feeder = threading.Thread(target=_feed, args=(stdin, payload.encode("utf-8")), daemon=True)
            feeder.start()
            try:
                stdout, _ = procs[-1].communicate(timeout=self.timeout_s)
                codes = [p.wait(timeout=self.timeout_s) for p in procs]
            except subprocess.TimeoutExpired:
                for p in procs:
                    p.kill()
                raise RuntimeError(f"apertium {label} took longer than {self.timeout_s:.0f} s") from None
            feeder.join()
            if any(codes):
                err.seek(0)
                message = err.read().decode("utf-8", "replace").strip()[-500:]
                raise RuntimeError(f"apertium {label} failed (exit {codes}): {message}")
        return stdout.decode("utf-8")

    def model_info(self, source_lang: str, target_lang: str) -> ModelInfo:
        """One installed pair (a step of `route`): a pivot is recorded as its two pairs."""
        mode = self._require_mode(source_lang, target_lang)
        return ModelInfo(name=f"apertium:{mode}", version=_package_version(self._package(mode)),
                         license="GPL-3.0", source=f"path:{self.data_dir / 'modes' / (mode + '.mode')}")

    def _package(self, mode: str) -> str:
        """The Debian package that holds a mode: its pipeline names its data dir."""
        try:
            text = (self.data_dir / "modes" / f"{mode}.mode").read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        m = re.search(r"/(apertium-[a-z]{2,3}-[a-z]{2,3})/", text)
        return m.group(1) if m else f"apertium-{mode.split('_')[0]}"


def _feed(stdin, data: bytes) -> None:
    try:
        stdin.write(data)
    except BrokenPipeError:
        pass   # the process died; its exit code says why
    finally:
        try:
            stdin.close()
        except BrokenPipeError:
            pass


def _missing_data(mode_file: Path) -> str:
    """The first file a mode's pipeline names that does not exist ('' when all do)."""
    try:
        text = mode_file.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        return str(e)
    return next((p for p in re.findall(r"'(/[^']+)'", text) if not Path(p).exists()), "")


def install_hint(source_lang: str, target_lang: str, installed: list[tuple[str, str]],
                 pivots: list[str]) -> str:
    """Which Debian packages would give a route source->target, or that none would.

    A direct pair first, then each pivot whose halves are installed or packaged
    (pass the configured pivots and any others worth suggesting).
    """
    src, tgt = languages.base(source_lang), languages.normalize(target_lang)
    have = {(languages.base(a), languages.normalize(b)) for a, b in installed}

    def available(a: str, b: str) -> bool:
        return (a, b) in have or (a, languages.base(b)) in have

    def package(a: str, b: str) -> str | None:
        return next((p for p, pairs in DEBIAN_PAIRS.items() if (a, b) in pairs or (a, languages.base(b)) in pairs),
                    None)

    direct = package(src, tgt)
    if direct:
        return f"install {direct} ({src}->{tgt})"
    options = []
    for pivot in pivots:
        if pivot in (src, languages.base(tgt)):
            continue
        if available(src, pivot) and available(pivot, tgt):
            return f"allow the pivot {pivot} in translate.pivot_langs ({src}->{pivot} and {pivot}->{tgt} are installed)"
        first = None if available(src, pivot) else package(src, pivot)
        second = None if available(pivot, tgt) else package(pivot, tgt)
        if (first or available(src, pivot)) and (second or available(pivot, tgt)):
            options.append(f"{' and '.join(p for p in (first, second) if p)} (through {pivot})")
    if options:
        return "install " + ", or ".join(options)
    target = languages.base(tgt)
    from_only = [p for p, pairs in DEBIAN_PAIRS.items()
                 if any(a == target for a, _ in pairs) and not any(b == target for _, b in pairs)]
    if from_only:
        return f"Debian's Apertium has no pair into {tgt} ({', '.join(from_only)} only translates from it)"
    return f"Debian's Apertium has no pair into {tgt}"


def _as_sentence(line: str) -> str:
    """A line that ends in a letter or digit, with a full stop: Apertium reads a sentence up to its final
    punctuation, and without one its tagger takes words for other parts of speech. Whisper's multilingual
    models often leave the punctuation out: "I drink coffee every morning" came out "I café de bebida cada
    mañana", and with the stop "Bebo café cada mañana."."""
    return f"{line}." if line and line[-1].isalnum() else line


def _tidy(line: str) -> str:
    """Apertium leaves doubled spaces and a space before closing punctuation ("Hola,  soy un astronauta .")."""
    line = " ".join(line.split())
    return re.sub(r"\s+([.,;:!?)\]»])", r"\1", line)
