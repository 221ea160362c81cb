"""Pure checks of identifiers, the event contracts and the routing rules."""

from __future__ import annotations

import datetime as dt
import io
import logging
import uuid
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.migrant_exchange.domain.routing import Whereabouts, after_event, counterparts
from shared import signing
from shared.events import CATALOG, TOPICS, Envelope, new_event_id, parse_event
from shared.events import payloads as p
from shared.identity import check_division, check_id_number, compose_id_number, subject_key
from shared.observability import JsonFormatter, redact

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_valid_identity_numbers_pass_and_wrong_check_digits_fail() -> None:
    number = compose_id_number("110101", dt.date(1990, 3, 7), 12, "F")
    assert check_id_number(number) == number
    broken = number[:-1] + ("0" if number[-1] != "0" else "1")
    with pytest.raises(ValueError, match="check digit"):
        check_id_number(broken)
    with pytest.raises(ValueError, match="18 characters"):
        check_id_number("1234")


@given(
    st.dates(min_value=dt.date(1950, 1, 1), max_value=dt.date(2020, 12, 31)),
    st.integers(0, 499),
    st.sampled_from("FM"),
)
def test_composed_numbers_are_valid_and_keep_their_birth_date(born: dt.date, serial: int, sex: str) -> None:
    number = compose_id_number("110101", born, serial, sex)
    assert check_id_number(number) == number
    assert number[6:14] == born.strftime("%Y%m%d")


def test_unknown_division_codes_are_rejected() -> None:
    assert check_division("320412") == "320412"
    with pytest.raises(ValueError, match="unknown division"):
        check_division("999999")
    with pytest.raises(ValueError, match="6 digits"):
        check_division("32041")


def test_subject_keys_are_keyed_and_never_the_number() -> None:
    number = compose_id_number("110101", dt.date(1990, 3, 7), 3, "M")
    a, b = subject_key(number, b"secret-a"), subject_key(number, b"secret-b")
    assert a != b and len(a) == 32 and number not in a
    assert subject_key(number.lower(), b"secret-a") == a


def test_a_subject_key_is_what_it_always_was() -> None:
    """Subject keys are stored in every database and are the Kafka keys: a different computation
    would split each person's records in two. HMAC-SHA256, hex, first 32 characters."""
    assert subject_key("11010119940517004X", b"secret-a") == "f7f172aa3e15584086781d203c5c12ab"


def test_redaction_removes_anything_shaped_like_an_identity_number() -> None:
    number = compose_id_number("110101", dt.date(1990, 3, 7), 4, "F")
    assert number not in redact(f"looked up {number} for x")


_FULL_WIDTH = {ord(ch): 0xFEE0 + ord(ch) for ch in "0123456789X"}


@pytest.mark.parametrize(
    "written",
    [
        lambda n: f"{n[:6]} {n[6:14]} {n[14:]}",  # as printed on the card and read out
        lambda n: f"{n[:6]}-{n[6:14]}-{n[14:]}",
        lambda n: n.translate(_FULL_WIDTH),  # typed in full width, which validation accepts
    ],
    ids=["spaces", "hyphens", "full-width"],
)
def test_redaction_removes_an_identity_number_as_people_write_it(written: Any) -> None:
    """Grouped 6-8-4, or in full-width characters, it is still the person's number; the text
    around it and other numbers stay."""
    number = "11010119900307002X"  # valid, with a check character that is not a digit
    line = redact(f"row 12: {written(number)}; offset 1234567, order 20250307")
    assert line == "row 12: [id-number]; offset 1234567, order 20250307"


def test_a_logged_error_says_where_and_what_never_its_text() -> None:
    """A database error's text quotes the failing row (a name, a pregnancy record): the log line
    keeps the frames, the class and the SQLSTATE of each error of the chain, not the text."""
    name, born = "王静", "1992-03-04"  # named here: the traceback quotes the lines that raise
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("registry"))
    logger = logging.getLogger("test.no-error-texts")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(f"refused {name} born {born}")
        except ValueError as e:
            raise asyncpg.CheckViolationError(f"Failing row contains ({name}, {born}, ended)") from e
    except asyncpg.PostgresError:
        logger.exception("unhandled error")
    finally:
        logger.removeHandler(handler)
    line = orjson.loads(stream.getvalue())
    assert line["msg"] == "unhandled error"
    assert "error=ValueError" in line["exc"] and "error=CheckViolationError sqlstate=23514" in line["exc"]
    assert "test_a_logged_error_says_where_and_what_never_its_text" in line["exc"]  # the frames
    assert name not in stream.getvalue() and born not in stream.getvalue()


def test_every_event_type_has_a_topic_and_a_frozen_payload() -> None:
    assert {s.topic for s in CATALOG.values()} == set(TOPICS)
    for spec in CATALOG.values():
        assert spec.payload.model_config.get("frozen") is True
        assert spec.payload.model_config.get("extra") == "forbid"
        assert spec.payload.model_json_schema()["type"] == "object"


def test_an_event_round_trips_through_json_and_rejects_a_bad_payload() -> None:
    mother = compose_id_number("110101", dt.date(1992, 1, 2), 5, "F")
    data = p.BirthRegisteredV2(
        birth_id=uuid.uuid4(),
        medical_certificate_number="O123456789",
        child_name="小明",
        child_sex="M",
        child_birth_date=dt.date(2026, 1, 1),
        mother_id_number=mother,
        birth_order=1,
        birth_place=p.BirthPlace(division="440703", kind="hospital"),
    )
    event = Envelope[p.BirthRegisteredV2](
        id=new_event_id(),
        source="/registry/440703",
        type="birth.registered.v2",
        subject="a" * 32,
        time=T0,
        dataschema="urn:x",
        sequence=1,
        data=data,
    )
    parsed = parse_event(event.model_dump_json().encode())
    assert parsed == event and parsed.producer == "440703"
    doc = event.model_dump(mode="json")
    doc["data"]["mother_id_number"] = mother[:-1] + ("1" if mother[-1] != "1" else "2")
    with pytest.raises(ValidationError):
        parse_event(doc)
    with pytest.raises(ValueError):
        parse_event(b'{"type": "nobody.knows.v9"}')


def _move(frm: str, to: str) -> dict[str, object]:
    return {"from_division": frm, "to_division": to, "hukou_division": "320412"}


def test_a_person_who_moved_on_is_no_longer_the_old_destinations_business() -> None:
    a, b, c = "320412", "440703", "110101"
    w = after_event(
        Whereabouts(None, None),
        "person.registered.v1",
        {"hukou_division": a, "residence_division": a},
        Whereabouts(None, None),
        T0,
    )
    w = after_event(w, "migration.departed.v1", _move(a, b), Whereabouts(None, None), T0 + dt.timedelta(1))
    assert counterparts(a, "migration.departed.v1", _move(a, b), w) == {b}
    w = after_event(w, "migration.departed.v1", _move(b, c), Whereabouts(None, None), T0 + dt.timedelta(2))
    assert counterparts(c, "birth.registered.v1", {}, w) == {a}  # origin hears, B does not


def test_a_returnees_later_events_stay_at_the_origin() -> None:
    a, b = "320412", "440703"
    w = Whereabouts(a, b, T0)
    w = after_event(w, "migration.returned.v1", _move(b, a), Whereabouts(None, None), T0 + dt.timedelta(1))
    assert w.residence == a
    assert counterparts(a, "birth.registered.v1", {}, w) == set()


def test_an_older_event_does_not_undo_a_newer_move() -> None:
    w = Whereabouts("320412", "440703", T0 + dt.timedelta(5))
    w2 = after_event(
        w,
        "person.registered.v1",
        {"hukou_division": "320412", "residence_division": "320412"},
        Whereabouts(None, None),
        T0,
    )
    assert w2.residence == "440703"


def test_signed_tokens_verify_and_tampering_fails() -> None:
    key = signing.new_private_key()
    token = signing.sign({"num": "320412-2026-ABCDEFGH", "ch": 1}, key, "k1")
    assert signing.verify(token, {"k1": signing.public_bytes(key)})["ch"] == 1
    header, payload, sig = token.split(".")
    forged = signing.b64u(signing.b64u_decode(payload).replace(b'"ch":1', b'"ch":3'))
    with pytest.raises(signing.BadSignature):
        signing.verify(f"{header}.{forged}.{sig}", {"k1": signing.public_bytes(key)})
    with pytest.raises(signing.BadSignature):
        signing.verify(token, {"other": signing.public_bytes(key)})
