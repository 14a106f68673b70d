"""The dub track: new speech over the original background, at the source dialogue's loudness."""
from __future__ import annotations

import numpy as np

from operators import audio, paths, provenance, subtitles
from operators import uri as uris
from operators.base import Operator, Resources
from operators.probe import CENTRE_CHANNEL, SURROUND_CHANNELS
from operators.schema import RESULT


class Mix(Operator):
    name = "mix"
    reads = ("source_audio_uri", "duration_s", "segments.fit_uri", "segments.placed_start_s", "segments.placed_end_s",
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
        with uris.local_copy(row["source_audio_uri"]) as path:
            source, sr = audio.read_wav(path)
        # 5.1: only the centre channel, where the dialogue is, is dubbed; the others stay as they are.
        surround = source if source.shape[1] == SURROUND_CHANNELS else None
        if surround is not None:
            source = surround[:, [CENTRE_CHANNEL]]
        channels = source.shape[1]
        segments = [dict(s) for s in row["segments"]]
        dubbed = [s for s in segments if s.get("fit_uri")]
        # The source speech is removed where the source spoke a line that is dubbed; lines
        # without a translation keep their original voice.
        source_spans = [(s["start_s"], s["end_s"]) for s in dubbed]
        dub_spans = [(s["placed_start_s"], s["placed_end_s"]) for s in dubbed]
        # background_estimate merges overlapping spans itself
        background = audio.background_estimate(source, sr, source_spans + dub_spans, cfg.background,
                                               cfg.duck_db, cfg.fade_s)

        placed = []
        for s in dubbed:
            with uris.local_copy(s["fit_uri"]) as p:
                speech, speech_sr = audio.read_wav(p)
            placed.append((s["placed_start_s"], audio.to_channels(audio.resample(speech, speech_sr, sr), channels)))
        dub = audio.place(placed, len(source), sr, channels)

        source_lufs = audio.integrated_lufs(audio.concat_spans(source, sr, source_spans), sr)
        gain_db = 0.0
        if cfg.match_loudness and np.isfinite(source_lufs):
            gain_db = audio.loudness_match_gain_db(audio.concat_spans(dub, sr, dub_spans),
                                                   audio.concat_spans(source, sr, source_spans), sr)
            dub = audio.apply_gain_db(dub, gain_db)
        dub_lufs = audio.integrated_lufs(audio.concat_spans(dub, sr, dub_spans), sr)
        for s, source_span, dub_span in zip(dubbed, source_spans, dub_spans):
            # Per line; undefined (None) for a line shorter than one 400 ms gating block.
            s["source_lufs"] = _finite(audio.integrated_lufs(audio.concat_spans(source, sr, [source_span]), sr))
            s["dub_lufs"] = _finite(audio.integrated_lufs(audio.concat_spans(dub, sr, [dub_span]), sr))
            if s["source_lufs"] is not None and s["dub_lufs"] is not None:
                s["loudness_diff_lu"] = s["dub_lufs"] - s["source_lufs"]
        mixed = background + dub
        if surround is not None:
            mixed = np.concatenate([surround[:, :CENTRE_CHANNEL], mixed, surround[:, CENTRE_CHANNEL + 1:]], axis=1)
        mixed, _ = audio.limit_peak(mixed, sr, ceiling_dbfs=-1.0)

        lang, vid = row["lang"], row["video_id"]
        dub_audio_uri = paths.output(self.out_dir, vid, lang, ".wav")
        # The dub track alone carries no picture: it discloses (and its C2PA manifest records) the voice only.
        disclosure = provenance.disclosure_text(self.config, lips_rendered=False)
        with uris.staged_output(dub_audio_uri) as local:
            audio.write_wav(local, mixed, sr, tags={"comment": disclosure, "software": provenance.software()})
            audio_provenance = self.signing.sign(local, dub_audio_uri, "wav", row, picture=False,
                                                 lips_rendered=False, disclosure=disclosure)
        # SRT, WebVTT and the optional dual file, timed to the dub and held to the timed-text limits
        subs = subtitles.write_outputs(dubbed, self.config.subtitles, self.out_dir, vid, lang, row.get("duration_s"))
        diff = dub_lufs - source_lufs if np.isfinite(dub_lufs) and np.isfinite(source_lufs) else None
        return {**row, "segments": segments, "dub_audio_uri": dub_audio_uri, **subs,
                "source_dialogue_lufs": _finite(source_lufs), "dub_dialogue_lufs": _finite(dub_lufs),
                "loudness_diff_lu": diff, "dub_gain_db": gain_db,
                "true_peak_dbfs": _finite(audio.true_peak_dbfs(mixed, sr)),
                # the dub track's; Mux adds the video's (provenance.combine)
                "provenance_status": audio_provenance}


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
