"""``exchangectl`` against the whole system: import, replay, keys, audit, dead letters, reconcile.

One stack of the module's own (database prefix ``cli_``), because replay truncates projections
and the audit test alters a row: nothing here may disturb another module's stack.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from devstack.roster_fixture import generate
from devstack.stack import DESTINATION, ORIGIN, Stack
from tests.helpers import Api, migrant, person_id, query, signed_bytes, tamper, wait_until
from tests.stacks_ahead import StackSpec, stack_fixture

pytestmark = pytest.mark.e2e
runner = CliRunner()
# The acceptance samples 1,000 certificates (CLI_TEST_CERTIFICATES=1000); the suite keeps to seconds.
CERTIFICATES = int(os.environ.get("CLI_TEST_CERTIFICATES", "200"))
ROWS = max(1000, CERTIFICATES + 100)
GOOD = ROWS - 10


cli_stack = stack_fixture("cli_stack", StackSpec("cli", db_prefix="cli_"))


def ctl(stack: Stack, *args: str, code: int = 0) -> Any:
    """Run exchangectl in-process against the stack; the parsed --json output."""
    result = runner.invoke(app, [*args, "--stack", str(stack.run_dir / "stack.json"), "--json"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else result.output


def dsn(stack: Stack, service: str) -> str:
    return stack.service(service).dsn


@pytest.fixture(scope="module")
def imported(cli_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """ROWS people (10 % living in the destination, 10 bad rows) imported into the origin's registry, published."""
    roster = tmp_path_factory.mktemp("roster") / "roster.csv"
    generate(roster, ROWS, 10, migrant_share=0.1, seed=4242)
    summary = ctl(cli_stack, "import", str(roster), "-j", ORIGIN)
    assert summary["total_imported"] == GOOD and summary["total_rejected"] == 10
    origin = dsn(cli_stack, f"registry-{ORIGIN}")
    wait_until(
        lambda: query(origin, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")[0]["n"] == 0, 30
    )
    return [r["id_number"] for r in query(origin, "SELECT id_number FROM persons ORDER BY id_number")]


def test_imported_people_flow_to_the_exchange_and_the_counterpart(
    cli_stack: Stack, imported: list[str]
) -> None:
    exchange, dest = dsn(cli_stack, "migrant_exchange"), dsn(cli_stack, f"registry-{DESTINATION}")
    wait_until(lambda: query(exchange, "SELECT count(*) AS n FROM roster")[0]["n"] >= GOOD, 60)
    migrants = query(exchange, "SELECT count(*) AS n FROM roster WHERE residence_division = $1", DESTINATION)[
        0
    ]["n"]
    assert migrants > 50  # about 10 % of the roster lives in the destination
    wait_until(
        lambda: (
            query(dest, "SELECT count(*) AS n FROM persons WHERE source_division = $1", ORIGIN)[0]["n"]
            == migrants
        ),
        60,
    )


def _roster_rows(stack: Stack) -> list[tuple[Any, ...]]:
    rows = query(
        dsn(stack, "migrant_exchange"),
        "SELECT subject, hukou_division, residence_division FROM roster ORDER BY subject",
    )
    return [tuple(r) for r in rows]


def test_replay_rebuilds_the_exchange_roster_and_counterpart_records(
    cli_stack: Stack, imported: list[str]
) -> None:
    exchange, dest = dsn(cli_stack, "migrant_exchange"), dsn(cli_stack, f"registry-{DESTINATION}")
    wait_until(lambda: len(_roster_rows(cli_stack)) >= GOOD, 60)
    before = _roster_rows(cli_stack)
    query(exchange, "TRUNCATE roster")
    # without a stack.json, as in a deployment: the databases named one by one
    databases = [f"--db={s.name}={s.dsn}" for s in cli_stack.services]
    out = runner.invoke(
        app, ["replay", "exchange-roster", "--stack", "/nonexistent.json", *databases, "--json"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["events"] >= GOOD and _roster_rows(cli_stack) == before
    query(exchange, "TRUNCATE roster")
    result = ctl(cli_stack, "replay", "exchange-roster")
    assert result["events"] >= GOOD and result["from"] == "beginning"
    assert _roster_rows(cli_stack) == before

    counterpart = (
        "SELECT id_number, name, hukou_division FROM persons WHERE source_division <> jurisdiction ORDER BY 1"
    )
    held = query(dest, counterpart)
    result = ctl(cli_stack, "replay", "counterpart", "-j", DESTINATION)
    assert result["cleared"]["persons"] == len(held) > 0
    assert query(dest, counterpart) == held
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    again = ctl(cli_stack, "replay", "counterpart", "-j", DESTINATION, "--since", since)
    assert again["cleared"] == {} and query(dest, counterpart) == held


# A family's records as a registry holds them, by the origin's ids: what the notifications carry.
FAMILY = {
    "marriages": "SELECT id, spouse_a_id_number, spouse_b_id_number, marriage_date, dissolution_date, "
    "source_division FROM marriages WHERE spouse_b_id_number = $1 ORDER BY id",
    "pregnancies": "SELECT id, mother_id_number, registered_in, registered_on, expected_delivery, closed_on, "
    "source_division FROM pregnancies WHERE mother_id_number = $1 ORDER BY id",
    "certificates": "SELECT number, holder_id_number, issuer, issued_on, valid_until, revoked_on, "
    "source_division FROM counterpart_certificates WHERE holder_id_number = $1 ORDER BY number",
}


def _family(db: str, wife: str) -> dict[str, list[dict[str, Any]]]:
    return {table: [dict(r) for r in query(db, sql, wife)] for table, sql in FAMILY.items()}


def test_replay_counterpart_puts_back_family_records_as_the_notifications_say(
    cli_stack: Stack, imported: list[str]
) -> None:
    """A counterpart's marriage (corrected since), pregnancy and certificate, changed at the
    destination behind the exchange's back, and a marriage no notification made: the replay leaves
    them as the origin's notifications say, the correction applied again on the marriage."""
    origin = Api(cli_stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    dest = dsn(cli_stack, f"registry-{DESTINATION}")
    wife = migrant(cli_stack, ORIGIN, DESTINATION, "回放妻", arrived=False)
    husband = migrant(cli_stack, ORIGIN, DESTINATION, "回放夫", arrived=False, sex="M")
    r = origin.post(
        "/v1/marriages",
        {"spouse_a_id_number": husband, "spouse_b_id_number": wife, "marriage_date": "2025-05-20"},
    )
    assert r.status_code == 201, r.text
    marriage = r.json()
    fix = {
        "corrected_event_id": marriage["event_id"],
        "record_type": "marriage",
        "record_id": marriage["marriage_id"],
        "changes": {"marriage_date": "2025-05-21"},
        "reason": "typed wrongly at the counter",
    }
    for path, body in (
        ("/v1/corrections", fix),
        ("/v1/pregnancies", {"mother_id_number": wife, "expected_delivery": "2027-01-15"}),
        ("/v1/certificates", {"holder_id_number": wife}),
    ):
        r = origin.post(path, body)
        assert r.status_code == 201, r.text

    def told() -> dict[str, list[dict[str, Any]]] | None:
        held = _family(dest, wife)
        married = held["marriages"]
        done = married and married[0]["marriage_date"] == dt.date(2025, 5, 21)
        return held if done and held["pregnancies"] and held["certificates"] else None

    held = wait_until(told, 30)
    # the far side: the origin's own records (its register for the certificate) are what we hold
    home = dsn(cli_stack, f"registry-{ORIGIN}")
    theirs = _family(home, wife)
    assert held["marriages"] == theirs["marriages"] and held["pregnancies"] == theirs["pregnancies"]
    issued = (
        "SELECT number, holder_id_number, issued_on, valid_until, revoked_on FROM certificates "
        "WHERE holder_id_number = $1"
    )
    assert [dict(r) for r in query(home, issued, wife)] == [
        {k: v for k, v in c.items() if k not in ("issuer", "source_division")} for c in held["certificates"]
    ]

    query(dest, "UPDATE marriages SET marriage_date = '2020-01-01' WHERE spouse_b_id_number = $1", wife)
    query(dest, "UPDATE pregnancies SET expected_delivery = '2030-01-01' WHERE mother_id_number = $1", wife)
    query(
        dest,
        "UPDATE counterpart_certificates SET valid_until = '2099-01-01' WHERE holder_id_number = $1",
        wife,
    )
    query(  # a marriage of hers no notification made
        dest,
        """INSERT INTO marriages (id, jurisdiction, spouse_a_id_number, spouse_b_id_number, marriage_date,
                                  dissolution_date, dissolution_reason, source_division)
           VALUES ($1, $2, $3, $4, '2019-01-01', '2019-06-01', 'divorce', $5)""",
        uuid.uuid4(),
        DESTINATION,
        person_id("M"),
        wife,
        ORIGIN,
    )
    assert _family(dest, wife) != held

    ctl(cli_stack, "replay", "counterpart", "-j", DESTINATION)
    assert _family(dest, wife) == held


def _issue(stack: Stack, holders: list[str]) -> list[dict[str, Any]]:
    api = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")

    def one(holder: str) -> dict[str, Any]:
        r = api.post("/v1/certificates", {"holder_id_number": holder})
        assert r.status_code == 201, r.text
        return {"number": r.json()["certificate_number"], "holder": holder}

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, holders))


def _answers(stack: Stack, certificates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kiosk = Api(stack, "verification", f"kiosk-{DESTINATION}")

    def one(c: dict[str, Any]) -> dict[str, Any]:
        body = {"certificate_number": c["number"], "holder_id_number": c["holder"], "purpose": "benefits"}
        r = kiosk.post("/v1/verifications", body)
        assert r.status_code == 200, r.text
        return {k: v for k, v in r.json().items() if k != "checked_at"}

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, certificates))


def test_replay_restores_identical_verification_answers_after_truncation(
    cli_stack: Stack, imported: list[str]
) -> None:
    certificates = _issue(cli_stack, imported[:CERTIFICATES])
    # a holder mismatch is an answer too: present someone else's number for a few
    certificates += [
        {"number": c["number"], "holder": imported[-1 - i]} for i, c in enumerate(certificates[:10])
    ]
    verification = dsn(cli_stack, "verification")
    wait_until(
        lambda: query(verification, "SELECT count(*) AS n FROM certificates")[0]["n"] >= CERTIFICATES, 30
    )
    before = _answers(cli_stack, certificates)
    assert {a["result"] for a in before} == {"valid", "holder_mismatch"}

    query(verification, "TRUNCATE certificates")
    assert {a["result"] for a in _answers(cli_stack, certificates[:5])} == {"not_found"}
    result = ctl(cli_stack, "replay", "verification")
    assert result["events"] >= CERTIFICATES and result["cleared"]["inbox"] >= CERTIFICATES
    assert _answers(cli_stack, certificates) == before

    # from a point in time: as after restoring a backup that predates the last certificates, whose
    # rows and inbox entries are missing; the events before them are in the inbox and are skipped
    lost = [c["number"] for c in certificates[CERTIFICATES // 2 : CERTIFICATES]]
    events = [
        r["source_event_id"]
        for r in query(
            verification, "SELECT source_event_id FROM certificates WHERE number = ANY($1::text[])", lost
        )
    ]
    query(verification, "DELETE FROM certificates WHERE number = ANY($1::text[])", lost)
    query(verification, "DELETE FROM inbox WHERE event_id = ANY($1::uuid[])", events)
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    partial = ctl(cli_stack, "replay", "verification", "--since", since)
    assert partial["cleared"] == {} and partial["events"] >= CERTIFICATES
    assert _answers(cli_stack, certificates) == before


def test_keys_list_rotate_and_create(cli_stack: Stack, imported: list[str]) -> None:
    _issue(cli_stack, imported[-1:])  # the origin's first certificate made its first key
    keys = ctl(cli_stack, "keys", "list", "-j", ORIGIN)
    assert [k["state"] for k in keys] == ["active"]
    ctl(cli_stack, "keys", "create", "-j", ORIGIN, code=1)  # one is active: rotate instead

    rotated = ctl(cli_stack, "keys", "rotate", "-j", ORIGIN)["kid"]
    keys = {k["kid"]: k["state"] for k in ctl(cli_stack, "keys", "list", "-j", ORIGIN)}
    assert keys[rotated] == "active" and sorted(keys.values()) == ["active", "retired"]
    api = Api(cli_stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    assert api.post("/v1/certificates", {"holder_id_number": imported[-2]}).json()["key_id"] == rotated

    assert ctl(cli_stack, "keys", "list", "-j", DESTINATION) == []
    created = ctl(cli_stack, "keys", "create", "-j", DESTINATION)["kid"]
    assert [k["kid"] for k in ctl(cli_stack, "keys", "list", "-j", DESTINATION)] == [created]


def test_audit_verify_finds_a_tampered_entry_and_export_lists_a_persons_disclosures(
    cli_stack: Stack, imported: list[str]
) -> None:
    holder = imported[3]
    [cert] = _issue(cli_stack, [holder])
    verification = dsn(cli_stack, "verification")
    wait_until(
        lambda: query(verification, "SELECT 1 FROM certificates WHERE number = $1", cert["number"]), 10
    )
    _answers(cli_stack, [cert, cert])
    # An answer is sent once its audit entry is durable as pending; the chainer moves it into the
    # hash-chained log, which verify and export read, off the request path.
    wait_until(lambda: not query(verification, "SELECT 1 FROM audit_pending LIMIT 1"), 10)
    registry = Api(cli_stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    assert registry.get(f"/v1/persons/{holder}", purpose="social_services").status_code == 200

    results = {r["service"]: r for r in ctl(cli_stack, "audit", "verify")}
    assert results["verification"]["intact"] and results["verification"]["entries"] >= 2
    assert all(r["intact"] for r in results.values())

    history = ctl(cli_stack, "audit", "export", "--id-number", holder)
    actions = [(e["service"], e["action"]) for e in history]
    # One row per disclosure, the earliest copy first: the origin registry's copy of an answer
    # may sort before verification's own, which then names verification in ``also_in``.
    answered = [e for e in history if "verification" in (e["service"], *e.get("also_in", ()))]
    assert len(answered) >= 2
    assert (f"registry-{ORIGIN}", "person.read") in actions
    assert holder not in json.dumps(history)
    csv_text = runner.invoke(
        app,
        [
            "audit",
            "export",
            "--id-number",
            holder,
            "--format",
            "csv",
            "--stack",
            str(cli_stack.run_dir / "stack.json"),
        ],
    ).stdout
    assert csv_text.splitlines()[0].startswith("at,service,seq") and "certificate.verify" in csv_text

    seq = query(verification, "SELECT min(seq) AS s FROM audit_log")[0]["s"] + 1
    original = query(verification, "SELECT purpose FROM audit_log WHERE seq = $1", seq)[0]["purpose"]
    tamper(verification, "UPDATE audit_log SET purpose = 'identity_check_x' WHERE seq = $1", seq)
    try:
        broken = ctl(cli_stack, "audit", "verify", "--service", "verification", code=1)
        assert broken == [
            {
                "service": "verification",
                "entries": broken[0]["entries"],
                "intact": False,
                "first_broken_seq": seq,
            }
        ]
    finally:
        tamper(verification, "UPDATE audit_log SET purpose = $2 WHERE seq = $1", seq, original)
    assert ctl(cli_stack, "audit", "verify", "--service", "verification")[0]["intact"]


def test_dead_letters_are_listed_shown_and_replayed(cli_stack: Stack, imported: list[str]) -> None:
    from aiokafka import AIOKafkaProducer

    async def send_garbage() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=cli_stack.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                "certificate.lifecycle.v1",
                b'{"type": "certificate.issued.v1", "id_number": "' + imported[0].encode() + b'"}',
            )
        finally:
            await producer.stop()

    asyncio.run(send_garbage())
    verification = dsn(cli_stack, "verification")
    wait_until(lambda: query(verification, "SELECT count(*) AS n FROM dead_letters")[0]["n"] >= 1, 20)
    listed = ctl(cli_stack, "dlq", "list", "--service", "verification")
    garbage = listed[-1]
    assert garbage["topic"] == "certificate.lifecycle.v1" and "invalid event" in garbage["reason"]
    shown = ctl(cli_stack, "dlq", "show", str(garbage["id"]), "--service", "verification")
    assert shown["message"]["type"] == "certificate.issued.v1"
    assert shown["message"]["fields"] == ["id_number", "type"]  # names, never the values
    assert imported[0] not in json.dumps(shown)
    failed = ctl(cli_stack, "dlq", "replay", str(garbage["id"]), "--service", "verification", code=1)
    assert failed[0]["replayed"] is False

    # a valid event that was dead-lettered (say, while the database refused it) replays once fixed
    [cert] = _issue(cli_stack, [imported[5]])
    wait_until(
        lambda: query(verification, "SELECT 1 FROM certificates WHERE number = $1", cert["number"]), 10
    )
    event = query(
        dsn(cli_stack, f"registry-{ORIGIN}"),
        "SELECT event_id, value FROM outbox WHERE event_type = 'certificate.issued.v1' AND convert_from(value, 'UTF8') LIKE $1",
        f"%{cert['number']}%",
    )[0]
    query(verification, "DELETE FROM certificates WHERE number = $1", cert["number"])
    query(verification, "DELETE FROM inbox WHERE event_id = $1", event["event_id"])
    dead = query(
        verification,
        """INSERT INTO dead_letters (consumer, topic, partition, "offset", key, value, reason)
           VALUES ('verification', 'certificate.lifecycle.v1', 0, 0, 'subject-key-7f3a', $1, 'test')
           RETURNING id""",
        signed_bytes(cli_stack, ORIGIN, bytes(event["value"])),  # as the registry's relay published it
    )[0]["id"]
    # an operator sees the letter's operations: where, why, what shape; not the person in it
    shown = ctl(cli_stack, "dlq", "show", str(dead), "--service", "verification")
    assert {"data.holder_id_number", "data.holder_name", "data.certificate_number"} <= set(
        shown["message"]["fields"]
    )
    said = json.dumps(shown)
    assert imported[5] not in said and cert["number"] not in said and "subject-key-7f3a" not in said
    assert ctl(cli_stack, "dlq", "replay", str(dead), "--service", "verification") == [
        {"id": dead, "replayed": True, "error": None}
    ]
    assert query(verification, "SELECT 1 FROM certificates WHERE number = $1", cert["number"])
    assert all(d["id"] != dead for d in ctl(cli_stack, "dlq", "list", "--service", "verification"))


def test_reconcile_finds_a_counterpart_record_gone_missing(cli_stack: Stack, imported: list[str]) -> None:
    dest = dsn(cli_stack, f"registry-{DESTINATION}")
    clean = ctl(cli_stack, "reconcile", ORIGIN, DESTINATION)
    assert clean["reconciliation"]["state"] == "finished" and isinstance(clean["discrepancies"], list)

    gone = query(dest, "SELECT id_number FROM persons WHERE source_division = $1 LIMIT 1", ORIGIN)[0][
        "id_number"
    ]
    query(dest, "DELETE FROM persons WHERE id_number = $1", gone)
    found = ctl(cli_stack, "reconcile", ORIGIN, DESTINATION)
    missing = [d for d in found["discrepancies"] if d["kind"] == "missing" and d["missing_at"] == DESTINATION]
    assert len(found["discrepancies"]) > len(clean["discrepancies"]) and missing
    assert gone not in json.dumps(found)  # subjects are pseudonymous keys
