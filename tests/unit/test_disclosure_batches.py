"""A unit of work's disclosures as ``disclosure.batch.v1`` events (``shared.disclosures.batches``):
each registry set gets its own batch, every disclosure is an entry of exactly one, in order."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from services.registry.service_layer import disclosures as registry
from shared import disclosures
from shared.events import payloads as p
from shared.outbox import make_event

DIVISIONS = ("320412", "440703", "110101")


def _told(record_at: list[str], event_type: str = "migration.arrived.v1") -> disclosures.Disclosure | None:
    return disclosures.disclosure(
        record_at=record_at,
        discloser="exchange",
        action="notification.sent",
        recipient=f"registry-{record_at[0]}" if record_at else "registry-320412",
        recipient_division=record_at[0] if record_at else None,
        purpose=disclosures.purpose_of(event_type),
        event_type=event_type,
        event_id=uuid.uuid4(),
        notification_id=uuid.uuid4(),
    )


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a" * 32, "b" * 32, "c" * 32]),
            st.lists(st.sampled_from(DIVISIONS), max_size=3, unique=True),
        ),
        max_size=40,
    ),
    st.integers(min_value=1, max_value=7),
)
def test_every_disclosure_is_an_entry_of_one_batch_for_its_registries(
    told: list[tuple[str, list[str]]], size: int
) -> None:
    items = [(subject, _told(record_at)) for subject, record_at in told]
    original = disclosures.BATCH_ENTRIES
    disclosures.BATCH_ENTRIES = size
    try:
        out = list(disclosures.batches(items))
    finally:
        disclosures.BATCH_ENTRIES = original
    expected = {(d["disclosure_id"], subject, tuple(d["record_at"])) for subject, d in items if d is not None}
    got = [(e.disclosure_id, e.subject, tuple(b.record_at)) for b in out for e in b.entries]
    assert sorted(got) == sorted(expected)  # each once, with the registries it was for
    assert all(1 <= len(b.entries) <= size for b in out)
    assert len({b.batch_id for b in out}) == len(out)
    for record_at in {r for _, _, r in expected}:  # in the order given, within a set of registries
        order = [d["disclosure_id"] for _, d in items if d is not None and tuple(d["record_at"]) == record_at]
        assert [e for e, _, r in got if r == record_at] == order


def test_an_entry_says_what_the_single_disclosure_said_under_its_neutral_names() -> None:
    told = _told(["320412", "440703"], event_type="pregnancy.registered.v1")
    assert told is not None
    [batch] = disclosures.batches([("d" * 32, told)])
    [entry] = batch.entries
    assert batch.discloser == "exchange" and batch.record_at == ["320412", "440703"]
    single = p.DisclosureRecordedV1.model_validate(told)  # what publish() sends alone
    assert entry.model_dump(exclude={"subject"}) == single.model_dump(exclude={"record_at", "discloser"})
    assert entry.event_type == single.event_type != "pregnancy.registered.v1"  # neutral on a shared topic
    assert entry.purpose == single.purpose != "maternal_care"


def test_a_registry_records_an_entry_of_a_batch_as_it_recorded_the_single_disclosure() -> None:
    """The subject-access log shows the same entry whichever way the disclosure travelled."""
    told = _told(["320412", "440703"], event_type="pregnancy.registered.v1")
    assert told is not None
    alone_data = p.DisclosureRecordedV1.model_validate(told)  # what publish() sends alone
    single = make_event(
        event_type=disclosures.EVENT_TYPE, source="/exchange", subject="e" * 32, data=alone_data, sequence=1
    )
    [batch] = disclosures.batches([("e" * 32, told)])
    carried = make_event(
        event_type=disclosures.BATCH_TYPE,
        source="/exchange",
        subject=batch.batch_id.hex,
        data=batch,
        sequence=1,
    )
    [alone] = registry.entries(single)
    [in_batch] = registry.entries(carried)
    assert alone == in_batch
    assert alone.subject == "e" * 32 and alone.purpose == "maternal_care"  # restored at the registry
    assert alone.detail == {
        "discloser": "exchange",
        "disclosure_id": str(told["disclosure_id"]),
        **alone_data.model_dump(
            mode="json",
            include={"recipient_division", "event_type", "event_id", "notification_id"},
            exclude_none=True,
        ),
    }
