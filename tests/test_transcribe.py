from operators.transcribe import split_at_pauses


def _w(text, start, end):
    return {"text": text, "start_s": start, "end_s": end, "probability": 1.0}


def test_words_that_stretch_over_a_pause_are_split_on_the_speech_spans():
    # Whisper's "I" starts before the pause and ends after it; the VAD spans know better
    words = [_w("the", 0.24, 0.7), _w("house", 0.7, 0.96), _w("is", 0.96, 1.18), _w("red,", 1.18, 1.46),
             _w("I", 1.64, 3.28), _w("drink", 3.28, 3.52), _w("coffee", 3.52, 4.72)]
    lines = split_at_pauses(words, [(0.558, 1.618), (3.182, 4.786)], 0.5)
    assert [(s, e, " ".join(w["text"] for w in p)) for s, e, p in lines] == [
        (0.558, 1.46, "the house is red,"), (3.182, 4.72, "I drink coffee")]


def test_without_spans_a_gap_between_words_splits():
    words = [_w("a", 0.0, 0.5), _w("b", 0.6, 1.0), _w("c", 1.6, 2.0)]
    lines = split_at_pauses(words, [], 0.5)
    assert [(s, e, len(p)) for s, e, p in lines] == [(0.0, 1.0, 2), (1.6, 2.0, 1)]


def test_line_edges_snap_to_where_speech_was_heard():
    from operators.transcribe import snap_to_spans

    def seg(start, end):
        return {"start_s": start, "end_s": end}

    spans = [(0.558, 1.618), (3.282, 4.786)]
    # the second line's first word was timed late (3.54): its onset would stay in the background
    lines = [seg(0.558, 1.46), seg(3.54, 4.2), seg(4.25, 4.72), seg(6.0, 6.5)]
    assert [(s["start_s"], s["end_s"]) for s in snap_to_spans(lines, spans)] == [
        (0.558, 1.618), (3.282, 4.2), (4.25, 4.786), (6.0, 6.5)]   # shared span: inner edges stay
    assert snap_to_spans(lines, []) == lines


def test_source_subtitles_that_overlap_become_lines_that_do_not(tmp_path):
    from operators.config import Config
    from operators.schema import VIDEO, conform, segment_id
    from operators.transcribe import Transcribe

    srt = tmp_path / "clip.srt"
    srt.write_text("1\n00:00:00,600 --> 00:00:02,040\nThe house is red.\n\n"       # 40 ms into the next cue
                   "2\n00:00:02,000 --> 00:00:03,000\nI drink coffee.\n\n"
                   "3\n00:00:04,000 --> 00:00:05,000\nEvery morning.\n\n"
                   "4\n00:00:04,000 --> 00:00:05,000\nEvery morning.\n")          # the same cue twice
    row = {"video_id": "clip", "uri": "clip.mp4", "source_lang": "en", "source_subtitles_uri": str(srt)}
    out = Transcribe(Config(), str(tmp_path / "work"), str(tmp_path / "out")).process_row(row)
    segments = conform([out], VIDEO).to_pylist()[0]["segments"]
    assert [(s["segment_id"], s["start_s"], s["end_s"], s["source_text"], s["notes"]) for s in segments] == [
        (segment_id("clip", 0.6, 2.0), 0.6, 2.0, "The house is red.",
         ["source cue trimmed by 0.040 s: it overlapped the next one, at 2.000 s"]),
        (segment_id("clip", 2.0, 3.0), 2.0, 3.0, "I drink coffee.", []),
        (segment_id("clip", 4.0, 5.0), 4.0, 5.0, "Every morning.",
         ["merged with the overlapping source cue at 4.000-5.000 s"])]


def test_transcribed_lines_that_overlap_are_tidied_with_their_words():
    from operators.transcribe import tidy_segments

    def seg(start, end, *words):
        return {"start_s": start, "end_s": end, "source_text": " ".join(w["text"] for w in words),
                "words": list(words), "notes": []}

    # Whisper's second segment starts 30 ms before the first ends; the third covers half of the second
    lines = [seg(0.5, 1.53, _w("Hello", 0.5, 1.53)), seg(1.5, 2.6, _w("how", 1.5, 2.0), _w("are", 2.05, 2.55)),
             seg(2.2, 3.0, _w("you", 2.6, 3.0))]
    tidy = tidy_segments(lines, "transcribed line")
    assert [(s["start_s"], s["end_s"], s["source_text"], [w["text"] for w in s["words"]], s["notes"])
            for s in tidy] == [
        (0.5, 1.5, "Hello", ["Hello"], ["transcribed line trimmed by 0.030 s: it overlapped the next one, at 1.500 s"]),
        (1.5, 3.0, "how are you", ["how", "are", "you"],
         ["merged with the overlapping transcribed line at 2.200-3.000 s"])]
