from operators.subtitles import Cue, assign_cues, read_cues, write_srt


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
    assert assign_cues(segments, cues) == ["a", "b c", "d"]
    assert assign_cues(segments, []) == ["", "", ""]
