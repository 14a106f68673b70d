"""Model code behind Protocols: one module per implementation, heavy imports inside."""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from operators.backends.protocols import ASRBackend, TranslationBackend, TTSBackend
    from operators.backends.protocols import FaceBackend, LipRenderer, SpeakerEncoder
    from operators.config import ASRConfig, FacesConfig, LipsConfig, ScoreConfig, TranslateConfig, TTSConfig

# name -> "module:Class"; imported only when chosen, so `import operators` stays fast.
ASR_BACKENDS = {"faster-whisper": "operators.backends.whisper:FasterWhisperASR"}
TRANSLATION_BACKENDS = {"apertium": "operators.backends.apertium:ApertiumMT"}
TTS_BACKENDS = {
    "auto": "operators.backends.auto_tts:AutoTTS",
    "piper": "operators.backends.piper_tts:PiperTTS",
    "espeak-ng": "operators.backends.espeak:EspeakTTS",
}
FACE_BACKENDS = {
    "dlib": "operators.backends.dlib_faces:DlibFaces",
    "insightface": "operators.backends.insightface_faces:InsightFaces",
}
LIP_RENDERERS = {"warp": "operators.backends.warp_renderer:WarpRenderer"}
SPEAKER_ENCODERS = {"resemblyzer": "operators.backends.resemblyzer_voice:ResemblyzerEncoder"}


def _load(kind: str, name: str, table: dict[str, str], cfg: Any, extra: tuple[str, ...] = ()) -> Any:
    path = table.get(name)
    if path is None:
        if ":" not in name:
            choices = ", ".join([*table, *extra, "'module:Class'"])
            raise ValueError(f"unknown {kind} backend {name!r}; choose one of: {choices}")
        path = name
    module_name, _, class_name = path.partition(":")
    try:
        cls = getattr(import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{kind} backend {name!r} cannot be imported: {type(e).__name__}: {e}") from e
    return cls(cfg)


def load_asr(cfg: ASRConfig) -> ASRBackend:
    return _load("ASR", cfg.backend, ASR_BACKENDS, cfg)


def load_translator(cfg: TranslateConfig) -> TranslationBackend | None:
    """None for backend 'none': only the catalog's translated subtitles are used."""
    if cfg.backend == "none":
        return None
    return _load("translation", cfg.backend, TRANSLATION_BACKENDS, cfg, extra=("none",))


def load_tts(cfg: TTSConfig) -> TTSBackend:
    return _load("TTS", cfg.backend, TTS_BACKENDS, cfg)


def load_faces(cfg: FacesConfig) -> FaceBackend:
    return _load("face", cfg.backend, FACE_BACKENDS, cfg)


def load_renderer(cfg: LipsConfig) -> LipRenderer:
    """A fresh renderer: one per speaker."""
    return _load("lip renderer", cfg.renderer, LIP_RENDERERS, cfg)


def load_speaker_encoder(cfg: ScoreConfig) -> SpeakerEncoder:
    return _load("speaker encoder", cfg.speaker_encoder, SPEAKER_ENCODERS, cfg)
