"""What an operator's ``exchangectl dlq show`` says of a message: its shape, never its values."""

from __future__ import annotations

import orjson

from shared.dead_letters import message_shape
from shared.sensitivity import NEUTRAL_CATEGORY, NEUTRAL_TOPIC

ID_NUMBER = "11010119900307001X"


def test_a_message_is_told_by_its_field_names() -> None:
    event = {
        "id": "e-1",
        "type": "marriage.registered.v1",
        "data": {"spouses": [{"id_number": ID_NUMBER, "name": "王芳"}], "registered_on": "2026-01-02"},
    }
    shape = message_shape("civil.marriage.v1", orjson.dumps(event))

    assert shape["type"] == "marriage.registered.v1" and shape["json"] is True
    assert shape["fields"] == [
        "data",
        "data.registered_on",
        "data.spouses",
        "data.spouses[].id_number",
        "data.spouses[].name",
        "id",
        "type",
    ]
    assert ID_NUMBER not in str(shape) and "王芳" not in str(shape) and "e-1" not in str(shape)


def test_a_restricted_event_keeps_its_data_fields_to_itself() -> None:
    event = {"type": "pregnancy.registered.v1", "data": {"expected_delivery": "2027-03-01"}}
    for topic in ("vital.pregnancy.v1", "civil.marriage.v1"):
        shape = message_shape(topic, orjson.dumps(event))
        assert shape["type"] == NEUTRAL_CATEGORY and shape["data_fields_withheld"] is True
        assert shape["fields"] == ["data", "type"]
        assert "pregnan" not in str(shape) and "expected_delivery" not in str(shape)
    assert message_shape("vital.pregnancy.v1.dlq", b"{}")["topic"] == NEUTRAL_TOPIC + ".dlq"


def test_a_forged_message_names_no_one_even_in_its_keys() -> None:
    shape = message_shape("civil.marriage.v1", orjson.dumps({"type": ID_NUMBER, ID_NUMBER: 1}))
    assert ID_NUMBER not in str(shape) and "[id-number]" in shape["fields"]
    garbage = message_shape("civil.marriage.v1", b"\x00" + ID_NUMBER.encode())
    assert garbage == {"bytes": 19, "topic": "civil.marriage.v1", "json": False}


def test_a_message_nested_as_deep_as_the_parser_allows_is_told_by_its_shape() -> None:
    deep = b"[" * 1000 + b"]" * 1000
    nested = message_shape("civil.marriage.v1", b'{"type": "x", "a": ' + deep + b"}")
    assert nested["fields"] == ["a", "type"]


def test_a_correction_of_a_pregnancy_is_told_as_the_restricted_event_it_corrects() -> None:
    """Its changes name a due date and its record type says it outright: it is shown as a
    pregnancy event is, by the neutral category without its data's fields."""
    correction = {
        "type": "record.corrected.v1",
        "data": {
            "record_type": "pregnancy",
            "changes": {"expected_delivery": "2027-03-08"},
            "reason": "typo",
        },
    }
    shape = message_shape("vital.correction.v1", orjson.dumps(correction))
    assert shape["type"] == NEUTRAL_CATEGORY and shape["data_fields_withheld"] is True
    assert shape["fields"] == ["data", "type"] and shape["topic"] == "vital.correction.v1"
    assert "expected_delivery" not in str(shape) and "record_type" not in str(shape)
    # a correction of any other record keeps its type and field names
    correction["data"] = {"record_type": "marriage", "changes": {"registered_on": "2026-01-02"}}
    other = message_shape("vital.correction.v1", orjson.dumps(correction))
    assert other["type"] == "record.corrected.v1" and other["data_fields_withheld"] is False
    assert "data.changes.registered_on" in other["fields"]  # type: ignore[operator]
