import pyarrow as pa

from operators.schema import RESULT, SEGMENT_ROW, VIDEO, conform, result_id, segment_id


def test_ids_are_deterministic():
    assert result_id("v1", "es") == result_id("v1", "es")
    assert result_id("v1", "es") != result_id("v1", "de")
    assert segment_id("clip", 1.2346, 3.0) == "clip@00001235-00003000"


def test_result_schema_extends_video_schema():
    assert set(VIDEO.names) < set(RESULT.names)
    assert {"result_id", "video_id", "lang", "wer", "speech_rate"} <= set(SEGMENT_ROW.names)
    nested_notes = RESULT.field("segments").type.value_type.field("notes").type
    assert nested_notes == SEGMENT_ROW.field("notes").type == pa.list_(pa.string())
    table = conform([{"video_id": "a", "uri": "x", "extra": 1}], VIDEO)
    assert table.schema == VIDEO and table.num_rows == 1
