from operators.subtitles import Cue, assign_cues, read_cues, tidy_cues, write_srt


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
