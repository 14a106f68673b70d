"""The dub track: new speech over the original background, at the source dialogue's loudness.

A feature's audio is mixed in blocks of MIX_BLOCK_S, read from and written to files, so the
stage's memory does not grow with the video's length: the loudness of the dialogue is measured
by streaming its spans through one meter, the background is cleaned per block (audio.Background
gives what a whole-track pass would), and the one peak-limiting gain is applied while the float
mix is copied into the 16-bit dub track.
"""
from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from operators import audio, paths, provenance, subtitles
from operators import uri as uris
from operators.base import Operator, Resources
from operators.probe import CENTRE_CHANNEL, SURROUND_CHANNELS
from operators.schema import RESULT

MIX_BLOCK_S = 10.0
PEAK_CEILING_DBFS = -1.0


class Mix(Operator):
    name = "mix"
    reads = ("source_audio_uri", "duration_s", "replace_lines", "source_lang", "segments.fit_uri", "segments.placed_start_s", "segments.placed_end_s",
             "segments.source_text", "segments.target_text")
    writes = ("dub_audio_uri", "subtitles_out_uri", "subtitles_vtt_uri", "subtitles_dual_uri", "subtitle_cues",
              "subtitle_lines_split", "subtitle_cues_extended", "subtitle_cues_over_limits", "subtitle_issues",
              "source_dialogue_lufs", "dub_dialogue_lufs",
              "loudness_diff_lu", "dub_gain_db", "true_peak_dbfs",
              "segments.source_lufs", "segments.dub_lufs", "segments.loudness_diff_lu", "provenance_status")
    resources = Resources(num_cpus=1)
    output_schema = RESULT

    def check_dependencies(self) -> None:
        self.signing = provenance.Signing(self.config)     # a key that cannot sign fails here, on the driver

    def process_row(self, row: dict) -> dict:
        cfg = self.config.mix
        segments = [dict(s) for s in row["segments"]]
        dubbed = [s for s in segments if s.get("fit_uri")]
        # The source speech is removed where the source spoke a line that is dubbed; lines
        # without a translation keep their original voice.
        source_spans = [(s["start_s"], s["end_s"]) for s in dubbed]
        dub_spans = [(s["placed_start_s"], s["placed_end_s"]) for s in dubbed]
        lang, vid = row["lang"], row["video_id"]
        dub_audio_uri = paths.output(self.out_dir, vid, lang, ".wav")
        # The dub track alone carries no picture: it discloses (and its C2PA manifest records) the voice only.
        disclosure = provenance.disclosure_text(self.config, lips_rendered=False)

        with contextlib.ExitStack() as stack:
            path = stack.enter_context(uris.local_copy(row["source_audio_uri"]))
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="raydub-mix-"))
            source = stack.enter_context(audio.FileReader(path))
            sr, n = source.sample_rate_hz, source.n_samples
            # 5.1: only the centre channel, where the dialogue is, is dubbed; the others stay as they are.
            surround = source.n_channels == SURROUND_CHANNELS
            dialogue = stack.enter_context(audio.FileReader(path, [CENTRE_CHANNEL])) if surround else source
            dub = DubTrack(dubbed, sr, dialogue.n_channels)

            source_lufs = spans_lufs(dialogue, n, sr, source_spans)
            if cfg.match_loudness and math.isfinite(source_lufs):
                dub.gain_db = audio.gain_to_match_db(spans_lufs(dub, n, sr, dub_spans), source_lufs)
            dub_lufs = spans_lufs(dub, n, sr, dub_spans)
            for s, source_span, dub_span in zip(dubbed, source_spans, dub_spans):
                # Per line; undefined (None) for a line shorter than one 400 ms gating block.
                s["source_lufs"] = _finite(spans_lufs(dialogue, n, sr, [source_span]))
                s["dub_lufs"] = _finite(spans_lufs(dub, n, sr, [dub_span]))
                if s["source_lufs"] is not None and s["dub_lufs"] is not None:
                    s["loudness_diff_lu"] = s["dub_lufs"] - s["source_lufs"]

            background = audio.Background(dialogue, n, sr, source_spans + dub_spans, cfg.background,
                                          cfg.duck_db, cfg.fade_s)
            raw = Path(tmp) / "mix.wav"
            with sf.SoundFile(str(raw), "w", sr, source.n_channels, subtype="FLOAT") as f:
                for lo, hi in audio.blocks(n, sr, MIX_BLOCK_S):
                    mixed = background.block(lo, hi) + dub(lo, hi)
                    if surround:
                        beds = source(lo, hi)
                        mixed = np.concatenate([beds[:, :CENTRE_CHANNEL], mixed, beds[:, CENTRE_CHANNEL + 1:]], axis=1)
                    f.write(mixed)
            with audio.FileReader(raw) as mixed:
                peak_dbfs = audio.true_peak_of(mixed, n, sr)
                limit_db = audio.peak_limit_gain_db(peak_dbfs, PEAK_CEILING_DBFS)
                scale = np.float32(10.0 ** (limit_db / 20.0))
                with uris.staged_output(dub_audio_uri) as local:
                    audio.write_wav_blocks(local, (mixed(lo, hi) * scale for lo, hi in audio.blocks(n, sr, MIX_BLOCK_S)),
                                           sr, source.n_channels,
                                           tags={"comment": disclosure, "software": provenance.software()})
                    audio_provenance = self.signing.sign(local, dub_audio_uri, "wav", row, picture=False,
                                                         lips_rendered=False, disclosure=disclosure)
        # SRT, WebVTT and the optional dual file, timed to the dub and held to the timed-text limits
        shown = dubbed
        if row.get("replace_lines") and lang == row.get("source_lang"):
            # Line replacement: the video's own language, so its subtitles are every line, the kept ones
            # as spoken in the source and the replaced ones as re-voiced.
            shown = [s if s.get("fit_uri") else {**s, "placed_start_s": s["start_s"], "placed_end_s": s["end_s"],
                                                 "target_text": s.get("source_text") or ""}
                     for s in segments if s.get("fit_uri") or s.get("source_text")]
        subs = subtitles.write_outputs(shown, self.config.subtitles, self.out_dir, vid, lang, row.get("duration_s"))
        diff = dub_lufs - source_lufs if math.isfinite(dub_lufs) and math.isfinite(source_lufs) else None
        return {**row, "segments": segments, "dub_audio_uri": dub_audio_uri, **subs,
                "source_dialogue_lufs": _finite(source_lufs), "dub_dialogue_lufs": _finite(dub_lufs),
                "loudness_diff_lu": diff, "dub_gain_db": dub.gain_db,
                "true_peak_dbfs": _finite(peak_dbfs + limit_db),
                # the dub track's; Mux adds the video's (provenance.combine)
                "provenance_status": audio_provenance}


class DubTrack:
    """The dubbed lines placed at their times, at the mix's rate and channels, read by sample range.

    A line's file is read when a range first needs it and kept while the next range still does,
    so only a block's lines are in memory at once. A fitted line lasts exactly its placed span
    (FitDuration); a second of slack past it keeps a resampled tail from being cut at a block edge.
    """

    SLACK_S = 1.0

    def __init__(self, dubbed: list[dict], sample_rate_hz: int, n_channels: int) -> None:
        self.sr, self.n_channels, self.gain_db = sample_rate_hz, n_channels, 0.0
        self.lines = [(s["placed_start_s"], s["placed_end_s"] + self.SLACK_S, s["fit_uri"]) for s in dubbed]
        self._loaded: dict[str, np.ndarray] = {}

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        placed, loaded = [], {}
        for start_s, end_s, uri in self.lines:
            if start_s * self.sr < hi and end_s * self.sr > lo:
                loaded[uri] = self._loaded.get(uri)
                if loaded[uri] is None:
                    with uris.local_copy(uri) as p:
                        speech, speech_sr = audio.read_wav(p)
                    loaded[uri] = audio.to_channels(audio.resample(speech, speech_sr, self.sr), self.n_channels)
                placed.append((start_s, loaded[uri]))
        self._loaded = loaded
        track = audio.place(placed, hi - lo, self.sr, self.n_channels, start_sample=lo)
        return audio.apply_gain_db(track, self.gain_db) if self.gain_db else track


def spans_lufs(read: audio.Reader, n_samples: int, sample_rate_hz: int, spans_s: list[tuple[float, float]]) -> float:
    """Integrated loudness of the spans of a track, back to back (e.g. the source dialogue alone)."""
    meter = audio.LoudnessMeter(sample_rate_hz)
    for start_s, end_s in spans_s:
        lo, hi = max(0, round(start_s * sample_rate_hz)), min(n_samples, round(end_s * sample_rate_hz))
        if lo < hi:
            meter.add(read(lo, hi))
    return meter.lufs()


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
