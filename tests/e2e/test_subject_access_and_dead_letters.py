"""What the operators and the people can see of the whole system (issue 17 points 4, 6 and 8).

* The whole subject-access log: every party that received or read a person's data is named in
  ``GET /v1/persons/{id}/disclosures`` at both of the person's registries, and in ``exchangectl
  audit export``, once per disclosure, with purpose and time.
* Every service's dead letters (a registry's and verification's too) in the exchange's
  ``GET /v1/dead-letters`` and on the dashboard, with the verification rate (验证率).

A stack of its own with a third registry (the father's), so that a birth has a real routing
target beyond the mother's two registries; that registry is stopped while the birth is routed,
and its client picks the notification up over REST instead.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner

from cli.main import app
from devstack.stack import DESTINATION, ORIGIN, Stack
from shared.identity import subject_key
from tests.helpers import Api, medical_certificate, migrant, query, run_async, wait_until
from tests.stacks_ahead import StackSpec, stack_fixture

pytestmark = pytest.mark.e2e

T = TypeVar("T")
FATHERS = "330106"  # 杭州市西湖区: the father's household registration
BIRTH = "birth.registered.v2"  # what registries announce (v1 is upcast)


sal_stack = stack_fixture(
    "sal_stack", StackSpec("subject-access", db_prefix="sal_", registries=(ORIGIN, DESTINATION, FATHERS))
)


def _migrant(stack: Stack, hukou: str, sex: str = "F") -> str:
    """Registered at ``hukou`` and moved to the destination, which has her record (a migration)."""
    number = migrant(stack, hukou, DESTINATION, "陈静", arrived=False, sex=sex)
    dest_db = stack.service(f"registry-{DESTINATION}").dsn
    wait_until(lambda: query(dest_db, "SELECT 1 FROM persons WHERE id_number = $1", number), 15)
    return number


def _sent(entries: list[dict[str, Any]]) -> Counter[tuple[str, str | None]]:
    return Counter(
        (e["client_id"], e["detail"].get("event_type")) for e in entries if e["action"] == "notification.sent"
    )


EXPECTED_SENT = {
    (f"registry-{DESTINATION}", "migration.departed.v1"): 1,  # the move, from the origin
    # the pregnancy, and its closure by the birth (the type travels neutral)
    (f"registry-{ORIGIN}", "vital.restricted"): 2,
    (f"registry-{ORIGIN}", BIRTH): 1,  # the birth, to her origin ...
    (f"registry-{FATHERS}", BIRTH): 1,  # ... and to the father's registry
    (f"registry-{DESTINATION}", "certificate.issued.v1"): 1,  # her certificate, where she lives
}


def _complete(api: Api, mother: str) -> list[dict[str, Any]] | None:
    r = api.get(f"/v1/persons/{mother}/disclosures")
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()["disclosures"]
    actions = {e["action"] for e in entries}
    wanted = {"notification.sent", "notification.fetched", "certificate.verified", "person.read"}
    return entries if wanted <= actions and _sent(entries) == EXPECTED_SENT else None


def test_every_party_that_received_or_read_her_data_is_named_once(sal_stack: Stack) -> None:
    stack = sal_stack
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    dest = Api(stack, f"registry-{DESTINATION}", f"reg-{DESTINATION}")
    mother = _migrant(stack, ORIGIN)  # a registration and a migration
    father = _migrant(stack, FATHERS, "M")
    r = dest.post("/v1/pregnancies", {"mother_id_number": mother, "registered_on": "2025-05-01"})
    assert r.status_code == 201, r.text  # a pregnancy

    # The father's registry is down while the birth is routed: its client fetches it over REST.
    stack.stop_service(stack.service(f"registry-{FATHERS}"))
    try:
        birth = {
            "medical_certificate_number": medical_certificate(),
            "child_name": "陈小雨",
            "child_sex": "F",
            "child_birth_date": "2026-01-10",
            "mother_id_number": mother,
            "father_id_number": father,
        }
        r = dest.post("/v1/births", birth)
        assert r.status_code == 201, r.text  # a birth
        rest = Api(stack, "migrant_exchange", f"reg-{FATHERS}")

        def picked_up() -> list[dict[str, Any]]:
            listed = rest.get("/v1/notifications", jurisdiction=FATHERS, limit=1000).json()
            return [n for n in listed if n["event_type"] == BIRTH and n["payload"]]

        assert wait_until(picked_up, 15)[0]["payload"]["father_id_number"] == father
        assert picked_up()  # fetched twice: still one disclosure
    finally:
        stack.spawn(stack.service(f"registry-{FATHERS}"))
        stack.wait_ready(stack.service(f"registry-{FATHERS}"))

    cert = origin.post("/v1/certificates", {"holder_id_number": mother})
    assert cert.status_code == 201, cert.text
    number = cert.json()["certificate_number"]
    verify_db = stack.service("verification").dsn
    wait_until(lambda: query(verify_db, "SELECT 1 FROM certificates WHERE number = $1", number), 15)
    kiosk = Api(stack, "verification", f"kiosk-{DESTINATION}")
    check = {"certificate_number": number, "holder_id_number": mother, "purpose": "arrival_registration"}
    r = kiosk.post("/v1/verifications", check)
    assert r.status_code == 200 and r.json()["result"] == "valid", r.text  # a kiosk verification
    dept = Api(stack, f"registry-{DESTINATION}", f"dept-{DESTINATION}")
    assert (
        dept.get(f"/v1/persons/{mother}", purpose="social_services").status_code == 200
    )  # a department read

    for api in (dest, origin):  # both of her registries name every party
        entries = wait_until(lambda api=api: _complete(api, mother), 20)
        _check_entries(entries)
    _check_export(stack, mother)


def test_a_read_told_to_her_other_registry_does_not_hold_up_her_next_event(sal_stack: Stack) -> None:
    """Disclosures are numbered apart from a registry's vital events: the exchange orders those by
    sequence and never sees the disclosures, so one numbered among them would park what follows."""
    stack = sal_stack
    mother = _migrant(stack, ORIGIN)
    dept = Api(stack, f"registry-{DESTINATION}", f"dept-{DESTINATION}")
    assert dept.get(f"/v1/persons/{mother}", purpose="social_services").status_code == 200  # told to 320412
    dest = Api(stack, f"registry-{DESTINATION}", f"reg-{DESTINATION}")
    r = dest.post("/v1/pregnancies", {"mother_id_number": mother, "registered_on": "2025-06-01"})
    assert r.status_code == 201, r.text
    subject = subject_key(mother, stack.subject_secret.encode())
    exchange_db = stack.service("migrant_exchange").dsn
    applied = """SELECT 1 FROM notifications WHERE subject = $1 AND event_type = 'pregnancy.registered.v1'
                 AND state = 'applied'"""
    wait_until(lambda: query(exchange_db, applied, subject), 15)  # not parked for SEQUENCE_GAP_SECONDS
    assert not query(exchange_db, "SELECT 1 FROM parked_events WHERE subject = $1", subject)
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    reads = lambda: [  # noqa: E731
        e
        for e in origin.get(f"/v1/persons/{mother}/disclosures").json()["disclosures"]
        if e["action"] == "person.read" and e["client_id"] == f"dept-{DESTINATION}"
    ]
    [told] = wait_until(reads, 15)
    assert told["purpose"] == "social_services" and told["detail"]["discloser"] == DESTINATION


def test_a_certificate_print_is_named_at_both_of_her_registries(sal_stack: Stack) -> None:
    """Printing her 婚育证明 discloses her name, marital status and children to the printing
    client: her issuing registry's log names the print, and so does her other registry's, as it
    names a read of her record there (DESIGN section 8: every disclosure)."""
    stack = sal_stack
    mother = _migrant(stack, ORIGIN)  # registered at the origin, living at the destination
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    cert = origin.post("/v1/certificates", {"holder_id_number": mother})
    assert cert.status_code == 201, cert.text
    number = cert.json()["certificate_number"]
    r = origin.get(f"/v1/certificates/{number}/document")
    assert r.status_code == 200 and r.content.startswith(b"%PDF"), r.text

    [printed] = [
        e
        for e in origin.get(f"/v1/persons/{mother}/disclosures").json()["disclosures"]
        if e["action"] == "certificate.printed"
    ]
    assert printed["client_id"] == f"reg-{ORIGIN}" and printed["detail"]["certificate_number"] == number
    dest = Api(stack, f"registry-{DESTINATION}", f"reg-{DESTINATION}")
    told = lambda: [  # noqa: E731
        e
        for e in dest.get(f"/v1/persons/{mother}/disclosures").json()["disclosures"]
        if e["detail"].get("certificate_number") == number and e["client_id"] == f"reg-{ORIGIN}"
    ]
    [there] = wait_until(told, 15)
    assert there["purpose"] == "certificate_issuance" and there["detail"]["discloser"] == ORIGIN
    assert there["detail"]["issuer"] == ORIGIN and there["detail"]["recipient_division"] == ORIGIN


def _check_entries(entries: list[dict[str, Any]]) -> None:
    ids = [e["detail"]["disclosure_id"] for e in entries if "disclosure_id" in e["detail"]]
    assert len(ids) == len(set(ids))  # each disclosure once
    for e in entries:
        assert e["purpose"] and dt.datetime.fromisoformat(e["at"]).tzinfo is not None
    by_action = {a: [e for e in entries if e["action"] == a] for a in {e["action"] for e in entries}}
    [fetched] = by_action["notification.fetched"]
    assert fetched["client_id"] == f"reg-{FATHERS}" and fetched["purpose"] == "registration"
    assert fetched["detail"]["event_type"] == BIRTH
    [verified] = by_action["certificate.verified"]
    assert verified["client_id"] == f"kiosk-{DESTINATION}" and verified["purpose"] == "arrival_registration"
    assert verified["detail"]["result"] == "valid" and verified["detail"]["issuer"] == ORIGIN
    [read] = [e for e in by_action["person.read"] if e["client_id"] == f"dept-{DESTINATION}"]
    assert read["purpose"] == "social_services"
    purposes = {e["detail"].get("event_type"): e["purpose"] for e in by_action["notification.sent"]}
    assert purposes["vital.restricted"] == "maternal_care" and purposes[BIRTH] == "registration"


def _check_export(stack: Stack, mother: str) -> None:
    result = CliRunner().invoke(
        app,
        ["audit", "export", "--id-number", mother, "--stack", str(stack.run_dir / "stack.json"), "--json"],
    )
    assert result.exit_code == 0, result.output
    history = json.loads(result.stdout)
    assert mother not in result.stdout
    ids = [e["detail"]["disclosure_id"] for e in history if "disclosure_id" in e["detail"]]
    assert len(ids) == len(set(ids))  # once, although the registries and verification each keep it
    verified = [e for e in history if e["action"] in ("certificate.verify", "certificate.verified")]
    assert len(verified) == 1
    holders = {verified[0]["service"], *verified[0]["also_in"]}
    assert holders == {"verification", f"registry-{ORIGIN}", f"registry-{DESTINATION}"}
    parties = {(e["action"], e["client_id"]) for e in history}
    assert {
        ("notification.sent", f"registry-{FATHERS}"),
        ("notification.fetched", f"reg-{FATHERS}"),
    } <= parties
    assert ("person.read", f"dept-{DESTINATION}") in parties
    subject = subject_key(mother, stack.subject_secret.encode())
    assert all(subject not in json.dumps(e["detail"]) for e in history)


def _produce_raw(stack: Stack, messages: list[tuple[str, bytes]]) -> None:
    """Messages no consumer can parse, straight onto the broker."""
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, enable_idempotence=False)
        await producer.start()
        try:
            for topic, value in messages:
                await producer.send_and_wait(topic, value, key=b"poison")
        finally:
            await producer.stop()

    _off_loop(run_async, run())


def _off_loop(fn: Callable[..., T], *args: Any) -> T:
    """On a thread of its own: Playwright's sync API keeps an event loop on this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def _counts(ops: Api) -> dict[tuple[str, str], dict[str, Any]]:
    body = ops.get("/v1/dead-letters").json()
    return {(c["service"], c["topic"]): c for c in body["counts"]}


def test_every_services_dead_letters_and_the_verification_rate_reach_the_operators(
    sal_stack: Stack, browser: Any
) -> None:
    stack = sal_stack
    ops = Api(stack, "migrant_exchange", "operator")
    marker = uuid.uuid4().hex
    before = _counts(ops)
    # A notification no registry can read (dead-lettered at each registry) and a correction that
    # is not even JSON (dead-lettered at verification, and at the exchange, which reads it too).
    _produce_raw(
        stack,
        [
            ("exchange.notification.v1", f'{{"marker": "{marker}"}}'.encode()),
            ("vital.correction.v1", b"\x00" + marker.encode()),
        ],
    )
    wanted = [
        (f"registry-{ORIGIN}", "exchange.notification.v1"),
        (f"registry-{FATHERS}", "exchange.notification.v1"),
        ("verification", "vital.correction.v1"),
        ("migrant_exchange", "vital.correction.v1"),
    ]

    def arrived() -> dict[tuple[str, str], dict[str, Any]] | None:
        now = _counts(ops)
        grown = all(now.get(k, {}).get("count", 0) > before.get(k, {}).get("count", 0) for k in wanted)
        return now if grown else None

    counts = wait_until(arrived, 20)
    assert counts[(f"registry-{ORIGIN}", "exchange.notification.v1")]["reason"] == "UnknownEventType"
    assert counts[("verification", "vital.correction.v1")]["reason"] == "JSONDecodeError"
    listing = ops.get("/v1/dead-letters").text
    assert marker not in listing and "poison" not in listing  # where, when and why: never what
    assert ops.get("/v1/dead-letters").json()["total"] >= 5

    # The verification rate of the destination: a migrant's certificate checked at its kiosk.
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    holder = _off_loop(_migrant, stack, ORIGIN)
    number = origin.post("/v1/certificates", {"holder_id_number": holder}).json()["certificate_number"]
    verify_db = stack.service("verification").dsn
    wait_until(
        lambda: _off_loop(query, verify_db, "SELECT 1 FROM certificates WHERE number = $1", number), 15
    )
    check = {"certificate_number": number, "holder_id_number": holder, "purpose": "benefits"}
    assert (
        Api(stack, "verification", f"kiosk-{DESTINATION}").post("/v1/verifications", check).status_code == 200
    )
    exchange_db = stack.service("migrant_exchange").dsn
    counted = "SELECT 1 FROM verification_stats WHERE certificate_number = $1"
    wait_until(lambda: _off_loop(query, exchange_db, counted, number), 15)
    row = ops.get("/v1/indicators", jurisdiction=DESTINATION).json()["jurisdictions"][0]
    assert row["certificates_verified"] >= 1 and row["verification_rate"] is not None
    _dashboard_shows(stack, browser, row["verification_rate"])


def _dashboard_shows(stack: Stack, browser: Any, rate: float) -> None:
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    try:
        page.goto(f"{stack.service('migrant_exchange').url}/dashboard#token={stack.token('operator')}")
        page.wait_for_function(
            "(t) => ['verification', 'registry-330106'].every((s) => t.textContent.includes(s))",
            arg=page.query_selector("[data-testid=dead-letter-counts]"),
            timeout=20_000,
        )
        table = page.get_by_test_id("dead-letter-counts").inner_text()
        assert "exchange.notification.v1" in table and "JSONDecodeError" in table
        assert int(page.get_by_test_id("dead-letters").inner_text().replace(",", "")) >= 5
        cell = f"[data-testid=indicators] tr:has-text('{DESTINATION}') td[data-key=verification_rate]"
        page.wait_for_selector(cell, timeout=20_000)
        assert page.inner_text(cell).replace("\u00a0", " ").split(" %")[0].endswith(f"{rate * 100:.1f}")
    finally:
        page.close()
