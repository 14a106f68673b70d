"""Which results a reviewer should look at, and why: scores against the thresholds in `review`.

A pure function of a manifest row, applied by the driver to every row it
writes (ok, failed or skipped, resumed ones too), so a change of thresholds
takes effect on the next run without redoing any dub.
"""
from __future__ import annotations

from operators.config import Config
from operators.schema import FAILED, OK, SKIPPED


def assess(row: dict, config: Config) -> list[str]:
    """The reasons this result needs review; empty when it does not."""
    cfg = config.review
    status = row.get("status")
    if status == FAILED:
        return [f"failed at {row.get('error_stage')}: {row.get('error')}"]
    if status == SKIPPED:
        return [f"skipped at {row.get('error_stage')}: {row.get('error')}"]
    if status != OK:
        return []
    reasons = []

    def above(column: str, limit: float, what: str, unit: str = "") -> None:
        value = row.get(column)
        if value is not None and value > limit:
            reasons.append(f"{what} {value:.2f}{unit} > {limit}{unit}")

    route = row.get("translation_route") or []
    if cfg.flag_pivoted and len(route) > 1:
        reasons.append(f"translation: through a pivot language ({', then '.join(route)}): two rule-based pairs "
                       "chained, their errors add up")
    above("wer", cfg.max_wer, "intelligibility: WER")
    above("cer", cfg.max_cer, "intelligibility: CER")
    above("true_peak_dbfs", cfg.max_true_peak_dbfs, "loudness: true peak", " dBFS")
    cut = row.get("cut_s_total")
    if cut is not None and cut > cfg.max_cut_s:
        reasons.append(f"timing: {cut:.2f} s of speech cut off in {row.get('lines_cut') or 0} line(s) that did not "
                       f"fit even at {config.fit.hard_max_speedup}x (> {cfg.max_cut_s} s)")
    over = row.get("lines_over_cap")
    if cfg.flag_over_cap and over:
        reasons.append(f"timing: {over} line(s) spoken faster than the {config.fit.max_speedup}x cap (up to "
                       f"{row.get('speech_rate_max') or 0:.2f}x) to keep every word")
    diff = row.get("loudness_diff_lu")
    if diff is not None and abs(diff) > cfg.max_loudness_diff_lu:
        reasons.append(f"loudness: dialogue {diff:+.1f} LU from the source (> {cfg.max_loudness_diff_lu} LU)")
    at_cap = row.get("share_at_speed_cap")
    if at_cap is not None and at_cap > cfg.max_share_sped_up_to_cap:
        reasons.append(f"timing: {at_cap:.0%} of lines sped up to the cap ({config.fit.max_speedup}x)")
    similarity = row.get("speaker_similarity")
    voice_checked = cfg.voice_check == "always" or (cfg.voice_check == "cloned" and row.get("voice_cloned"))
    if voice_checked and similarity is not None and similarity < cfg.min_speaker_similarity:
        reasons.append(f"voice: similarity to the source speaker {similarity:.2f} < {cfg.min_speaker_similarity}")
    if row.get("lip_status") == "rendered":
        offset = row.get("sync_offset_frames")
        if offset is not None and abs(offset) > cfg.max_sync_offset_frames:
            reasons.append(f"lip sync: offset {offset:+d} frames (> {cfg.max_sync_offset_frames})")
        dub, source = row.get("sync_confidence"), row.get("source_sync_confidence")
        if dub is not None and source and dub < cfg.min_sync_confidence_ratio * source:
            reasons.append(f"lip sync: confidence {dub:.2f} is {dub / source:.0%} of the source's {source:.2f} "
                           f"(< {cfg.min_sync_confidence_ratio:.0%})")
        ssim = row.get("visual_ssim_min")
        if ssim is not None and ssim < cfg.min_visual_ssim:
            reasons.append(f"picture: the face around a re-rendered mouth keeps {ssim:.2f} of its structure "
                           f"(SSIM < {cfg.min_visual_ssim}): smeared or pulled out of shape")
        above("visual_seam_max", cfg.max_visual_seam, "picture: seam at the re-rendered mouth's border")
        above("visual_flicker_max", cfg.max_visual_flicker, "picture: flicker around the re-rendered mouth")
        above("mouth_shape_error_max", cfg.max_mouth_shape_error,
              "lip sync: re-measured mouth off the shape asked for by")
        # A talking photo's own mouth never moves: against it any mouth "moves more".
        change = None if row.get("photo_video_uri") else row.get("mouth_change_ratio")
        if change is not None and change > cfg.max_mouth_change_ratio:
            reasons.append(f"lip sync: unsteady mouth, it moves {change:.1f}x as much frame to frame as the "
                           f"source's (> {cfg.max_mouth_change_ratio}x)")
    elif (row.get("face_coverage") or 0) >= cfg.min_face_coverage_unrendered and row.get("lip_reason"):
        reasons.append(f"lip sync: a face is on screen for {row['face_coverage']:.0%} of the speech but no lips "
                       f"were re-rendered ({row['lip_reason']})")
    return reasons


def apply(row: dict, config: Config) -> dict:
    reasons = assess(row, config)
    return {**row, "needs_review": bool(reasons), "review_reasons": reasons}
