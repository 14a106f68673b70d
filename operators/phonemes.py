"""Where the lips close in a line of speech: a phoneme aligner built on espeak-ng.

espeak-ng speaks the line's text and reports when each phoneme starts (its
phoneme events, through libespeak-ng). Dynamic time warping of that speech's
MFCCs onto the dub's own speech carries those times over to the dub, whatever
voice spoke it. `bilabial_spans` gives the spans of /p/, /b/ and /m/: the
sounds a viewer expects to see with the lips pressed together (lips.mode "tight").

It works in every language espeak-ng has a voice for (`languages.espeak_voice`)
and says so with None elsewhere. Nothing is downloaded: espeak-ng comes from the system.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading

import librosa
import numpy as np

from operators import languages

# Phonemes spoken with both lips closed, as espeak-ng names them; its length and
# stress marks ("m:", "p#") are dropped first. Spanish "B" (a fricative between
# vowels) is left out: the lips come close but do not shut.
BILABIALS = frozenset({"p", "b", "m"})
ALIGN_RATE_HZ = 16_000
HOP_S = 0.01
PAD_S = 0.3

_EVENT_END_OF_LIST, _EVENT_PHONEME = 0, 7
_AUDIO_OUTPUT_SYNCHRONOUS, _INITIALIZE_PHONEME_EVENTS, _CHARS_UTF8, _PARAMETER_RATE = 2, 0x0001, 1, 1


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """espeak_EVENT of speak_lib.h."""
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


class _Voice(ctypes.Structure):
    """espeak_VOICE of speak_lib.h."""
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Espeak:
    """libespeak-ng, loaded once per process; it has one global state, so every call holds the lock."""

    _lock = threading.Lock()
    _instance: "_Espeak | None" = None

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError as e:
            raise RuntimeError(f"libespeak-ng is not installed ({e}); scripts/install.sh installs espeak-ng") from e
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise RuntimeError("libespeak-ng failed to initialise (its data directory is missing?)")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str]] = []
        self._callback = _CALLBACK(self._on_audio)   # kept referenced: libespeak-ng calls it later
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> "_Espeak":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _on_audio(self, wav, n_samples: int, events) -> int:
        if n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_END_OF_LIST:
            if events[i].type == _EVENT_PHONEME:
                self._events.append((events[i].sample, events[i].id.string.decode("utf-8", "replace")))
            i += 1
        return 0

    def speak(self, text: str, voice: str, words_per_min: int) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
        """(speech as float32 at `sample_rate`, [(start_s, end_s, phoneme)]), pauses "_" and language switches "(en)" left out."""
        with self._lock:
            self._chunks, self._events = [], []
            # A voice is named by its file ("es") or, like the espeak-ng command's -v, by a language ("en-gb").
            if (self.lib.espeak_SetVoiceByName(voice.encode()) != 0
                    and self.lib.espeak_SetVoiceByProperties(ctypes.byref(_Voice(languages=voice.encode()))) != 0):
                raise ValueError(f"libespeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(_PARAMETER_RATE, int(words_per_min), 0)
            data = text.encode("utf-8") + b"\0"
            self.lib.espeak_Synth(data, len(data), 0, 0, 0, _CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            chunks, events = self._chunks, self._events
        speech = (np.concatenate(chunks).astype(np.float32) / 32768.0) if chunks else np.zeros(0, np.float32)
        end = len(speech)
        spans = [(start / self.sample_rate, (events[i + 1][0] if i + 1 < len(events) else end) / self.sample_rate,
                  name) for i, (start, name) in enumerate(events)]
        return speech, [s for s in spans if not s[2].startswith(("_", "(")) and s[1] > s[0]]


def supports(lang: str) -> bool:
    return languages.espeak_voice(lang) is not None


def phoneme_spans(text: str, lang: str, words_per_min: int = 175) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """espeak-ng's own speech of `text` (16 kHz) and when each of its phonemes is spoken."""
    voice = languages.espeak_voice(lang)
    if voice is None:
        raise ValueError(f"espeak-ng has no voice for language {lang!r}")
    engine = _Espeak.get()
    speech, spans = engine.speak(text, voice, words_per_min)
    return librosa.resample(speech, orig_sr=engine.sample_rate, target_sr=ALIGN_RATE_HZ), spans


def align_spans(reference: np.ndarray, speech: np.ndarray, spans_s: np.ndarray) -> np.ndarray:
    """Spans (n, 2) in `reference` (16 kHz) carried over to the same words spoken in `speech` (16 kHz).

    Dynamic time warping of MFCCs pairs each reference frame with one or more
    speech frames. A span starts at the last speech frame paired with its first
    frame and ends at the first paired with its last, so silence the speech has
    and the reference lacks (before the first word, say) stays outside it.
    """
    hop = int(HOP_S * ALIGN_RATE_HZ)

    dither = np.random.default_rng(0)

    def mfcc(x: np.ndarray) -> np.ndarray:
        # A faint noise floor, so digital silence has a spectrum like a room's.
        x = x + dither.normal(0.0, 1e-4, x.shape).astype(np.float32)
        m = librosa.feature.mfcc(y=x, sr=ALIGN_RATE_HZ, n_mfcc=13, hop_length=hop, n_fft=512)[1:]
        return (m - m.mean(axis=1, keepdims=True)) / (m.std(axis=1, keepdims=True) + 1e-6)

    _, path = librosa.sequence.dtw(X=mfcc(reference), Y=mfcc(speech), metric="euclidean")
    last_ref = int(path[:, 0].max())
    out = np.empty((len(spans_s), 2))
    for i, (a, b) in enumerate(np.asarray(spans_s, dtype=np.float64)):
        start = path[path[:, 0] == min(int(round(a / HOP_S)), last_ref), 1].max()
        end = path[path[:, 0] == min(max(int(round(b / HOP_S)) - 1, 0), last_ref), 1].min() + 1
        out[i] = start * HOP_S, max(end, start + 1) * HOP_S
    return out


def bilabial_spans(text: str, lang: str, speech: np.ndarray) -> list[tuple[float, float]] | None:
    """The spans (s, from the start of `speech`, 16 kHz) in which the line's lips close; None: no aligner for `lang`."""
    if not supports(lang) or not text.strip() or speech.size < ALIGN_RATE_HZ // 10:
        return None if not supports(lang) else []
    reference, spans = phoneme_spans(text, lang)
    closures = [(a + PAD_S, b + PAD_S) for a, b, name in spans if name.rstrip(":;#-'") in BILABIALS]
    if not closures or reference.size < ALIGN_RATE_HZ // 10:
        return []
    # The reference starts on its first phoneme; the pause either side lets the warp pair silence with silence.
    pad = np.zeros(int(PAD_S * ALIGN_RATE_HZ), np.float32)
    reference = np.concatenate([pad, reference, pad])
    return [(float(a), float(b)) for a, b in align_spans(reference, speech, np.array(closures))]
