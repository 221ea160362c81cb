"""Reconciliation compares a record only between registries that both hold it (three registries on
the real broker, over HTTP).

A pregnancy: her hukou is A and she lives at B; B registers her pregnancy and A is sent it. She then
moves to C, which is never sent the pregnancy registered before she came (DESIGN section 8: her two
registries of the time; ``domain/access.py`` ``held_by``). Reconciling A and C, which now share
her, must not count at A a pregnancy C may never hold: that would open a "missing at C" case no
repair may close (the record's owner, B, is not of the pair, and the rule forbids sending it
there). A pregnancy both sides do hold is still compared: a copy lost at A is found missing there.

Moves, births and certificates likewise: after A -> B -> C, C was told of the move that brought
it her (B -> C) and of nothing before it, nor of a certificate A issued while she lived at B, nor
of the birth and the certificate B registered then (the routing,
``services/migrant_exchange/domain/routing.py`` ``counterparts``). A move or a
certificate C was sent and lost is still found missing there.

Once a run has set those records aside, the next finds the pair equal at the digest level: it
does not drill into her bucket again for records no case may be opened about.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from devstack.stack import Stack
from services.migrant_exchange.adapters.registries import RegistryClient
from services.migrant_exchange.service_layer import reconciliation
from services.migrant_exchange.settings import ExchangeSettings
from shared.db import create_pool
from shared.identity import subject_key
from tests.exchange.exchange_helpers import (
    A,
    B,
    C,
    applied_at,
    new_person,
    ok,
    pregnant_at_b,
    reconciliation_settings,
    registry_api,
)
from tests.helpers import Api, medical_certificate, query, wait_until

pytestmark = pytest.mark.e2e


def _cases_about(stack: Stack, run: dict[str, Any], mother: str) -> list[dict[str, Any]]:
    """The open cases of the run's pair about her (as the exchange keeps them), gaps aside."""
    rows = query(
        stack.service("migrant_exchange").dsn,
        """SELECT kind, record_kind, record_key, missing_at, detail FROM discrepancies
           WHERE division_a = $1 AND division_b = $2 AND subject = $3 AND state = 'open'
             AND kind <> 'sequence_gap' ORDER BY record_kind""",
        run["division_a"],
        run["division_b"],
        subject_key(mother, stack.subject_secret.encode()),
    )
    return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]


def _reconcile(stack: Stack, x: str, y: str) -> dict[str, Any]:
    operator = Api(stack, "migrant_exchange", "operator")
    operator.http.timeout = 60
    r = operator.post("/v1/reconciliations", {"division_a": x, "division_b": y})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_her_new_residence_is_not_found_missing_a_pregnancy_registered_before_she_came(
    xstack: Stack,
) -> None:
    mother, pregnancy_id = pregnant_at_b(xstack)
    arrival = {"kind": "arrived", "id_number": mother, "from_division": B, "to_division": C,
               "migration_date": "2026-04-01", "name": "林小兰", "hukou_division": A}  # fmt: skip
    moved = ok(registry_api(xstack, C).post("/v1/migrations", arrival))
    wait_until(lambda: applied_at(xstack, moved["event_id"]) == {A, B}, timeout=15)
    dsn = {code: xstack.service(f"registry-{code}").dsn for code in (A, C)}
    held = "SELECT 1 FROM pregnancies WHERE id = $1::uuid"
    assert query(dsn[A], held, pregnancy_id) and not query(dsn[C], held, pregnancy_id)  # as the rule says

    run = _reconcile(xstack, A, C)
    assert _cases_about(xstack, run, mother) == []  # A and C agree on everything they share of her


def test_a_copy_lost_at_her_origin_is_still_found_missing_there(xstack: Stack) -> None:
    mother, pregnancy_id = pregnant_at_b(xstack)
    dsn_a = xstack.service(f"registry-{A}").dsn
    assert query(dsn_a, "DELETE FROM pregnancies WHERE id = $1::uuid RETURNING 1", pregnancy_id)

    run = _reconcile(xstack, A, B)
    found = [(c["kind"], c["record_kind"], c["record_key"], c["missing_at"], c["detail"]["owner"])
             for c in _cases_about(xstack, run, mother)]  # fmt: skip
    assert found == [("missing", "pregnancy", pregnancy_id, A, B)]


def _move(stack: Stack, kind: str, at: str, who: str, frm: str, to: str, day: str) -> dict[str, Any]:
    body = {"kind": kind, "id_number": who, "from_division": frm, "to_division": to, "migration_date": day}
    if kind != "departed":
        body |= {"name": "李梅", "hukou_division": A}
    moved = ok(registry_api(stack, at).post("/v1/migrations", body))
    wait_until(lambda: applied_at(stack, moved["event_id"]) == {A, frm, to} - {at}, timeout=15)
    return moved


def _certificate(stack: Stack, her: str, sent_to: str) -> str:
    """A certificate A issues her, once ``sent_to`` (her residence of the moment) applied it: its number."""
    cert = ok(registry_api(stack, A).post("/v1/certificates", {"holder_id_number": her}))
    wait_until(lambda: applied_at(stack, cert["event_id"]) == {sent_to}, timeout=15)
    return str(cert["certificate_number"])


def _moved_on_to_c(stack: Stack) -> tuple[str, str]:
    """A woman of A who moved to B, was issued a certificate by A there (sent to B alone), gave
    birth and was issued a certificate at B (both sent to A alone), then moved on to C: her
    identity number and the number of A's certificate."""
    her = new_person()
    born = f"{her[6:10]}-{her[10:12]}-{her[12:14]}"
    person = {"id_number": her, "name": "李梅", "sex": "F", "birth_date": born,
              "hukou_division": A, "residence_division": A}  # fmt: skip
    ok(registry_api(stack, A).post("/v1/persons", person))
    _move(stack, "departed", A, her, A, B, "2024-03-01")
    _move(stack, "arrived", B, her, A, B, "2024-03-02")
    number = _certificate(stack, her, B)
    birth = {"medical_certificate_number": medical_certificate(), "child_name": "李小米", "child_sex": "F",
             "child_birth_date": "2024-06-15", "mother_id_number": her}  # fmt: skip
    born_at_b = ok(registry_api(stack, B).post("/v1/births", birth))  # sent to A alone
    issued_at_b = ok(registry_api(stack, B).post("/v1/certificates", {"holder_id_number": her}))  # likewise
    for made in (born_at_b, issued_at_b):
        wait_until(lambda made=made: applied_at(stack, made["event_id"]) == {A}, timeout=15)
    _move(stack, "departed", B, her, B, C, "2025-05-01")
    _move(stack, "arrived", C, her, B, C, "2025-05-02")
    return her, number


def test_her_new_residence_is_not_found_missing_what_was_never_sent_there(xstack: Stack) -> None:
    her, number = _moved_on_to_c(xstack)
    dsn = {code: xstack.service(f"registry-{code}").dsn for code in (A, C)}
    moves = "SELECT from_division, to_division FROM migrations WHERE jurisdiction = $1 AND id_number = $2"
    assert len(query(dsn[A], moves, A, her)) == 4  # her hukou holds every move of hers
    assert {(m["from_division"], m["to_division"]) for m in query(dsn[C], moves, C, her)} == {(B, C)}
    copy = "SELECT 1 FROM counterpart_certificates WHERE jurisdiction = $1 AND number = $2"
    assert not query(dsn[C], copy, C, number)  # as the routing has it: sent to B, where she lived

    run = _reconcile(xstack, A, C)
    assert _cases_about(xstack, run, her) == []  # A and C agree on everything C was given of her


def test_a_move_or_certificate_copy_lost_at_her_new_residence_is_still_found_missing(
    xstack: Stack,
) -> None:
    her, _ = _moved_on_to_c(xstack)
    number = _certificate(xstack, her, C)  # issued while she lives at C: C keeps a copy
    dsn_c = xstack.service(f"registry-{C}").dsn
    lost_move = query(
        dsn_c,
        """DELETE FROM migrations WHERE jurisdiction = $1 AND id_number = $2 AND kind = 'departed'
           RETURNING id::text""",
        C,
        her,
    )
    lost_copy = "DELETE FROM counterpart_certificates WHERE jurisdiction = $1 AND number = $2 RETURNING 1"
    assert len(lost_move) == 1 and query(dsn_c, lost_copy, C, number)

    run = _reconcile(xstack, A, C)
    found = [(c["kind"], c["record_kind"], c["record_key"], c["missing_at"], c["detail"]["owner"])
             for c in _cases_about(xstack, run, her)]  # fmt: skip
    assert sorted(found) == sorted(
        [("missing", "certificate", number, C, A), ("missing", "migration", lost_move[0]["id"], C, B)]
    )


BUCKETS = 65536  # her bucket shared with no other subject's open case of the pair, but by a 1-in-10^4 chance


class _NotingDrills(RegistryClient):
    """The exchange's own registry client, over HTTP to the real registries, noting the buckets a
    run drills into."""

    def __init__(self, settings: ExchangeSettings) -> None:
        super().__init__(settings)
        self.drilled: set[int] = set()

    async def records(
        self, jurisdiction: str, counterpart: str, buckets: int, selected: list[int]
    ) -> list[dict[str, Any]]:
        self.drilled |= set(selected)
        return await super().records(jurisdiction, counterpart, buckets, selected)


def _reconcile_noting_drills(stack: Stack, x: str, y: str) -> tuple[dict[str, Any], set[int]]:
    """A run of the pair as the exchange makes it (its database, the registries over HTTP), and
    the buckets it drilled into."""
    exchange_db = stack.service("migrant_exchange").dsn
    settings = reconciliation_settings(
        stack, reconciliation_buckets=BUCKETS, reconciliation_timeout_seconds=60
    )

    async def run() -> tuple[dict[str, Any], set[int]]:
        pool = await create_pool(exchange_db, min_size=1, max_size=3)
        registries = _NotingDrills(settings)
        try:
            done = await reconciliation.reconcile(
                pool, settings, registries, reconciliation.Reconcile(x, y, "request")
            )
            return done, registries.drilled
        finally:
            await registries.close()
            await pool.close()

    return asyncio.run(run())


def _bucket(stack: Stack, her: str) -> int:
    return int(subject_key(her, stack.subject_secret.encode())[:8], 16) % BUCKETS


def test_a_settled_pair_is_not_drilled_into_again_for_what_it_was_never_sent(xstack: Stack) -> None:
    her, _ = _moved_on_to_c(xstack)
    first, drilled = _reconcile_noting_drills(xstack, A, C)
    assert _bucket(xstack, her) in drilled  # A holds what C was never sent: set aside on drill-down
    assert _cases_about(xstack, first, her) == []

    second, drilled = _reconcile_noting_drills(xstack, C, A)
    assert _bucket(xstack, her) not in drilled  # the digests agree on everything the pair shares of her
    assert _cases_about(xstack, second, her) == []


def test_a_divergence_of_a_settled_subject_is_still_found(xstack: Stack) -> None:
    her, _ = _moved_on_to_c(xstack)
    for _ in range(2):
        _reconcile_noting_drills(xstack, A, C)  # settled: what C was never sent is set aside
    dsn_c = xstack.service(f"registry-{C}").dsn
    lost_move = query(
        dsn_c,
        """DELETE FROM migrations WHERE jurisdiction = $1 AND id_number = $2 AND kind = 'arrived'
           RETURNING id::text""",
        C,
        her,
    )
    assert len(lost_move) == 1

    run, drilled = _reconcile_noting_drills(xstack, A, C)
    assert _bucket(xstack, her) in drilled
    found = [(c["kind"], c["record_kind"], c["record_key"], c["missing_at"])
             for c in _cases_about(xstack, run, her)]  # fmt: skip
    assert found == [("missing", "migration", lost_move[0]["id"], C)]
