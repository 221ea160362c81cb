"""The bulk rebuild of the verification read model ends where the event-by-event handler ends.

Hypothesis draws event sequences over a few certificates and holders (issues, duplicates,
revocations before and after their issue, status-index clashes, corrections of a certificate
or of its holder, before and after the issue, a replayed event id), each event made at a time
of its own, so a certificate made before a correction of its holder's name can come after it
and one made after it before, and the corrections kept ahead of a certificate, of its own and of
its holder's name, come in another order than they were made (often at the same second); each
sequence goes through
the consumer's handler one event at a time into one database and through ``rebuild_from``
into another (real PostgreSQL), and the two read models and inboxes must be the same, and each
certificate's holder name that of the correction made last of those that concern it, whether they
came before the certificate or after it, in whatever order (``_expected_names``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.embedded import EmbeddedPostgres
from services.verification.entrypoints.consumer import consumers
from services.verification.settings import VerificationSettings
from shared.consumer import EventConsumer
from shared.events import payloads as p
from shared.events.envelope import Envelope, new_event_id
from shared.identity import compose_id_number, subject_key
from tests.rebuild_kit import both_ways, migrated_pair

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "verification" / "migrations"
ISSUER = "440703"
SECRET = b"rebuild-test"
HOLDERS = [compose_id_number("110101", dt.date(1985, 1, 1) + dt.timedelta(days=i), i, "F") for i in range(2)]
NUMBERS = [f"{ISSUER}-2026-{i:08d}" for i in range(4)]
DAY = dt.date(2026, 1, 1)


def _envelope(event_type: str, subject: str, data: Any, n: int, at: int | None = None) -> Envelope[Any]:
    """The ``n``-th event of a history, made at second ``at`` (by default ``n``: in the order it comes)."""
    return Envelope[type(data)](  # type: ignore[misc]
        id=new_event_id(),
        source=f"/registry/{ISSUER}",
        type=event_type,
        subject=subject,
        time=dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=n if at is None else at),
        dataschema=f"https://schemas.example/{event_type}",
        sequence=n + 1,
        data=data,
    )


def _issued(subject: str, number: str, n: int, name: str = "甲", at: int | None = None) -> Envelope[Any]:
    """A certificate of the first holder issued as the ``n``-th event (its status index ``n``)."""
    data = p.CertificateIssuedV1(
        certificate_number=number,
        holder_id_number=HOLDERS[0],
        holder_name=name,
        marital_status="married",
        issuer=ISSUER,
        issued_on=DAY,
        valid_until=DAY,
        key_id="k1",
        status_index=n,
        token="t",  # noqa: S106 - not a secret: the QR token text
    )
    return _envelope("certificate.issued.v1", subject, data, n, at)


@st.composite
def histories(draw: st.DrawFn) -> list[Envelope[Any]]:
    events: list[Envelope[Any]] = []
    for n in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["issued", "issued", "revoked", "cert_fix", "name_fix", "again"]))
        at = draw(st.integers(0, 6))  # made then, whatever the order it comes in
        number = draw(st.sampled_from(NUMBERS))
        holder = draw(st.sampled_from(HOLDERS))
        subject = subject_key(holder, SECRET)
        index = draw(st.integers(0, 2))
        if kind == "again" and events:
            events.append(draw(st.sampled_from(events)))  # the same event id once more
        elif kind in ("issued", "again"):
            data: Any = p.CertificateIssuedV1(
                certificate_number=number,
                holder_id_number=holder,
                holder_name=draw(st.sampled_from(["甲", "乙"])),
                marital_status=draw(st.sampled_from(["married", "unmarried"])),
                children_birth_dates=[DAY] * draw(st.integers(0, 2)),
                issuer=ISSUER,
                issued_on=DAY,
                valid_until=DAY + dt.timedelta(days=180),
                key_id="k1",
                status_index=index,
                token=f"t{n}",
            )
            events.append(_envelope("certificate.issued.v1", subject, data, n, at))
        elif kind == "revoked":
            data = p.CertificateRevokedV1(
                certificate_number=number,
                issuer=ISSUER,
                revoked_on=DAY + dt.timedelta(days=n),
                reason=f"reason {n}",
                status_index=index,
            )
            events.append(_envelope("certificate.revoked.v1", subject, data, n, at))
        else:
            cert = kind == "cert_fix"
            changes: dict[str, str | int | None] = (
                {"children_count": n, "holder_name": draw(st.sampled_from([None, f"丙{n}"]))}
                if cert
                else {"name": f"丁{n}"}
            )
            data = p.RecordCorrectedV1(
                correction_id=uuid.uuid4(),
                corrected_event_id=uuid.uuid4(),
                record_type="certificate" if cert else "person",
                record_id=number if cert else "p1",
                changes=changes,
                reason="registrar's correction",
            )
            events.append(_envelope("record.corrected.v1", subject, data, n, at))
    return events


async def _state(conn: asyncpg.Connection) -> dict[str, Any]:
    certificates = await conn.fetch(
        """SELECT number, issuer, holder_subject, holder_name, marital_status, children_count, issued_on,
                  valid_until, key_id, status_index, token, source_event_id, revoked_on, revocation_reason,
                  issued_at, holder_name_at, corrected_at IS NOT NULL AS corrected
           FROM certificates ORDER BY number"""
    )
    revocations = await conn.fetch(
        "SELECT issuer, status_index, certificate_number, revoked_on, reason FROM revocations ORDER BY 1, 2"
    )
    inbox = await conn.fetch("SELECT consumer, event_id FROM inbox ORDER BY 1, 2")
    # kept in the order they came for each certificate (``take_corrections_ahead`` applies them
    # so); the rebuild loads them certificate by certificate, so across certificates ids differ
    ahead = await conn.fetch(
        """SELECT certificate_number, corrector, changes, corrected_at FROM corrections_ahead
           ORDER BY certificate_number, id"""
    )
    names = await conn.fetch(
        "SELECT holder_subject, corrector, holder_name, corrected_at FROM name_corrections ORDER BY 1, 2"
    )
    return {
        "certificates": [dict(r) for r in certificates],
        "revocations": [dict(r) for r in revocations],
        "corrections_ahead": [dict(r) for r in ahead],
        "name_corrections": [dict(r) for r in names],
        "inbox": [tuple(r) for r in inbox],
    }


def _consumer(pool: asyncpg.Pool, dsn: str) -> EventConsumer:
    return consumers(pool, VerificationSettings(database_url=dsn))[0]


@pytest.fixture(scope="module")
def two_databases(pg: EmbeddedPostgres) -> tuple[str, str]:
    return migrated_pair(pg, "verification", MIGRATIONS)


async def _both(databases: tuple[str, str], events: list[Envelope[Any]]) -> tuple[dict[str, Any], ...]:
    return await both_ways(
        databases,
        events,
        _consumer,
        "certificates, revocations, corrections_ahead, name_corrections, inbox",
        _state,
    )


def _expected_names(events: list[Envelope[Any]]) -> list[tuple[str, str, bool]]:
    """Each certificate's holder name (and whether corrected), told from the history as a whole,
    not event by event: of the corrections that concern it, the one made last names her, whenever
    each came. Its own concern it (made at any time); her name's only if made after it. Made at
    the same time, its own goes over hers; two of its own, the last that came; two of hers, the
    first that came. With none, the name it was issued under (the first issue of the number)."""
    once: dict[uuid.UUID, Envelope[Any]] = {}  # the inbox: each event id once, where it first came
    for event in events:
        once.setdefault(event.id, event)
    issues: dict[str, Envelope[Any]] = {}
    for event in once.values():
        if isinstance(event.data, p.CertificateIssuedV1):
            issues.setdefault(event.data.certificate_number, event)
    expected = []
    for number, issue in sorted(issues.items()):
        concerning: list[tuple[dt.datetime, int, int, str | None]] = []
        for came, event in enumerate(once.values()):
            data = event.data
            if not isinstance(data, p.RecordCorrectedV1):
                continue
            if data.record_type == "certificate" and data.record_id == number:
                concerning.append((event.time, 1, came, data.changes.get("holder_name")))
            elif data.record_type == "person" and event.subject == issue.subject and event.time > issue.time:
                concerning.append((event.time, 0, -came, data.changes["name"]))
        named = [c for c in concerning if c[3] is not None]
        name = max(named)[3] if named else issue.data.holder_name
        expected.append((number, name, bool(concerning)))
    return expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=histories())
def test_bulk_rebuild_equals_the_handler_event_by_event(
    two_databases: tuple[str, str], events: list[Envelope[Any]]
) -> None:
    """The two ways agree, and on the name the corrections made last give, whatever came first."""
    one_by_one, bulk = asyncio.run(_both(two_databases, events))
    names = [(c["number"], c["holder_name"], c["corrected"]) for c in one_by_one["certificates"]]
    assert names == _expected_names(events)
    assert bulk == one_by_one


def test_a_clash_of_revocation_and_issue_orders_is_covered(two_databases: tuple[str, str]) -> None:
    """A revocation that arrives before its certificate still holds; one of another number does not."""
    subject = subject_key(HOLDERS[0], SECRET)

    revoke = p.CertificateRevokedV1(
        certificate_number=NUMBERS[0], issuer=ISSUER, revoked_on=DAY, reason="lost card", status_index=0
    )
    events = [
        _envelope("certificate.revoked.v1", subject, revoke, 9),
        _issued(subject, NUMBERS[0], 0),
        _issued(subject, NUMBERS[1], 0),
    ]
    one_by_one, bulk = asyncio.run(_both(two_databases, events))
    assert bulk == one_by_one
    assert [c["revoked_on"] for c in bulk["certificates"]] == [DAY, None]
    assert len(bulk["inbox"]) == 3


def test_a_name_correction_that_overtakes_an_older_certificate_still_holds(
    two_databases: tuple[str, str],
) -> None:
    """The issuer corrects the holder's name (``vital.correction.v1``) after it issued her a
    certificate, and before another; both certificates (``certificate.lifecycle.v1``) arrive after
    the correction. The older one carried the old name and gets the corrected one; the newer one
    was issued with the corrected name and is left as issued. The same both ways."""
    subject = subject_key(HOLDERS[0], SECRET)

    rename = p.RecordCorrectedV1(
        correction_id=uuid.uuid4(),
        corrected_event_id=uuid.uuid4(),
        record_type="person",
        record_id="p1",
        changes={"name": "丁"},
        reason="registrar's correction",
    )
    events = [
        _envelope("record.corrected.v1", subject, rename, 0, at=10),
        _issued(subject, NUMBERS[0], 1, at=5),  # issued before the correction, under the old name
        _issued(subject, NUMBERS[1], 2, name="丁", at=20),  # issued after it
    ]
    one_by_one, bulk = asyncio.run(_both(two_databases, events))
    names = [(c["number"], c["holder_name"], c["corrected"]) for c in one_by_one["certificates"]]
    assert names == [(NUMBERS[0], "丁", True), (NUMBERS[1], "丁", False)]
    assert bulk == one_by_one


def _rename(subject: str, name: str, n: int, at: int) -> Envelope[Any]:
    """The issuer's correction of the holder's name (record type person), the ``n``-th event."""
    data = p.RecordCorrectedV1(
        correction_id=uuid.uuid4(),
        corrected_event_id=uuid.uuid4(),
        record_type="person",
        record_id="p1",
        changes={"name": name},
        reason="registrar's correction",
    )
    return _envelope("record.corrected.v1", subject, data, n, at)


def _certificate_fix(subject: str, number: str, changes: dict[str, Any], n: int, at: int) -> Envelope[Any]:
    """The issuer's correction of its certificate ``number``, the ``n``-th event."""
    data = p.RecordCorrectedV1(
        correction_id=uuid.uuid4(),
        corrected_event_id=uuid.uuid4(),
        record_type="certificate",
        record_id=number,
        changes=changes,
        reason="registrar's correction",
    )
    return _envelope("record.corrected.v1", subject, data, n, at)


@pytest.mark.parametrize("name_fix_first", [True, False], ids=["name-fix-came-first", "name-fix-came-second"])
def test_corrections_kept_ahead_of_a_certificate_apply_in_the_order_they_were_made(
    two_databases: tuple[str, str], name_fix_first: bool
) -> None:
    """Both the certificate's own correction of the name (at 10: 丙, its children 2) and a later
    correction of the holder's name (at 20: 丁) come before the certificate (made at 5). The one
    made last names her, whatever its kind and whichever came first (the certificate's own used to
    win: ``corrections_ahead`` kept no time); the children stay as corrected. The same both ways."""
    subject = subject_key(HOLDERS[0], SECRET)
    own = _certificate_fix(subject, NUMBERS[0], {"holder_name": "丙", "children_count": 2}, 0, at=10)
    rename = _rename(subject, "丁", 1, at=20)
    events = [*((rename, own) if name_fix_first else (own, rename)), _issued(subject, NUMBERS[0], 2, at=5)]
    one_by_one, bulk = asyncio.run(_both(two_databases, events))
    certs = [(c["holder_name"], c["children_count"], c["corrected"]) for c in one_by_one["certificates"]]
    assert certs == [("丁", 2, True)]
    assert bulk == one_by_one


def test_a_certificate_s_own_correction_made_after_a_name_correction_names_her(
    two_databases: tuple[str, str],
) -> None:
    """The other way round: her name corrected at 10 (丁), then the certificate's own correction
    of it at 20 (丙), both before the certificate (made at 5) comes: 丙 names her. At the same
    time the certificate's own correction goes last (its own, the narrower)."""
    subject = subject_key(HOLDERS[0], SECRET)
    events = [
        _certificate_fix(subject, NUMBERS[0], {"holder_name": "丙"}, 0, at=20),
        _rename(subject, "丁", 1, at=10),
        _certificate_fix(subject, NUMBERS[1], {"holder_name": "戊"}, 2, at=10),
        _rename(subject, "己", 3, at=10),
        _issued(subject, NUMBERS[0], 4, at=5),
        _issued(subject, NUMBERS[1], 5, at=5),
    ]
    one_by_one, bulk = asyncio.run(_both(two_databases, events))
    assert [c["holder_name"] for c in one_by_one["certificates"]] == ["丙", "戊"]
    assert bulk == one_by_one


@pytest.mark.parametrize(
    "came",
    [("issued", "own", "rename"), ("issued", "rename", "own"), ("own", "issued", "rename")],
    ids=lambda came: "-".join(came),
)
def test_a_certificate_s_own_correction_of_her_name_made_last_outlasts_an_older_one_of_her_name(
    two_databases: tuple[str, str], came: tuple[str, ...]
) -> None:
    """The certificate (made at 5) is corrected to 丙 at 20; her name was corrected to 丁 at 10.
    The name correction arrives after the certificate, and after (or before) its own correction:
    丙, made last, names her whatever the order (the older name correction, applied last,
    used to overwrite it). The same both ways."""
    subject = subject_key(HOLDERS[0], SECRET)
    made = {
        "issued": _issued(subject, NUMBERS[0], 0, at=5),
        "own": _certificate_fix(subject, NUMBERS[0], {"holder_name": "丙"}, 1, at=20),
        "rename": _rename(subject, "丁", 2, at=10),
    }
    one_by_one, bulk = asyncio.run(_both(two_databases, [made[kind] for kind in came]))
    assert [(c["holder_name"], c["corrected"]) for c in one_by_one["certificates"]] == [("丙", True)]
    assert bulk == one_by_one


@pytest.mark.parametrize("came", [(15, "issued", 10), ("issued", 10, 15), ("issued", 15, 10)], ids=str)
def test_a_name_correction_made_before_a_certificate_leaves_it_as_issued_whenever_it_comes(
    two_databases: tuple[str, str], came: tuple[int | str, ...]
) -> None:
    """Her name is corrected to 丁 at 10 and to 戊 at 15; a certificate issued at 20 carries 戊 as
    issued, one issued at 5 (which comes first) the old name. Whatever order the corrections come
    in, after the newer certificate, they leave it as issued (the older correction coming last used
    to name it 丁, and either marked it corrected); the older certificate gets 戊."""
    subject = subject_key(HOLDERS[0], SECRET)
    made: dict[int | str, Envelope[Any]] = {
        10: _rename(subject, "丁", 1, at=10),
        15: _rename(subject, "戊", 2, at=15),
        "issued": _issued(subject, NUMBERS[1], 3, name="戊", at=20),
    }
    events = [_issued(subject, NUMBERS[0], 0, at=5), *(made[kind] for kind in came)]
    one_by_one, bulk = asyncio.run(_both(two_databases, events))
    names = [(c["number"], c["holder_name"], c["corrected"]) for c in one_by_one["certificates"]]
    assert names == [(NUMBERS[0], "戊", True), (NUMBERS[1], "戊", False)]
    assert bulk == one_by_one


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(draw=st.data())
def test_the_correction_made_last_names_her_whatever_came_first(
    two_databases: tuple[str, str], draw: st.DataObject
) -> None:
    """Corrections of her name, some the certificate's own and some of her (a name correction),
    each made at a second of its own, come in any order, the certificate (made at 5) anywhere
    among them: before all, between, after all. Its name is that of the one made last, of those
    that concern it (a name correction made by 5 does not: the certificate was issued after it,
    under the name the latest of those gave her, or 甲); it is corrected if any concerns it."""
    subject = subject_key(HOLDERS[0], SECRET)
    own_kinds = draw.draw(st.lists(st.booleans(), min_size=1, max_size=5), label="certificate's own")
    times = draw.draw(st.permutations(range(10)), label="made at")[: len(own_kinds)]
    came = draw.draw(st.permutations(range(len(own_kinds))), label="order they came")
    issued_after = draw.draw(st.integers(0, len(own_kinds)), label="corrections before the certificate")
    made = [(own, at, f"名{i}") for i, (own, at) in enumerate(zip(own_kinds, times, strict=True))]
    issued_as = max(((at, name) for own, at, name in made if not own and at <= 5), default=(5, "甲"))[1]
    events = [
        _certificate_fix(subject, NUMBERS[0], {"holder_name": name}, n, at)
        if own
        else _rename(subject, name, n, at)
        for n, (own, at, name) in enumerate(made[i] for i in came)
    ]
    events.insert(issued_after, _issued(subject, NUMBERS[0], len(events), name=issued_as, at=5))
    concerning = [(at, name) for own, at, name in made if own or at > 5]
    one_by_one, bulk = asyncio.run(_both(two_databases, events))
    certs = [(c["holder_name"], c["corrected"]) for c in one_by_one["certificates"]]
    assert certs == [(max(concerning, default=(5, issued_as))[1], bool(concerning))]
    assert bulk == one_by_one
