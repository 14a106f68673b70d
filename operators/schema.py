"""Every Arrow schema and column name, in one place.

Rows flow through the pipeline as Arrow tables. A row is first a catalog
row, then a video row (ANALYZE adds probe, shots and speech segments), then,
after the per-language fan-out, a result row (LOCALIZE, MIX, MUX and SCORE
fill the rest). The manifest is the result table written as Parquet.
Units are in the names; times are float seconds.
"""
from __future__ import annotations

import uuid

import pyarrow as pa

# 2: lip sync (faces, lip model, render, sync scores)
# 3: quality report (speaker similarity, mouth change, per-line loudness, share at the speed cap)
# 4: per-line notes (overlapping cues merged or trimmed); catalog URIs stored redacted; output container
#    and codec; source pixel format, audio start offset and notes; the audio track dubbed
# 5: the shard plan (shards) and frame times; lip targets; speakers (face identities across shots);
#    the translation route; subtitles as WebVTT (and dual) with timed-text limits; the AI-dubbing
#    disclosure and C2PA provenance status; the source's SHA-256
# 6: the duration fit's lead, native rate and cuts; face speakers' offsets and lip model kind; the visual
#    scores; talking photos and replaced lines (ADR)
# 7: the fingerprint of each result's inputs and settings (a changed one is redone); the translation
#    backend's other wordings of each line, a shorter one spoken where the line would not fit
MANIFEST_VERSION = "7"

# Row status. A row without a status is still in flight; the driver marks it
# ok when it leaves the last operator.
OK, FAILED, SKIPPED = "ok", "failed", "skipped"

TRANSLATION = pa.struct([
    ("lang", pa.string()),
    ("subtitles_uri", pa.string()),
])

# A line to re-voice in the video's own language (ADR): its time, and its new text or a new recording.
REPLACED_LINE = pa.struct([
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("text", pa.string()),
    ("audio_uri", pa.string()),
])

CATALOG_FIELDS = [
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string(), nullable=False),
    pa.field("target_langs", pa.list_(pa.string())),
    pa.field("source_lang", pa.string()),
    pa.field("source_subtitles_uri", pa.string()),
    pa.field("audio_track", pa.string()),         # which source audio track: "2" (0-based) or a language ("de")
    pa.field("audio_uri", pa.string()),           # a photo's speech (uri is then an image: a talking photo)
    pa.field("translations", pa.list_(TRANSLATION)),
    pa.field("replace_lines", pa.list_(REPLACED_LINE)),   # ADR: lines re-voiced in source_lang, lips re-rendered
    pa.field("catalog_row", pa.int32()),          # 1-based line/row in the catalog file, for messages
]
CATALOG = pa.schema(CATALOG_FIELDS)

SHOT = pa.struct([
    ("shot_index", pa.int32()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("start_frame", pa.int64()),
    ("end_frame", pa.int64()),                    # exclusive
])

# A piece of a video analysed on its own (see operators/plan_shards.py). Frames are [start, end); the
# margins are extra frames analysed past an edge cut inside a shot, so tracks continue over the cut.
SHARD = pa.struct([
    ("shard_index", pa.int32()),
    ("start_frame", pa.int64()),
    ("end_frame", pa.int64()),                    # exclusive
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("cut", pa.string()),                         # how its start was cut: "video start", "shot cut in a speech
                                                  # gap", "shot cut", "inside a shot, in a speech gap", "inside a shot"
    ("margin_before_frames", pa.int32()),
    ("margin_after_frames", pa.int32()),
    ("status", pa.string()),                      # after analysis: "ok" or "failed"
    ("error", pa.string()),                       # why it failed, its time range named
])

WORD = pa.struct([
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("text", pa.string()),
    ("probability", pa.float64()),
])

# One speech segment of the source and, after LOCALIZE, its dub.
SEGMENT = pa.struct([
    ("segment_id", pa.string()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("source_text", pa.string()),
    ("words", pa.list_(WORD)),
    ("notes", pa.list_(pa.string())),             # what the pipeline changed in this line, and why
    ("target_text", pa.string()),
    ("target_alternatives", pa.list_(pa.string())),  # other wordings the translation backend offered
    ("replacement_audio_uri", pa.string()),       # ADR: a new recording of the line, spoken instead of TTS
    ("tts_uri", pa.string()),                     # raw synthesized speech
    ("tts_duration_s", pa.float64()),
    ("tts_rate", pa.float64()),                   # speaking rate the TTS synthesized at natively (1.0 = its own)
    ("fit_uri", pa.string()),                     # speech after duration fit, as placed
    ("speech_rate", pa.float64()),                # speed-up applied, native and stretched together (1.0 = none)
    ("placed_start_s", pa.float64()),
    ("placed_end_s", pa.float64()),
    ("overflow_s", pa.float64()),                 # time taken from the silence after the segment
    ("cut_s", pa.float64()),                      # speech that did not fit even then, cut off
    ("lead_s", pa.float64()),                     # time taken from the silence before the segment
    ("back_text", pa.string()),                   # the dub transcribed back
    ("wer", pa.float64()),
    ("cer", pa.float64()),
    ("speaker_similarity", pa.float64()),         # the dub's voice vs the source's in this line (cosine)
    ("source_lufs", pa.float64()),                # this line in the source (dialogue and background)
    ("dub_lufs", pa.float64()),                   # this line's dub speech as mixed
    ("loudness_diff_lu", pa.float64()),
    # lip sync (see README, "Lip sync")
    ("speaker_track_id", pa.int32()),             # the visible face speaking this line; null: none
    ("speaker_id", pa.int32()),                   # who that face is, the same in every shot (FACE_TRACK)
    ("lip_reason", pa.string()),                  # why the lips of this line are not re-rendered
    ("lip_frames_rendered", pa.int32()),
    ("source_sync_offset_frames", pa.int32()),    # the source's own mouth vs its own speech
    ("source_sync_confidence", pa.float64()),
    ("sync_offset_frames", pa.int32()),           # the dubbed video's mouth vs the dub speech
    ("sync_confidence", pa.float64()),
    ("mouth_change_ratio", pa.float64()),         # frame-to-frame lip change, rendered / source
    # what a reviewer would see in the re-rendered frames (operators/visual.py; the worst 5% of frames)
    ("visual_ssim", pa.float64()),                # structure around the lips against the source (1 = intact)
    ("visual_seam", pa.float64()),                # edge drawn at the rendered box's border (luma levels/px)
    ("visual_flicker", pa.float64()),             # frame-to-frame change of what was altered (luma levels)
    ("mouth_shape_error", pa.float64()),          # re-measured lips vs the shape asked for (face units)
])

# One face followed through one shot. Landmarks per frame live in the file at `faces_uri`.
FACE_TRACK = pa.struct([
    ("track_id", pa.int32()),
    ("shot_index", pa.int32()),
    ("start_frame", pa.int64()),
    ("end_frame", pa.int64()),                    # exclusive
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("face_height_px", pa.float64()),             # median
    ("end_reason", pa.string()),                  # "shot end", "lost", "left the frame"
    ("speaker_id", pa.int32()),                   # the person: tracks of one face identity share it
])

# One person seen in the video (a face identity across shots), and their lip model.
SPEAKER = pa.struct([
    ("speaker_id", pa.int32()),
    ("track_ids", pa.list_(pa.int32())),
    ("lip_model_frames", pa.int64()),             # frames the model learnt from; null: no model
    ("lip_model_r2", pa.float64()),               # its held-out fit of mouth opening
    ("source_offset_frames", pa.int32()),         # the source's mouth behind its sound in their lines (frames);
                                                  # their model learnt the mouth at that offset
    ("lip_model_kind", pa.string()),              # "speaker": learnt from them; "loudness": the speaker-
                                                  # independent mouth, for too little footage
])

# One count per timed-text limit, named as its setting in the `subtitles` config section.
SUBTITLE_LIMITS = ("max_chars_per_line", "max_lines_per_cue", "max_chars_per_s", "min_duration_s", "max_duration_s")
SUBTITLE_LIMIT_COUNTS = pa.struct([(name, pa.int32()) for name in SUBTITLE_LIMITS])

# A written cue that still breaks a limit after re-flow, split and lengthening.
SUBTITLE_ISSUE = pa.struct([
    ("cue_number", pa.int32()),                   # as numbered in the .srt and .vtt (1-based)
    ("segment_id", pa.string()),                  # the dubbed line the cue shows
    ("limit", pa.string()),                       # one of SUBTITLE_LIMITS
    ("value", pa.float64()),                      # the cue's: characters, lines, characters/s or seconds
    ("allowed", pa.float64()),                    # the setting it breaks
])

# wall_s: the stage's elapsed time on the row; cpu_s: the CPU time it used (its process, every thread, and
# the child processes it waited for, such as ffmpeg); both summed over shards for a sharded stage.
TIMING = pa.struct([("stage", pa.string()), ("wall_s", pa.float64()), ("cpu_s", pa.float64())])

MODEL = pa.struct([
    ("stage", pa.string()),
    ("name", pa.string()),
    ("version", pa.string()),
    ("license", pa.string()),
    ("source", pa.string()),
])

STATUS_FIELDS = [
    pa.field("status", pa.string()),
    pa.field("error_stage", pa.string()),
    pa.field("error", pa.string()),
    pa.field("timings", pa.list_(TIMING)),
    pa.field("models", pa.list_(MODEL)),
]

ANALYSIS_FIELDS = [
    pa.field("photo_video_uri", pa.string()),      # a talking photo (uri an image): the video made from it
                                                   # (operators/photo.py), which every stage reads as the picture
    pa.field("duration_s", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("frame_count", pa.int64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("video_codec", pa.string()),
    pa.field("pixel_format", pa.string()),         # the source picture's, as ffmpeg names it (yuv420p10le)
    pa.field("audio_start_offset_s", pa.float64()),  # first audio sample after the first frame (negative: before)
    pa.field("source_notes", pa.list_(pa.string())),  # what was done to fit the source, not failures
    pa.field("source_audio_track", pa.int32()),
    pa.field("source_audio_layout", pa.string()),  # "stereo" (mono and stereo sources) or "5.1" (centre dubbed)    # the audio track dubbed, 0-based among the file's audio tracks
    pa.field("audio_sample_rate_hz", pa.int32()),
    pa.field("audio_channels", pa.int32()),
    pa.field("source_audio_uri", pa.string()),     # full-quality source audio (mix input)
    pa.field("asr_audio_uri", pa.string()),        # 16 kHz mono (ASR input)
    pa.field("detected_lang", pa.string()),
    pa.field("lang_probability", pa.float64()),
    pa.field("shots", pa.list_(SHOT)),
    pa.field("shards", pa.list_(SHARD)),           # the shard plan, and each shard's analysis outcome
    pa.field("frame_times_uri", pa.string()),      # every frame's presentation time (npy), for seeking shards
    pa.field("segments", pa.list_(SEGMENT)),
    pa.field("faces_uri", pa.string()),            # per-frame landmarks of every track (npz)
    pa.field("face_tracks", pa.list_(FACE_TRACK)),
    pa.field("face_coverage", pa.float64()),       # share of speech frames with a tracked face
    pa.field("lip_models_uri", pa.string()),       # the speakers' audio-to-mouth models (npz)
    pa.field("lip_model_r2", pa.float64()),        # held-out fit of mouth opening on the source
    pa.field("speakers", pa.list_(SPEAKER)),       # every face identity, with its lip model's fit
    pa.field("source_sync_offset_frames", pa.int32()),
    pa.field("source_sync_confidence", pa.float64()),
    pa.field("source_sha256", pa.string()),        # of the source file as read (C2PA manifests cite it)
]

VIDEO = pa.schema(CATALOG_FIELDS + STATUS_FIELDS + ANALYSIS_FIELDS)

# A shard's row in the analysis phase: its video's row plus which shard it is. Shard rows of one video
# are merged back into its video row (operators/merge_shards.py) before the per-language fan-out.
SHARD_FIELDS = [
    pa.field("shard_index", pa.int32()),
    pa.field("num_shards", pa.int32()),
    pa.field("shard_fingerprint", pa.string()),   # of the inputs and settings its analysis is made from
    pa.field("shard_output_uri", pa.string()),     # per (shard, language): the shard's re-rendered picture
]
SHARD_ROW = pa.schema(CATALOG_FIELDS + STATUS_FIELDS + ANALYSIS_FIELDS + SHARD_FIELDS)

RESULT_FIELDS = [
    pa.field("result_id", pa.string()),
    pa.field("lang", pa.string()),
    pa.field("manifest_version", pa.string()),
    pa.field("inputs_fingerprint", pa.string()),   # of the catalog row's inputs and the settings it was made with
    # outputs
    pa.field("video_out_uri", pa.string()),
    pa.field("output_container", pa.string()),     # "mp4", "mov" or "mkv" (operators/formats.py)
    pa.field("output_video_codec", pa.string()),   # "h264", "hevc" or "prores"
    pa.field("output_video_copied", pa.bool_()),   # the source picture stream copied as it is (not re-encoded)
    pa.field("dub_audio_uri", pa.string()),
    pa.field("subtitles_out_uri", pa.string()),    # SRT, also embedded in the video
    pa.field("subtitles_vtt_uri", pa.string()),    # the same cues as WebVTT
    pa.field("subtitles_dual_uri", pa.string()),   # source above target (subtitles.dual); null: not written
    # subtitles: timed-text limits (config `subtitles`, operators/subtitles.py)
    pa.field("subtitle_cues", pa.int32()),
    pa.field("subtitle_lines_split", pa.int32()),  # dubbed lines written as more than one cue
    pa.field("subtitle_cues_extended", pa.int32()),  # cues lengthened into the silence after them
    pa.field("subtitle_cues_over_limits", SUBTITLE_LIMIT_COUNTS),   # cues still over each limit
    pa.field("subtitle_issues", pa.list_(SUBTITLE_ISSUE)),          # which cues, and which limit
    pa.field("disclosure", pa.string()),           # the AI-dubbing disclosure written into the video's metadata
    pa.field("disclosure_label", pa.string()),     # the label burned into the picture; null: none
    pa.field("provenance_status", pa.string()),    # C2PA: "signed", "not signed: <why>", "failed: <why>"
    # loudness
    pa.field("source_dialogue_lufs", pa.float64()),
    pa.field("dub_dialogue_lufs", pa.float64()),
    pa.field("loudness_diff_lu", pa.float64()),
    pa.field("dub_gain_db", pa.float64()),
    pa.field("true_peak_dbfs", pa.float64()),
    # timing fit
    pa.field("segments_dubbed", pa.int32()),
    pa.field("speech_rate_mean", pa.float64()),
    pa.field("speech_rate_max", pa.float64()),
    pa.field("share_sped_up", pa.float64()),
    pa.field("share_at_speed_cap", pa.float64()),  # lines that needed the largest speed-up or more
    pa.field("overflow_s_total", pa.float64()),
    pa.field("cut_s_total", pa.float64()),
    pa.field("lead_s_total", pa.float64()),        # taken from the silence before lines
    pa.field("lines_over_cap", pa.int32()),        # lines spoken faster than fit.max_speedup (whole, but rushed)
    pa.field("lines_cut", pa.int32()),             # lines that lost speech even at fit.hard_max_speedup
    # translation: the pairs machine translation went through ("en-es", then "es-pt" for a pivot), or
    # ["subtitles"] for the catalog's own; null when nothing was translated
    pa.field("translation_route", pa.list_(pa.string())),
    # intelligibility
    pa.field("wer", pa.float64()),
    pa.field("cer", pa.float64()),
    # voice
    pa.field("voice_cloned", pa.bool_()),          # the TTS spoke in the source speaker's voice (it can clone)
    pa.field("speaker_similarity", pa.float64()),
    # lip sync
    pa.field("lip_targets_uri", pa.string()),      # the planned mouth shapes (operators/plan_lips.py)
    pa.field("rendered_video_uri", pa.string()),   # re-rendered picture (video only); null: source kept
    pa.field("lip_status", pa.string()),           # "rendered" or "unchanged"
    pa.field("lip_reason", pa.string()),           # why lines were left as they were
    pa.field("frames_rerendered", pa.int64()),
    pa.field("share_rerendered", pa.float64()),
    pa.field("sync_offset_frames", pa.int32()),
    pa.field("sync_confidence", pa.float64()),
    pa.field("mouth_change_ratio", pa.float64()),
    pa.field("visual_ssim_min", pa.float64()),     # the worst line's visual scores (see SEGMENT)
    pa.field("visual_seam_max", pa.float64()),
    pa.field("visual_flicker_max", pa.float64()),
    pa.field("mouth_shape_error_max", pa.float64()),
    pa.field("frames_kept_by_guard", pa.int64()),  # re-rendered frames the render guard shipped as the source
    # review (operators/review.py): filled for every row, ok, failed or skipped
    pa.field("needs_review", pa.bool_()),
    pa.field("review_reasons", pa.list_(pa.string())),
]

RESULT = pa.schema(CATALOG_FIELDS + STATUS_FIELDS + ANALYSIS_FIELDS + RESULT_FIELDS)

# A (shard, language) row while the picture is rendered shard by shard (operators/render.py).
RESULT_SHARD_ROW = pa.schema(CATALOG_FIELDS + STATUS_FIELDS + ANALYSIS_FIELDS + RESULT_FIELDS + SHARD_FIELDS)

# The manifest is the result table as it leaves the last operator.
MANIFEST = RESULT

# The per-segment table of the manifest: one row per (video, language, segment).
SEGMENT_ROW = pa.schema(
    [pa.field("result_id", pa.string()), pa.field("video_id", pa.string()), pa.field("lang", pa.string())]
    + [pa.field(f.name, f.type) for f in SEGMENT if f.name != "words"]
)

_NAMESPACE = uuid.UUID("6f1d0c1e-3a57-4c55-9d8e-7b1f6b0d2a11")


def result_id(video_id: str, lang: str) -> str:
    """Deterministic id of a (video, language) result: a re-run writes the same paths."""
    return str(uuid.uuid5(_NAMESPACE, f"{video_id}/{lang}"))


def segment_id(video_id: str, start_s: float, end_s: float) -> str:
    """Deterministic, readable, sortable: derived from the video id and the times."""
    return f"{video_id}@{round(start_s * 1000):08d}-{round(end_s * 1000):08d}"


def conform(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows as a table of exactly `schema`: missing columns null, extra keys dropped."""
    return pa.Table.from_pylist(rows, schema=schema)


def empty_segment(**values) -> dict:
    row = {name: None for name in SEGMENT.names}
    row.update(values)
    return row
