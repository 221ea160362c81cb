"""A record's holders when it went nowhere, and a registry's own end of a counterpart's record
through ``exchangectl replay counterpart`` (real registries, exchange and broker)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from devstack.stack import Stack
from tests.exchange.exchange_helpers import A, B, new_person, ok, registry_api
from tests.helpers import medical_certificate, query, wait_until

pytestmark = pytest.mark.e2e


def _dsn(stack: Stack, code: str) -> str:
    return stack.service(f"registry-{code}").dsn


def _notes(stack: Stack, event_id: str) -> list[tuple[str, str]]:
    rows = query(
        stack.service("migrant_exchange").dsn,
        "SELECT target_division, state FROM notifications WHERE event_id = $1 ORDER BY target_division",
        event_id,
    )
    return [(r["target_division"], r["state"]) for r in rows]


def _applied(stack: Stack, event_id: str, targets: list[str]) -> bool:
    return _notes(stack, event_id) == [(t, "applied") for t in targets]


def _person(stack: Stack, hukou: str, residence: str, sex: str = "F") -> tuple[str, str]:
    """Registered at A: her identity number and the registration's event id."""
    who = new_person(sex=sex)
    born = f"{who[6:10]}-{who[10:12]}-{who[12:14]}"
    body = {"id_number": who, "name": "周敏", "sex": sex, "birth_date": born,
            "hukou_division": hukou, "residence_division": residence}  # fmt: skip
    made = ok(registry_api(stack, A).post("/v1/persons", body))
    if residence != A:
        wait_until(lambda: _applied(stack, made["event_id"], [residence]), timeout=15)
    return who, str(made["event_id"])


def _moves_to_b(stack: Stack, her: str) -> None:
    for at, kind in ((A, "departed"), (B, "arrived")):
        body = {"kind": kind, "id_number": her, "from_division": A, "to_division": B,
                "migration_date": "2025-04-01"}  # fmt: skip
        if kind == "arrived":
            body |= {"name": "周敏", "hukou_division": A}
        moved = ok(registry_api(stack, at).post("/v1/migrations", body))
        wait_until(lambda m=moved, t=(B if at == A else A): _applied(stack, m["event_id"], [t]), timeout=15)


def test_a_record_sent_to_nobody_is_held_by_its_registry_alone(xstack: Stack) -> None:
    """She lived at her hukou A alone when A registered her child's birth and issued her a
    certificate: neither went anywhere. After she moved to B, A's correction of the birth and its
    revocation of the certificate reach nobody: B never held them, and is given neither the
    corrected birth nor the certificate's number (it could only answer "not in our records"). Her
    person's correction still reaches B, which holds her."""
    her, registered = _person(xstack, A, A)
    born = ok(registry_api(xstack, A).post("/v1/births", {
        "medical_certificate_number": medical_certificate(), "child_name": "周小雨", "child_sex": "F",
        "child_birth_date": "2025-01-15", "mother_id_number": her}))  # fmt: skip
    cert = ok(registry_api(xstack, A).post("/v1/certificates", {"holder_id_number": her}))
    _moves_to_b(xstack, her)

    body = {"corrected_event_id": str(born["event_id"]), "record_type": "birth",
            "record_id": str(born["birth_id"]), "changes": {"child_name": "周小雪"},
            "reason": "misread from the form"}  # fmt: skip
    fixed = ok(registry_api(xstack, A).post("/v1/corrections", body))
    revoked = ok(
        registry_api(xstack, A).post(
            f"/v1/certificates/{cert['certificate_number']}/revocation", {"reason": "replaced"}
        )
    )
    body = {"corrected_event_id": registered, "record_type": "person", "record_id": her,
            "changes": {"name": "周慧"}, "reason": "misread from the form"}  # fmt: skip
    renamed = ok(registry_api(xstack, A).post("/v1/corrections", body))
    # A's events about her are routed in their order: once the last is, the two before it are
    wait_until(lambda: _applied(xstack, renamed["event_id"], [B]), timeout=15)

    assert _notes(xstack, str(fixed["event_id"])) == []
    assert _notes(xstack, str(revoked["event_id"])) == []
    kept = "SELECT child_name FROM births WHERE jurisdiction = $1 AND id = $2::uuid"
    assert query(_dsn(xstack, A), kept, A, str(born["birth_id"]))[0]["child_name"] == "周小雪"


def test_replay_counterpart_keeps_the_end_a_registry_gave_a_counterpart_s_record(xstack: Stack) -> None:
    """A marriage and a pregnancy A registered, both held at B too (the spouses and the mother
    live there). B, which holds them, records their end: the divorce, the pregnancy closed. The
    exchange sends A those ends, and no notification ever sends them to B. ``exchangectl replay
    counterpart`` at B puts A's records back as A's notifications say, and keeps B's own ends of
    them: B does not hold her married again, nor her pregnancy open."""
    wife, _ = _person(xstack, A, B)
    husband, _ = _person(xstack, A, B, sex="M")
    married = ok(registry_api(xstack, A).post("/v1/marriages", {
        "spouse_a_id_number": husband, "spouse_b_id_number": wife, "marriage_date": "2024-05-20"}))  # fmt: skip
    wait_until(lambda: _applied(xstack, married["event_id"], [B]), timeout=15)
    expecting = ok(
        registry_api(xstack, A).post(
            "/v1/pregnancies", {"mother_id_number": wife, "registered_on": "2025-03-01"}
        )
    )
    wait_until(lambda: _applied(xstack, expecting["event_id"], [B]), timeout=15)

    marriage, pregnancy = str(married["marriage_id"]), str(expecting["pregnancy_id"])
    divorced = ok(registry_api(xstack, B).post(
        f"/v1/marriages/{marriage}/dissolution", {"dissolution_date": "2025-06-30", "reason": "divorce"}))  # fmt: skip
    closed = ok(registry_api(xstack, B).post(
        f"/v1/pregnancies/{pregnancy}/closure", {"outcome": "ended", "closed_on": "2025-07-01"}))  # fmt: skip
    wait_until(lambda: _applied(xstack, str(divorced["event_id"]), [A]), timeout=15)
    wait_until(lambda: _applied(xstack, str(closed["event_id"]), [A]), timeout=15)

    ends = """SELECT 'marriage' AS kind, dissolution_date::text AS ended, source_division FROM marriages
               WHERE jurisdiction = $1 AND id = $2::uuid
              UNION ALL SELECT 'pregnancy', closed_on::text, source_division FROM pregnancies
               WHERE jurisdiction = $1 AND id = $3::uuid ORDER BY kind"""
    held = [dict(r) for r in query(_dsn(xstack, B), ends, B, marriage, pregnancy)]
    assert held == [
        {"kind": "marriage", "ended": "2025-06-30", "source_division": A},
        {"kind": "pregnancy", "ended": "2025-07-01", "source_division": A},
    ]
    theirs = [dict(r) for r in query(_dsn(xstack, A), ends, A, marriage, pregnancy)]
    assert [r["ended"] for r in theirs] == ["2025-06-30", "2025-07-01"]  # as A was told

    result = CliRunner().invoke(
        app, ["replay", "counterpart", "-j", B, "--stack", str(xstack.run_dir / "stack.json"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cleared"]["marriages"] >= 0
    assert [dict(r) for r in query(_dsn(xstack, B), ends, B, marriage, pregnancy)] == held
