"""Rule-based machine translation with Apertium (Debian packages), for the pairs installed."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from operators import languages
from operators.backends.protocols import ModelInfo
from operators.config import TranslateConfig

_INSTALL_HINT = "sudo apt-get install apertium apertium-eng-spa  (one apertium-<pair> package per language pair)"
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
        """(source, target) -> mode name, from the installed `modes/*.mode` files."""
        modes: dict[tuple[str, str], str] = {}
        for f in sorted((self.data_dir / "modes").glob("*.mode")):
            m = _MODE_NAME.match(f.stem)
            if not m:
                continue   # debugging modes such as eng-spa-tagger
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

    # --- TranslationBackend --------------------------------------------------------

    def routes(self) -> list[tuple[str, str]]:
        return sorted(self._modes)

    def supports(self, source_lang: str, target_lang: str) -> bool:
        return self._mode(source_lang, target_lang) is not None

    def translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[str]:
        """Same number of outputs as inputs, same order; blank inputs give ''."""
        mode = self._require_mode(source_lang, target_lang)
        # One text per line: internal newlines would split a text in two.
        lines = [" ".join(t.split()) for t in texts]
        todo = [i for i, line in enumerate(lines) if line]
        out = [""] * len(texts)
        if not todo:
            return out
        payload = "".join(lines[i] + "\n" for i in todo)
        proc = subprocess.run(["apertium", "-d", str(self.data_dir), "-u", mode],
                              input=payload, capture_output=True, text=True, encoding="utf-8",
                              timeout=self.timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(f"apertium {mode} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        # Only non-blank lines were sent, so trailing blank lines are never a translation.
        translated = proc.stdout.rstrip("\n").split("\n")
        if len(translated) != len(todo):
            raise RuntimeError(f"apertium {mode} returned {len(translated)} lines for {len(todo)} inputs; "
                               "outputs cannot be matched to inputs")
        for i, line in zip(todo, translated):
            out[i] = _tidy(line)
        return out

    def model_info(self, source_lang: str, target_lang: str) -> ModelInfo:
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


def _tidy(line: str) -> str:
    """Apertium leaves doubled spaces and a space before closing punctuation ("Hola,  soy un astronauta .")."""
    line = " ".join(line.split())
    return re.sub(r"\s+([.,;:!?)\]»])", r"\1", line)
