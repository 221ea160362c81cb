"""A closure or a correction reaches the registries that hold the record it ends or corrects (real PostgreSQL).

The exchange keeps who holds a marriage, a birth or a pregnancy (and a certificate, by its number:
its revocation reaches the copy left behind): the registry that recorded it and
every jurisdiction it was sent to. A pregnancy's closure reaches them wherever the mother lives by
then, the registry that registered it included, and nobody else: pregnancy data stays with the
registries that hold it (DESIGN section 8). A correction reaches them (a spouse's and a father's
registries, as the record did), under the agreements' field restrictions, and nobody else once they
are known: her residence of now, never sent the record, is given none of it; a pregnancy's
correction, like its closure, reaches its holders alone even when none is known. Registry
events, built as the registries build them, go through the routing consumer's handler
(``messagebus.in_order``) into a migrated exchange database. The first test and the marriage
correction's come from the review's reproducing tests (13fa60e).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest

from services.migrant_exchange.service_layer import messagebus, ordering
from services.migrant_exchange.settings import ExchangeSettings
from shared.db import unit_of_work
from shared.events.envelope import Envelope
from shared.events.signature import Rejected
from shared.outbox import batched
from tests.exchange.exchange_helpers import SECRET, A, B, C, migrated_exchange, new_person, route
from tests.exchange.exchange_helpers import Registries as NumberedEvents

SETTINGS = ExchangeSettings(subject_key_secret=SECRET.decode())
D = "510104"


@pytest.fixture
async def pool(pg: Any) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_exchange(pg, "held") as made:
        yield made


class Registries(NumberedEvents):
    """The shared numbering (with its moves and pregnancies), and the closures these tests send."""

    def closure(self, producer: str, mother: str, pregnancy_id: str, **ext: Any) -> Envelope[Any]:
        data = {
            "pregnancy_id": pregnancy_id,
            "mother_id_number": mother,
            "closed_on": "2025-09-01",
            "outcome": "birth",
        }
        return self.make("pregnancy.closed.v1", producer, data, mother, **ext)

    def marriage(
        self, kind: str, producer: str, husband: str, wife: str, marriage_id: str, **ext: Any
    ) -> Envelope[Any]:
        """A marriage made or dissolved at ``producer``, announced under the wife's key."""
        data: dict[str, Any] = {
            "marriage_id": marriage_id,
            "spouse_a_id_number": husband,
            "spouse_b_id_number": wife,
        }
        if kind == "registered":
            data |= {"spouse_a_name": "甲", "spouse_b_name": "乙", "marriage_date": "2024-05-20"}
            data["registered_in"] = producer
        else:
            data |= {"dissolution_date": "2025-06-01", "reason": "divorce"}
        return self.make(f"marriage.{kind}.v1", producer, data, wife, **ext)

    def correction(
        self,
        producer: str,
        who: str,
        corrected: Envelope[Any],
        record: tuple[str, str],
        changes: dict[str, Any],
        **ext: Any,
    ) -> Envelope[Any]:
        data = {
            "correction_id": str(uuid.uuid4()),
            "corrected_event_id": str(corrected.id),
            "record_type": record[0],
            "record_id": record[1],
            "changes": changes,
            "reason": "misread from the form",
        }
        return self.make("record.corrected.v1", producer, data, who, **ext)


# A birth's fields every agreement below lets D see; each test adds the one it does not withhold.
_BIRTH_SHOWN = [
    "birth_id",
    "medical_certificate_number",
    "child_name",
    "child_sex",
    "child_birth_date",
    "mother_id_number",
    "birth_order",
]


async def _births_show_d(pool: asyncpg.Pool, shown: list[str]) -> None:
    """A's agreement with D: every event type flows; of a birth, D sees ``shown`` only."""
    await pool.execute(
        "INSERT INTO agreements VALUES ($1, $2, $3, 3600, $4)",
        *sorted((A, D)),
        ["*"],
        {D: {"birth.registered.v2": shown}},
    )


async def _route(pool: asyncpg.Pool, events: list[Envelope[Any]]) -> None:
    await route(pool, SETTINGS, events)


async def _targets(pool: asyncpg.Pool, event_id: uuid.UUID) -> set[str]:
    rows = await pool.fetch("SELECT target_division FROM notifications WHERE event_id = $1", event_id)
    return {r["target_division"] for r in rows}


async def _changes(pool: asyncpg.Pool, event_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """What each addressee of a correction is sent of its changes."""
    rows = await pool.fetch(
        "SELECT target_division, payload FROM notifications WHERE event_id = $1", event_id
    )
    loaded = {r["target_division"]: r["payload"] for r in rows}
    return {t: (orjson.loads(v) if isinstance(v, str | bytes) else v)["changes"] for t, v in loaded.items()}


@pytest.mark.parametrize("second_move", ["returned_home", "moved_on"])
async def test_a_pregnancy_closure_reaches_the_registry_that_registered_it(
    pool: asyncpg.Pool, second_move: str
) -> None:
    """Mother registered at A (hukou), living at B; B registers her pregnancy (A is told). She then
    returns to A (or moves on to C) and the pregnancy ends: A closes its copy. B, which holds the
    pregnancy record it registered, must be told of the closure (DESIGN section 8: closed out when
    the pregnancy ends). C, where she lives after moving on, never held the pregnancy and is not
    told that it ended."""
    r = Registries()
    mother = new_person()
    pregnancy_id = str(uuid.uuid4())
    events = [r.person(mother, A, A, B), r.pregnancy(B, mother, pregnancy_id, origin=A, destination=B)]
    if second_move == "returned_home":
        events.append(r.move("returned", A, mother, A, B, A))
    else:
        events.append(r.move("arrived", C, mother, A, B, C))
    closure = r.closure(A, mother, pregnancy_id, origin=A)
    await _route(pool, [*events, closure])
    assert await _targets(pool, events[1].id) == {A}  # the registration went to her origin
    assert B in await _targets(pool, closure.id), "the registering registry never hears of the closure"
    assert await _targets(pool, closure.id) == {B}  # nobody that never held it, C included


async def test_a_pregnancy_closure_reaches_no_registry_that_never_held_it(pool: asyncpg.Pool) -> None:
    """Registered at A where she lives (nobody else told), closed at A after she moved to B: B,
    her residence now, never held the pregnancy and hears nothing of it. Closed at B after she moved
    on from B to C: only A, which was told of it, hears."""
    r = Registries()
    at_home, away = new_person(), new_person()
    kept_home, kept_away = str(uuid.uuid4()), str(uuid.uuid4())
    home = [
        r.person(at_home, A, A, A),
        r.pregnancy(A, at_home, kept_home, origin=A, destination=A),
        r.move("departed", A, at_home, A, A, B),
    ]
    home_closure = r.closure(A, at_home, kept_home, origin=A, destination=B)
    moved_on = [
        r.person(away, A, A, B),
        r.pregnancy(B, away, kept_away, origin=A, destination=B),
        r.move("arrived", C, away, A, B, C),
    ]
    away_closure = r.closure(B, away, kept_away, origin=A, destination=C)
    await _route(pool, [*home, home_closure, *moved_on, away_closure])
    assert await _targets(pool, home_closure.id) == set()
    assert await _targets(pool, away_closure.id) == {A}


async def test_a_marriage_correction_reaches_both_spouses_registries(pool: asyncpg.Pool) -> None:
    """A marriage registered at A between a resident of A (spouse a) and a woman whose hukou is D
    and who lives at A (spouse b): D is told of the marriage. A registrar at A then corrects the
    marriage date; the correction is announced under spouse a's key only, and must still reach D,
    which holds the marriage (told of it under spouse b's key: her person event, numbered after the
    marriage here, is not on the roster yet when spouse a's is routed)."""
    r = Registries()
    husband, wife = new_person(sex="M"), new_person()
    marriage_id = str(uuid.uuid4())
    data = {
        "marriage_id": marriage_id,
        "spouse_a_id_number": husband,
        "spouse_a_name": "甲",
        "spouse_b_id_number": wife,
        "spouse_b_name": "乙",
        "marriage_date": "2024-05-20",
        "registered_in": A,
    }
    marriage_a = r.make("marriage.registered.v1", A, data, husband, origin=A, destination=A)
    marriage_b = r.make("marriage.registered.v1", A, data, wife, origin=D, destination=A)
    correction = r.correction(
        A, husband, marriage_a, ("marriage", marriage_id), {"marriage_date": "2024-05-21"}, origin=A
    )
    await _route(
        pool,
        [r.person(husband, A, A, A, sex="M"), r.person(wife, A, D, A), marriage_a, marriage_b, correction],
    )
    assert D in await _targets(pool, marriage_b.id)  # D holds the marriage
    assert D in await _targets(pool, correction.id), "spouse b's origin never hears of the correction"


async def test_a_birth_correction_reaches_the_father_s_registries_under_their_agreements(
    pool: asyncpg.Pool,
) -> None:
    """A birth at A to a mother of A, naming a father whose hukou is D and who lives at B: D and B
    are told of the birth. A corrects the child's name and the father's identity number: both reach
    B, and D, whose agreement with A withholds a birth's father, is sent the name alone."""
    await _births_show_d(pool, [*_BIRTH_SHOWN, "birth_place"])  # no father
    r = Registries()
    mother, father, other_father = new_person(), new_person(sex="M"), new_person(sex="M")
    birth_id = str(uuid.uuid4())
    data = {
        "birth_id": birth_id,
        "medical_certificate_number": "Q123456789",
        "child_name": "李小米",
        "child_sex": "F",
        "child_birth_date": "2025-06-01",
        "mother_id_number": mother,
        "father_id_number": father,
        "birth_order": 1,
        "birth_place": {"division": A, "kind": "hospital"},
    }
    birth = r.make("birth.registered.v2", A, data, mother, origin=A, destination=A)
    correction = r.correction(
        A,
        mother,
        birth,
        ("birth", birth_id),
        {"child_name": "李小麦", "father_id_number": other_father},
        origin=A,
        destination=A,
    )
    await _route(pool, [r.person(mother, A, A, A), r.person(father, D, D, B, sex="M"), birth, correction])
    assert await _targets(pool, birth.id) == {B, D}
    assert await _changes(pool, correction.id) == {
        B: {"child_name": "李小麦", "father_id_number": other_father},
        D: {"child_name": "李小麦"},
    }


async def test_a_pregnancy_correction_stays_with_the_registries_that_hold_it(pool: asyncpg.Pool) -> None:
    """B registers the pregnancy of a woman of A living at B (A is told); she moves on to C; B
    corrects the expected delivery date. A hears of it; C, her residence now, never held the
    pregnancy and hears nothing."""
    r = Registries()
    mother = new_person()
    pregnancy_id = str(uuid.uuid4())
    registered = r.pregnancy(B, mother, pregnancy_id, origin=A, destination=B)
    correction = r.correction(
        B,
        mother,
        registered,
        ("pregnancy", pregnancy_id),
        {"expected_delivery": "2025-10-01"},
        origin=A,
        destination=C,
    )
    await _route(
        pool, [r.person(mother, A, A, B), registered, r.move("arrived", C, mother, A, B, C), correction]
    )
    assert await _targets(pool, correction.id) == {A}


async def _holders(pool: asyncpg.Pool, kind: str, record_id: str) -> set[str]:
    rows = await pool.fetch(
        "SELECT division FROM record_holders WHERE record_type = $1 AND record_id = $2",
        kind,
        uuid.UUID(record_id),
    )
    return {r["division"] for r in rows}


async def test_a_dissolution_reaches_a_registry_holding_the_marriage_where_nobody_lives_now(
    pool: asyncpg.Pool,
) -> None:
    """Married at A, the wife (hukou A) living at B: B is sent the marriage and holds it. She moves
    on to C, and A records the divorce: B's copy must be closed out too, though neither spouse
    lives there any more; C, never sent the marriage, is told nothing of its end (it could only
    answer "not in our records")."""
    r = Registries()
    husband, wife = new_person(sex="M"), new_person()
    marriage_id = str(uuid.uuid4())
    made = r.marriage("registered", A, husband, wife, marriage_id, origin=A, destination=B)
    ended = r.marriage("dissolved", A, husband, wife, marriage_id, origin=A, destination=C)
    events = [r.person(husband, A, A, A, sex="M"), r.person(wife, A, A, B), made]
    await _route(pool, [*events, r.move("arrived", C, wife, A, B, C), ended])
    assert B in await _targets(pool, made.id)
    assert await _targets(pool, ended.id) == {B}


async def test_only_a_registry_holding_a_record_ends_it(pool: asyncpg.Pool) -> None:
    """A pregnancy registered at B (A told) and a marriage registered at A (B told): C and D, which
    hold neither, say the pregnancy was closed and the marriage dissolved. Both are refused as not
    authorized, route nothing and leave the holders as they were: A's own closure afterwards still
    reaches B, and B's dissolution reaches A."""
    r = Registries()
    mother, husband = new_person(), new_person(sex="M")
    pregnancy_id, marriage_id = str(uuid.uuid4()), str(uuid.uuid4())
    await _route(
        pool,
        [
            r.person(mother, A, A, B),
            r.person(husband, A, A, B, sex="M"),
            r.pregnancy(B, mother, pregnancy_id, origin=A, destination=B),
            r.marriage("registered", A, husband, mother, marriage_id, origin=A, destination=B),
        ],
    )
    forged = [
        r.closure(C, mother, pregnancy_id, origin=A, destination=B),
        r.marriage("dissolved", D, husband, mother, marriage_id, origin=A, destination=B),
    ]
    for lie in forged:
        with pytest.raises(Rejected, match="does not hold") as refused:
            await _route(pool, [lie])
        assert refused.value.reason == "not_authorized"
        assert await _targets(pool, lie.id) == set()
    assert await _holders(pool, "pregnancy", pregnancy_id) == {A, B}
    assert await _holders(pool, "marriage", marriage_id) == {A, B}

    closure = r.closure(A, mother, pregnancy_id, origin=A, destination=B)
    dissolution = r.marriage("dissolved", B, husband, mother, marriage_id, origin=A, destination=B)
    await _route(pool, [closure, dissolution])
    assert await _targets(pool, closure.id) == {B}
    assert await _targets(pool, dissolution.id) == {A}


async def _dead_letters(pool: asyncpg.Pool, event: Envelope[Any]) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT consumer, topic, reason FROM dead_letters WHERE convert_from(value, 'UTF8') LIKE $1",
        f'%"id":"{event.id}"%',
    )


async def test_an_end_refused_in_its_turn_is_dead_lettered_alone(pool: asyncpg.Pool) -> None:
    """C says the mother arrived at C (its event 1) and that her pregnancy, held by A and B, was
    closed (event 2); event 2 arrives first and waits. When event 1 arrives, the closure takes
    its turn and is refused (C holds no pregnancy): it alone is dead-lettered, while the arrival
    it waited for is routed and the ordering moves past both. Before, the refusal failed the
    arrival's unit of work, and the consumer would have dead-lettered the arrival in its place."""
    r = Registries()
    mother = new_person()
    pregnancy_id = str(uuid.uuid4())
    await _route(
        pool, [r.person(mother, A, A, B), r.pregnancy(B, mother, pregnancy_id, origin=A, destination=B)]
    )
    arrival = r.move("arrived", C, mother, A, B, C)
    closure = r.closure(C, mother, pregnancy_id, origin=A, destination=C)
    await _route(pool, [closure, arrival])
    assert await _targets(pool, arrival.id) == {A, B}
    assert await _targets(pool, closure.id) == set()
    [letter] = await _dead_letters(pool, closure)
    assert letter["consumer"] == "migrant-exchange-events" and letter["topic"] == "vital.pregnancy.v1"
    assert letter["reason"].startswith("rejected: not_authorized") and "does not hold" in letter["reason"]
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE topic = 'vital.pregnancy.v1.dlq' AND convert_from(value, 'UTF8') LIKE $1",
            f'%"id":"{closure.id}"%',
        )
        == 1
    )
    assert await _holders(pool, "pregnancy", pregnancy_id) == {A, B}
    progress = "SELECT last_sequence FROM sequence_progress WHERE subject = $1 AND source = $2"
    assert await pool.fetchval(progress, arrival.subject, f"/registry/{C}") == 2


async def test_a_sweep_releases_every_expired_gap_when_one_waiting_event_is_refused(
    pool: asyncpg.Pool,
) -> None:
    """Two people's events wait behind gaps that never fill: one is a closure C may not say, the
    other an ordinary move. The sweep releases both gaps: the closure is dead-lettered, the move
    routed. Before, the refusal rolled the whole sweep back, at every sweep, and no gap anywhere
    was released again."""
    r = Registries()
    mother, mover = new_person(), new_person()
    pregnancy_id = str(uuid.uuid4())
    await _route(
        pool,
        [
            r.person(mother, A, A, B),
            r.pregnancy(B, mother, pregnancy_id, origin=A, destination=B),
            r.person(mover, A, A, B),
        ],
    )
    r.move("arrived", C, mother, A, B, C)  # C's event 1 about each of them never comes
    r.move("arrived", C, mover, A, B, C)
    closure = r.closure(C, mother, pregnancy_id, origin=A, destination=C)
    move = r.move("departed", C, mover, A, C, D)
    expired = ExchangeSettings(subject_key_secret=SECRET.decode(), sequence_gap_seconds=-1)
    await route(pool, expired, [closure, move])
    assert await _targets(pool, move.id) == set()  # both wait

    async with unit_of_work(pool) as conn, batched(conn):
        released = await ordering.release_expired_gaps(
            conn, messagebus.applier(SETTINGS), messagebus.refuser(SETTINGS)
        )
    assert released == 2
    assert A in await _targets(pool, move.id)
    assert await _targets(pool, closure.id) == set()
    [letter] = await _dead_letters(pool, closure)
    assert "does not hold" in letter["reason"]
    gaps = await pool.fetchval(
        "SELECT count(*) FROM discrepancies WHERE kind = 'sequence_gap' AND state = 'open'"
    )
    assert gaps == 2


@pytest.mark.parametrize("way", ["one by one", "in a batch"])
async def test_a_registry_cannot_plant_itself_among_the_holders_of_a_record_made_elsewhere(
    pool: asyncpg.Pool, way: str
) -> None:
    """A marriage registered at A (B told) is held by A and B. C announces a marriage of its own
    under the same key, to be taken for a holder and end A's marriage afterwards: refused as not
    authorized, by the batch way too, and the holders stay A and B (so a dissolution by C is still
    refused). A's second announcement under the same key goes through: A holds it."""
    r = Registries()
    husband, wife = new_person(sex="M"), new_person()
    marriage_id = str(uuid.uuid4())
    made = r.marriage("registered", A, husband, wife, marriage_id, origin=A, destination=B)
    await _route(pool, [r.person(husband, A, A, A, sex="M"), r.person(wife, A, A, B), made])
    assert await _holders(pool, "marriage", marriage_id) == {A, B}

    planted = r.marriage("registered", C, husband, wife, marriage_id, origin=A, destination=C)
    with pytest.raises(Rejected, match="does not hold") as refused:
        if way == "one by one":
            await _route(pool, [planted])
        else:
            async with unit_of_work(pool) as conn, batched(conn):
                await messagebus.in_batches(SETTINGS)(conn, [planted])
    assert refused.value.reason == "not_authorized"
    assert await _targets(pool, planted.id) == set()
    assert await _holders(pool, "marriage", marriage_id) == {A, B}

    again = r.marriage("registered", A, husband, wife, marriage_id, origin=A, destination=B)
    await _route(pool, [again])
    assert await _holders(pool, "marriage", marriage_id) == {A, B}


async def test_a_batch_refuses_a_second_maker_of_a_record_made_earlier_in_it(pool: asyncpg.Pool) -> None:
    """A's marriage (B told) and C's announcement of a marriage under the same key arrive in one
    fetch. Event by event, A's makes the record (held by A and B) and C's is refused. The batch
    way read the holders once, before either: both found the key new, and C became a holder of
    A's marriage, free to end it afterwards. It must refuse the batch (the consumer then takes
    it event by event) and write nothing."""
    r = Registries()
    husband, wife = new_person(sex="M"), new_person()
    marriage_id = str(uuid.uuid4())
    await _route(pool, [r.person(husband, A, A, A, sex="M"), r.person(wife, A, A, B)])
    made = r.marriage("registered", A, husband, wife, marriage_id, origin=A, destination=B)
    planted = r.marriage("registered", C, husband, wife, marriage_id, origin=A, destination=C)
    with pytest.raises(Rejected, match="does not hold"):
        async with unit_of_work(pool) as conn, batched(conn):
            await messagebus.in_batches(SETTINGS)(conn, [made, planted])
    assert await _holders(pool, "marriage", marriage_id) == set()

    await _route(pool, [made])  # as the consumer goes on: event by event
    with pytest.raises(Rejected, match="does not hold"):
        await _route(pool, [planted])
    assert await _holders(pool, "marriage", marriage_id) == {A, B}


async def test_a_birth_correction_keeps_the_place_of_birth_an_agreement_withholds(pool: asyncpg.Pool) -> None:
    """A's agreement with D withholds a birth's place of birth from D (``birth_place``, where v2
    keeps v1's ``birth_division``). A birth at A to a mother whose hukou is D reaches D without it.
    A then corrects the child's name and the place of birth, naming it ``birth_division`` as the
    registries' corrections and repairs do: D must be sent the name alone. Before, the field was
    compared under v1's name with v2's withheld fields, and the place of birth went to D."""
    await _births_show_d(pool, [*_BIRTH_SHOWN, "father_id_number"])  # no place of birth
    r = Registries()
    mother = new_person()
    birth_id = str(uuid.uuid4())
    data = {
        "birth_id": birth_id,
        "medical_certificate_number": "Q123456789",
        "child_name": "李小米",
        "child_sex": "F",
        "child_birth_date": "2025-06-01",
        "mother_id_number": mother,
        "birth_order": 1,
        "birth_place": {"division": A, "kind": "hospital"},
    }
    birth = r.make("birth.registered.v2", A, data, mother, origin=D, destination=A)
    correction = r.correction(
        A, mother, birth, ("birth", birth_id), {"child_name": "李小麦", "birth_division": B}, origin=D
    )
    await _route(pool, [r.person(mother, A, D, A), birth, correction])
    assert await _targets(pool, birth.id) == {D}
    assert await _changes(pool, correction.id) == {D: {"child_name": "李小麦"}}


async def test_a_parked_event_that_cannot_be_stored_is_dead_lettered_alone(pool: asyncpg.Pool) -> None:
    """C says the person arrived at C (its event 1) and left C for D (event 2), the departure
    naming her with a NUL character, which a signed, well-formed event may carry but PostgreSQL
    cannot store in a notification. Event 2 arrives first and waits. When event 1 arrives, the
    departure fails in its turn: it alone is dead-lettered, as the consumer would dead-letter it
    on arrival, while the arrival it waited for is routed and the ordering moves past both.
    Before, the failure (not a refusal) failed the arrival's unit of work: the consumer would
    have dead-lettered the arrival in its place, and a sweep reaching the departure would have
    rolled back, every gap with it, at every sweep."""
    r = Registries()
    who = new_person()
    await _route(pool, [r.person(who, A, A, B)])
    arrival = r.move("arrived", C, who, A, B, C)
    departure = r.move("departed", C, who, A, C, D)
    data = {**departure.data.model_dump(mode="json"), "name": "测\x00试"}
    departure = departure.model_copy(update={"data": type(departure.data).model_validate(data)})
    await _route(pool, [departure, arrival])
    assert await _targets(pool, arrival.id) == {A, B}
    assert await _targets(pool, departure.id) == set()
    [letter] = await _dead_letters(pool, departure)
    assert letter["consumer"] == "migrant-exchange-events" and letter["topic"] == "vital.migration.v1"
    assert not letter["reason"].startswith("rejected")
    progress = "SELECT last_sequence FROM sequence_progress WHERE subject = $1 AND source = $2"
    assert await pool.fetchval(progress, arrival.subject, f"/registry/{C}") == 2


def _certificate(r: Registries, kind: str, holder: str, number: str, **ext: Any) -> Envelope[Any]:
    """A's certificate to ``holder``: issued or revoked."""
    data: dict[str, Any] = {"certificate_number": number, "issuer": A, "status_index": 7}
    if kind == "issued":
        data |= {
            "holder_id_number": holder,
            "holder_name": "乙",
            "marital_status": "married",
            "issued_on": "2025-03-01",
            "valid_until": "2026-03-01",
            "key_id": "k1",
            "token": "x.y.z",
        }
    else:
        data |= {"revoked_on": "2025-09-01", "reason": "replaced"}
    return r.make(f"certificate.{kind}.v1", A, data, holder, **ext)


@pytest.mark.parametrize("way", ["one by one", "in a batch"])
async def test_a_certificate_s_revocation_reaches_the_copy_left_behind(pool: asyncpg.Pool, way: str) -> None:
    """A's certificate to a woman living at B reaches B, which keeps a copy: the exchange keeps
    its holders by number (A, B), the batch way as the event-by-event way. Once she moved on to
    C, A's revocation reaches B (the copy) and not C, her residence now but never sent it."""
    r = Registries()
    her = new_person()
    number = f"{A}-2025-{uuid.uuid4().hex[:8].upper()}"
    await _route(pool, [r.person(her, A, A, B)])
    issued = _certificate(r, "issued", her, number, origin=A, destination=B)
    if way == "one by one":
        await _route(pool, [issued])
    else:
        async with unit_of_work(pool) as conn, batched(conn):
            await messagebus.in_batches(SETTINGS)(conn, [issued])
    assert await _targets(pool, issued.id) == {B}
    held = await pool.fetch("SELECT division FROM certificate_holders WHERE number = $1", number)
    assert {h["division"] for h in held} == {A, B}

    await _route(pool, [r.move("departed", B, her, A, B, C), r.move("arrived", C, her, A, B, C)])
    revoked = _certificate(r, "revoked", her, number, origin=A, destination=C)
    await _route(pool, [revoked])
    assert await _targets(pool, revoked.id) == {B}


def _birth(r: Registries, producer: str, mother: str, birth_id: str, **ext: Any) -> Envelope[Any]:
    data = {"birth_id": birth_id, "medical_certificate_number": "Q123456789", "child_name": "李小米",
            "child_sex": "F", "child_birth_date": "2025-06-01", "mother_id_number": mother, "birth_order": 1,
            "birth_place": {"division": producer, "kind": "hospital"}}  # fmt: skip
    return r.make("birth.registered.v2", producer, data, mother, **ext)


@pytest.mark.parametrize("way", ["one by one", "in a batch"])
async def test_a_correction_reaches_the_record_s_holders_alone_once_they_are_known(
    pool: asyncpg.Pool, way: str
) -> None:
    """Hukou A, living at B: B registers a birth (A told) and A issues a certificate (B told). She
    moves on to C. B's correction of the birth reaches A alone and A's of the certificate B alone:
    C, her residence now, never held either and is given none of their data (before, it was sent
    both and answered "not in our records"). A birth whose holders the exchange does not know
    (routed before it kept them) and her person's correction reach her places of the moment, as
    before. The batch way takes corrections event by event, to the same addressees."""
    r = Registries()
    her = new_person()
    birth_id, unknown_birth = str(uuid.uuid4()), str(uuid.uuid4())
    number = f"{A}-2025-{uuid.uuid4().hex[:8].upper()}"
    born = _birth(r, B, her, birth_id, origin=A, destination=B)
    issued = _certificate(r, "issued", her, number, origin=A, destination=B)
    await _route(pool, [r.person(her, A, A, B), born, issued, r.move("arrived", C, her, A, B, C)])
    assert (await _targets(pool, born.id), await _targets(pool, issued.id)) == ({A}, {B})

    never_held = _birth(Registries(), B, her, unknown_birth)  # never routed: no holders known
    fixes = [
        r.correction(B, her, born, ("birth", birth_id), {"child_name": "李小麦"}, origin=A, destination=C),
        r.correction(A, her, issued, ("certificate", number), {"holder_name": "丙"}, origin=A, destination=C),
        r.correction(B, her, never_held, ("birth", unknown_birth), {"child_name": "李小麦"}, origin=A),
        r.correction(A, her, born, ("person", her), {"name": "李美"}, origin=A, destination=C),
    ]
    if way == "one by one":
        await _route(pool, fixes)
    else:
        async with unit_of_work(pool) as conn, batched(conn):
            await messagebus.in_batches(SETTINGS)(conn, fixes)
    assert [await _targets(pool, f.id) for f in fixes] == [{A}, {B}, {A, C}, {C}]
