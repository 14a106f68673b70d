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
