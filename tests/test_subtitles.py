from operators.config import SubtitlesConfig
from operators.schema import RESULT, conform
from operators.subtitles import (Cue, Issue, TimedCue, assign_cues, chars, check, layout, lengthen, read_cues,
                                 reflow, split_line, tidy_cues, write_outputs, write_srt, write_vtt)


def test_srt_and_vtt_read_the_same_cues(tmp_path):
    srt = tmp_path / "a.srt"
    srt.write_text("1\n00:00:01,000 --> 00:00:02,500\nHello <i>there</i>.\n\n"
                   "2\n00:00:03,000 --> 00:00:04,000\nSecond\nline\n")
    vtt = tmp_path / "a.vtt"
    vtt.write_text("WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nHello <i>there</i>.\n\n"
                   "00:00:03.000 --> 00:00:04.000\nSecond\nline\n")
    expected = [Cue(1.0, 2.5, "Hello there."), Cue(3.0, 4.0, "Second line")]
    assert read_cues(str(srt)) == expected
    assert read_cues(str(vtt)) == expected


def test_write_then_read_round_trips(tmp_path):
    cues = [Cue(0.5, 1.25, "Hola."), Cue(2.0, 3.0, "¿Qué tal?")]
    write_srt(cues, str(tmp_path / "o.srt"))
    assert read_cues(str(tmp_path / "o.srt")) == cues


def test_cues_go_to_the_segment_they_overlap_most():
    segments = [(0.0, 2.0), (3.0, 5.0), (8.0, 9.0)]
    cues = [Cue(0.1, 1.0, "a"), Cue(1.5, 3.6, "b"), Cue(3.5, 5.5, "c"), Cue(6.5, 7.0, "d")]
    # b overlaps segment 0 by 0.5 s and segment 1 by 0.6 s; d overlaps none and is nearest to segment 2
    assert [c.text for c in assign_cues(segments, cues)] == ["a", "b c", "d"]
    assert [c.text for c in assign_cues(segments, [])] == ["", "", ""]


def test_a_cue_carries_its_notes_to_the_segment_it_goes_to():
    cues = [Cue(0.1, 1.0, "a", ("merged",)), Cue(3.5, 4.0, "b")]
    assert assign_cues([(0.0, 2.0), (3.0, 5.0)], cues) == [Cue(0.0, 2.0, "a", ("merged",)), Cue(3.0, 5.0, "b")]


def _assert_tidy(cues):
    assert all(c.end_s > c.start_s for c in cues)
    assert all(a.end_s <= b.start_s for a, b in zip(cues, cues[1:]))


def test_a_small_overlap_trims_the_earlier_cue():
    # as real SRTs have it: the first cue ends 40 ms after the second starts
    tidy = tidy_cues([Cue(3.0, 4.5, "Second."), Cue(1.0, 3.04, "First.")], "source cue")
    assert tidy == [Cue(1.0, 3.0, "First.", ("source cue trimmed by 0.040 s: it overlapped the next one, at 3.000 s",)),
                    Cue(3.0, 4.5, "Second.")]
    _assert_tidy(tidy)


def test_a_duplicated_or_contained_cue_is_merged():
    duplicate = tidy_cues([Cue(1.0, 2.0, "Hello."), Cue(1.0, 2.0, "Hello.")], "source cue")
    assert duplicate == [Cue(1.0, 2.0, "Hello.", ("merged with the overlapping source cue at 1.000-2.000 s",))]
    # a second speaker's short reply inside the first speaker's cue: one line, texts in time order
    contained = tidy_cues([Cue(1.0, 4.0, "- Are you coming?"), Cue(2.5, 3.2, "- Yes.")], "translated cue")
    assert contained == [Cue(1.0, 4.0, "- Are you coming? - Yes.",
                             ("merged with the overlapping translated cue at 2.500-3.200 s",))]


def test_cues_that_do_not_overlap_are_left_as_they_are():
    cues = [Cue(0.5, 1.25, "a"), Cue(1.25, 2.0, "b"), Cue(3.0, 4.0, "c")]   # touching is not overlapping
    assert tidy_cues(cues, "source cue") == cues
    assert tidy_cues([], "source cue") == []


def test_a_chain_of_overlapping_cues():
    cues = [Cue(0.0, 2.05, "a"), Cue(2.0, 4.0, "b"), Cue(2.5, 3.5, "c"), Cue(3.9, 6.0, "d")]
    # a slips 50 ms into b: trimmed; c lies inside b: merged; d starts 100 ms before b+c ends: b+c trimmed
    tidy = tidy_cues(cues, "source cue")
    assert tidy == [
        Cue(0.0, 2.0, "a", ("source cue trimmed by 0.050 s: it overlapped the next one, at 2.000 s",)),
        Cue(2.0, 3.9, "b c", ("merged with the overlapping source cue at 2.500-3.500 s",
                              "source cue trimmed by 0.100 s: it overlapped the next one, at 3.900 s")),
        Cue(3.9, 6.0, "d")]
    _assert_tidy(tidy)


# --- timed-text limits: re-flow, split, lengthen, check -------------------------------

LIMITS = SubtitlesConfig()


def test_characters_count_spaces_but_not_line_breaks():
    assert chars("Ich trinke\nKaffee.") == 17


def test_reflow_breaks_at_spaces_into_the_fewest_most_even_lines():
    # 64 characters: two lines, the most even break (30 + 33), not the greedy one (42 + 21)
    assert reflow("The quick brown fox jumps over the lazy dog and keeps on running", 42) == (
        "The quick brown fox jumps over", "the lazy dog and keeps on running")
    # after a comma rather than mid-clause, though a little less even (38 + 22 against 31 + 29)
    assert reflow("We walked home through the dark forest, then slept till noon", 42) == (
        "We walked home through the dark forest,", "then slept till noon")
    # but not at a comma that would leave a stub
    assert reflow("Oh, I thought we would never see each other again", 42) == (
        "Oh, I thought we would", "never see each other again")
    assert reflow("  Hello   there. ", 42) == ("Hello there.",)        # what fits stays one line
    assert reflow("aa bb cc", 5) == ("aa", "bb cc")                     # equally even: the shorter line on top
    assert reflow("Hi Supercalifragilisticexpialidocious yes", 10) == (
        "Hi", "Supercalifragilisticexpialidocious", "yes")             # never cut inside a word
    assert reflow("", 42) == ()


def test_a_line_too_long_for_two_lines_is_split_in_its_own_time_by_characters():
    text = ("This is a rather long dubbed line that will certainly not fit on two lines "
            "of forty-two characters each, so it must be split.")                   # 125 characters
    cues = split_line(1.0, 9.0, text, "v@1", LIMITS)
    # cut before "on" (character 62 of 126, the space after the last word counted): 1 + 8 * 62 / 126 = 4.937 s
    assert cues == [
        TimedCue(1.0, 4.937, ("This is a rather long dubbed", "line that will certainly not fit"), "v@1"),
        TimedCue(4.937, 9.0, ("on two lines of forty-two characters each,", "so it must be split."), "v@1")]
    assert check(cues, LIMITS) == []


def test_a_line_longer_than_the_maximum_duration_is_split_into_even_cues():
    # 10 s: cuts before "we" (16/29 of the time) or "could" (19/29) keep both cues under 7 s;
    # "Well, I suppose" / "we could go." (15 and 12 characters) is the more even
    cues = split_line(0.0, 10.0, "Well, I suppose we could go.", "v@2", LIMITS)
    assert cues == [TimedCue(0.0, 5.517, ("Well, I suppose",), "v@2"), TimedCue(5.517, 10.0, ("we could go.",), "v@2")]
    # one word cannot be split: it stays, and is reported
    (long,) = split_line(0.0, 9.0, "Aaaah!", "v@3", LIMITS)
    assert check([long], LIMITS) == [Issue(1, "v@3", "max_duration_s", 9.0, 7.0)]


def test_short_and_fast_cues_are_lengthened_into_the_silence_after_them_never_over_the_next():
    cues = [TimedCue(1.0, 1.4, ("Yes.",), "a"),                              # 0.4 s: to the minimum, 1.833
            TimedCue(3.0, 3.4, ("A very quick line of many words.",), "b"),  # 32 chars: 32 / 17 = 1.883 s
            TimedCue(5.0, 5.3, ("No.",), "c"),                               # only 0.2 s of room: to 5.5
            TimedCue(5.5, 6.5, ("Fine.",), "d")]
    longer, extended = lengthen(cues, LIMITS, end_limit_s=10.0)
    assert [(c.start_s, c.end_s) for c in longer] == [(1.0, 1.833), (3.0, 4.883), (5.0, 5.5), (5.5, 6.5)]
    assert extended == 3
    assert check(longer, LIMITS) == [Issue(3, "c", "min_duration_s", 0.5, 0.833)]
    # the end of the video bounds it too
    (last,), _ = lengthen([TimedCue(9.0, 9.2, ("Bye.",), "e")], LIMITS, end_limit_s=9.5)
    assert last.end_s == 9.5


def test_check_reports_each_limit_a_cue_breaks():
    wide = TimedCue(0.0, 1.0, ("x" * 43,), "w")
    tall = TimedCue(2.0, 5.0, ("one", "two", "three"), "t")
    assert check([wide, tall], LIMITS) == [
        Issue(1, "w", "max_chars_per_line", 43.0, 42.0),
        Issue(1, "w", "max_chars_per_s", 43.0, 17.0),
        Issue(2, "t", "max_lines_per_cue", 3.0, 2.0)]
    assert check([wide], LIMITS.model_copy(update={"max_chars_per_line": 43, "max_chars_per_s": 43.0})) == []


def test_layout_fixes_what_it_can_and_lists_the_rest():
    laid = layout([("a", 0.0, 0.4, "Yes."),
                   ("b", 0.6, 1.0, "A very quick line of many words."),
                   ("c", 5.0, 5.8, "Supercalifragilisticexpialidociousness-isms-and-more")], LIMITS, end_limit_s=5.8)
    assert [(c.segment_id, c.start_s, c.end_s) for c in laid.cues] == [
        ("a", 0.0, 0.6), ("b", 0.6, 2.483), ("c", 5.0, 5.8)]
    assert (laid.lines_split, laid.cues_extended) == (0, 2)
    assert laid.issues == [Issue(1, "a", "min_duration_s", 0.6, 0.833),         # the next cue starts at 0.6
                           Issue(3, "c", "max_chars_per_line", 52.0, 42.0),     # one word: never cut
                           Issue(3, "c", "max_chars_per_s", 65.0, 17.0),        # the video ends at 5.8
                           Issue(3, "c", "min_duration_s", 0.8, 0.833)]


def test_webvtt_reads_back_with_an_independent_parser(tmp_path):
    import webvtt

    path = tmp_path / "o.vtt"
    write_vtt([Cue(0.5, 1.25, "Tom & Jerry <3\n¿Qué tal?"), Cue(3661.0, 3662.5, "Fin.")], str(path))
    assert path.read_text().startswith("WEBVTT\n\n1\n00:00:00.500 --> 00:00:01.250\n")
    cues = list(webvtt.read(str(path)))
    assert [(c.start, c.end, c.lines) for c in cues] == [
        ("00:00:00.500", "00:00:01.250", ["Tom &amp; Jerry &lt;3", "¿Qué tal?"]),
        ("01:01:01.000", "01:01:02.500", ["Fin."])]
    import html
    assert [html.unescape(c.text) for c in cues] == ["Tom & Jerry <3\n¿Qué tal?", "Fin."]


def _dubbed(segment_id, start_s, end_s, source, target):
    return {"segment_id": segment_id, "placed_start_s": start_s, "placed_end_s": end_s,
            "source_text": source, "target_text": target}


def test_the_files_and_their_manifest_columns(tmp_path):
    import webvtt

    out = str(tmp_path / "out")
    segments = [_dubbed("v@2", 3.0, 11.0, "And then we walked all the way home through the rain, without a word "
                        "between us, until the lights came on.",
                        "Y luego caminamos hasta casa bajo la lluvia, sin decirnos una palabra, hasta que "
                        "se encendieron las luces."),
                _dubbed("v@1", 0.5, 0.9, "Yes.", "Sí.")]
    cols = write_outputs(segments, LIMITS.model_copy(update={"dual": True}), out, "v", "es", end_limit_s=12.0)
    srt, vtt, dual = cols["subtitles_out_uri"], cols["subtitles_vtt_uri"], cols["subtitles_dual_uri"]
    assert (srt, vtt, dual) == (f"{out}/videos/v/v.es.srt", f"{out}/videos/v/v.es.vtt", f"{out}/videos/v/v.es.dual.vtt")
    # "Sí." lengthened to the minimum; the long line (106 characters) split after the comma before "sin"
    # (3 + 8 * 45 / 107 = 6.364 s), which is less even by characters than before "una" but ends a clause
    expected = [(0.5, 1.333, "Sí."),
                (3.0, 6.364, "Y luego caminamos hasta\ncasa bajo la lluvia,"),
                (6.364, 11.0, "sin decirnos una palabra,\nhasta que se encendieron las luces.")]
    assert [(c.start_s, c.end_s, c.text) for c in read_cues(srt)] == [(a, b, t.replace("\n", " ")) for a, b, t in expected]
    assert [(c.start_in_seconds + int(c.start[-3:]) / 1000, c.text) for c in webvtt.read(vtt)] == [
        (a, t) for a, _, t in expected]
    assert {k: v for k, v in cols.items() if not k.endswith("_uri")} == {
        "subtitle_cues": 3, "subtitle_lines_split": 1, "subtitle_cues_extended": 1,
        "subtitle_cues_over_limits": {"max_chars_per_line": 0, "max_lines_per_cue": 0, "max_chars_per_s": 0,
                                      "min_duration_s": 0, "max_duration_s": 0},
        "subtitle_issues": []}
    # dual: one cue per dubbed line, over its target cues' time ("Sí." lengthened), the source above the target
    assert [(c.start, c.end, c.lines) for c in webvtt.read(dual)] == [
        ("00:00:00.500", "00:00:01.333", ["Yes.", "Sí."]),
        ("00:00:03.000", "00:00:11.000", [
            "And then we walked all the way home", "through the rain, without a word", "between us, until the lights came on.",
            "Y luego caminamos hasta casa bajo", "la lluvia, sin decirnos una palabra,", "hasta que se encendieron las luces."])]
    table = conform([{"video_id": "v", "uri": "v.mp4", **cols}], RESULT)     # the columns fit the manifest
    assert table.column("subtitle_cues").to_pylist() == [3]


def test_the_dual_file_is_optional_and_may_be_srt(tmp_path):
    out = str(tmp_path / "out")
    segments = [_dubbed("v@1", 0.5, 2.0, "The house is red.", "La casa es roja.")]
    assert write_outputs(segments, LIMITS, out, "v", "es")["subtitles_dual_uri"] is None
    assert not (tmp_path / "out" / "videos" / "v" / "v.es.dual.vtt").exists()
    cols = write_outputs(segments, LIMITS.model_copy(update={"dual": True, "dual_format": "srt"}), out, "v", "es")
    assert cols["subtitles_dual_uri"].endswith("/v.es.dual.srt")
    assert open(cols["subtitles_dual_uri"]).read() == "1\n00:00:00,500 --> 00:00:02,000\nThe house is red.\nLa casa es roja.\n"


def test_a_cue_over_limits_is_counted_and_listed(tmp_path):
    # no room to lengthen either: the next cue, then the end of the video
    cols = write_outputs([_dubbed("v@1", 0.0, 0.5, "Hm.", "Mmm."), _dubbed("v@2", 0.6, 1.2, "Go!", "¡Vamos!")],
                         LIMITS, str(tmp_path / "out"), "v", "es", end_limit_s=1.2)
    assert cols["subtitle_cues_over_limits"]["min_duration_s"] == 2
    assert cols["subtitle_issues"] == [
        {"cue_number": 1, "segment_id": "v@1", "limit": "min_duration_s", "value": 0.6, "allowed": 0.833},
        {"cue_number": 2, "segment_id": "v@2", "limit": "min_duration_s", "value": 0.6, "allowed": 0.833}]


def test_a_blank_line_in_a_text_cannot_end_its_cue_early(tmp_path):
    import webvtt

    cues = [Cue(0.0, 1.0, "one\n\ntwo"), Cue(1.0, 2.0, "three --> four")]
    write_srt(cues, str(tmp_path / "o.srt"))
    write_vtt(cues, str(tmp_path / "o.vtt"))
    assert [c.text for c in read_cues(str(tmp_path / "o.srt"))] == ["one two", "three --> four"]
    assert [c.lines for c in webvtt.read(str(tmp_path / "o.vtt"))] == [["one", "two"], ["three --&gt; four"]]
