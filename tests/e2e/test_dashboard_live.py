"""The operations-centre page in a real browser, fed live by the running stack.

Headless Chromium (Debian's, driven by Playwright) opens ``/dashboard`` while the test records
vital events at the registries; the counters and the flow matrix must change without a reload.
A second test loads 200 jurisdictions into the flow matrix and checks the page stays responsive.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import DESTINATION, ORIGIN, Stack
from shared.identity import subject_key
from tests.helpers import Api, person_id, wait_until
from tests.helpers import query as _query_here

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SYNTHETIC = "dashtest"  # roster subjects the 200-jurisdiction test adds and removes


def query(dsn: str, sql: str, *args: Any) -> list[Any]:
    """helpers.query on a thread of its own: Playwright's sync API keeps an event loop on this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_query_here, dsn, sql, *args).result()


def _open(browser: Any, stack: Stack) -> Any:
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    # Long tasks (> 50 ms on the main thread) are what makes a page stop answering.
    page.add_init_script(
        """window.__longTasks = [];
           new PerformanceObserver((l) => l.getEntries().forEach((e) => window.__longTasks.push(e.duration)))
             .observe({entryTypes: ['longtask']});"""
    )
    url = stack.service("migrant_exchange").url
    page.goto(f"{url}/dashboard#token={stack.token('operator')}")
    page.wait_for_selector("[data-testid=status][data-state=live]", timeout=20_000)
    page.wait_for_function("Number(document.getElementById('heat').dataset.version) >= 1", timeout=20_000)
    return page


def _migrate(origin: Api, n: int) -> None:
    """n people registered at the origin move to the destination: n more in that flow."""
    for _ in range(n):
        who = person_id("F")
        r = origin.post(
            "/v1/persons",
            {
                "id_number": who,
                "name": "陈静",
                "sex": "F",
                "birth_date": f"{who[6:10]}-{who[10:12]}-{who[12:14]}",
                "hukou_division": ORIGIN,
            },
        )
        assert r.status_code == 201, r.text
        r = origin.post(
            "/v1/migrations",
            {
                "kind": "departed",
                "id_number": who,
                "from_division": ORIGIN,
                "to_division": DESTINATION,
                "migration_date": "2026-03-01",
            },
        )
        assert r.status_code == 201, r.text


def test_dashboard_counters_and_flows_change_live_without_reload(stack: Stack, browser: Any) -> None:
    page = _open(browser, stack)
    page.evaluate("window.__sameDocument = true")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    applied_before = int(page.get_by_test_id("events-applied").inner_text().replace(",", ""))
    total_before = int(page.get_by_test_id("flow-matrix").get_attribute("data-total") or 0)

    _migrate(Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}"), 3)

    page.wait_for_function(
        f"Number(document.querySelector('[data-testid=events-applied]').textContent.replace(/,/g, '')) >= {applied_before + 6}",
        timeout=15_000,
    )
    page.wait_for_function(
        f"Number(document.getElementById('heat').dataset.total) >= {total_before + 3}", timeout=15_000
    )
    # Lag of every group, the registries' too, read from the broker.
    page.wait_for_function(
        "((t) => ['registry-320412', 'registry-440703'].every((g) => t.dataset.groups.split(' ').includes(g))"
        " && t.dataset.groups.includes('migrant-exchange') && t.dataset.topics.includes('vital.person.v1'))"
        "(document.querySelector('[data-testid=lag]'))",
        timeout=15_000,
    )
    assert page.evaluate("window.__sameDocument") is True and not navigations  # no reload happened
    top = page.get_by_test_id("top-flows").inner_text()
    assert f"{ORIGIN} → {DESTINATION}" in top
    page.wait_for_function(
        f"document.querySelector('[data-testid=indicators]').textContent.includes('{DESTINATION}')",
        timeout=15_000,
    )
    rows = page.get_by_test_id("indicators").inner_text()
    assert ORIGIN in rows and DESTINATION in rows
    # Every jurisdiction's row has its verification rate (验证率) cell, with the others.
    cells = page.locator("[data-testid=indicators] td[data-key=verification_rate]").count()
    assert cells == page.locator("[data-testid=indicators] tbody tr").count() > 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"))
    page.close()


def test_the_dashboard_never_shows_person_level_data(stack: Stack) -> None:
    """Aggregates only: the stream carries no subject key, name or identity number."""
    url = stack.service("migrant_exchange").url
    headers = {"Authorization": f"Bearer {stack.token('operator')}"}
    with httpx.stream("GET", f"{url}/v1/stream", headers=headers, timeout=10) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = ""
        for chunk in r.iter_text():
            text += chunk
            if "event: snapshot" in text and text.endswith("\n\n"):
                break
    subjects = [
        r["subject"] for r in query(stack.service("migrant_exchange").dsn, "SELECT subject FROM roster")
    ]
    assert subjects and not any(s in text for s in subjects)
    # No pregnancy event is named, not even in the rates (topic names in the lag table are plumbing).
    assert "pregnancy.registered" not in text and "pregnancy.closed" not in text
    kiosk = httpx.get(f"{url}/v1/stream", headers={"Authorization": f"Bearer {stack.token('kiosk-440703')}"})
    assert kiosk.status_code == 403


@pytest.fixture
def two_hundred_jurisdictions(stack: Stack) -> Iterator[int]:
    """200 jurisdictions, each sending migrants to 40 others: 8,000 cells in the matrix."""
    dsn = stack.service("migrant_exchange").dsn
    query(
        dsn,
        """INSERT INTO roster (subject, hukou_division, residence_division, moves, last_event_at)
           SELECT $1 || o || '-' || k || '-' || r, (500000 + o)::text, (500000 + (o + 1 + k * 4) % 200)::text,
                  1, timestamptz '2000-01-01'
           FROM generate_series(0, 199) o, generate_series(0, 39) k, generate_series(0, (o + k) % 3) r""",
        SYNTHETIC,
    )
    try:
        yield 200
    finally:
        query(dsn, "DELETE FROM roster WHERE subject LIKE $1 || '%'", SYNTHETIC)


def test_dashboard_stays_responsive_with_200_jurisdictions(
    stack: Stack, browser: Any, two_hundred_jurisdictions: int
) -> None:
    page = _open(browser, stack)
    page.wait_for_function("document.getElementById('heat').dataset.cells >= 8000", timeout=15_000)
    render_ms = float(page.get_by_test_id("flow-matrix").get_attribute("data-render-ms") or 0)
    # Stay on the page through several live updates, then ask it something and time the answer.
    time.sleep(3)
    started = time.monotonic()
    page.evaluate("new Promise((done) => requestAnimationFrame(() => done(true)))")
    answer_ms = (time.monotonic() - started) * 1000
    long_tasks = page.evaluate("window.__longTasks")
    dims = page.inner_text("#flow-dims")
    assert int(dims.split(" jurisdictions")[0]) >= 200, dims
    page.wait_for_function(
        "document.getElementById('ind-more').textContent.includes('more jurisdictions')", timeout=15_000
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-200-jurisdictions.png"))
    page.close()
    print(
        f"200 jurisdictions: matrix drawn in {render_ms:.0f} ms, frame answered in {answer_ms:.0f} ms, "
        f"longest task {max(long_tasks or [0]):.0f} ms"
    )
    assert render_ms < 500
    assert answer_ms < 1000
    assert max(long_tasks or [0]) < 1000


def _expected_verification_rate(dsn: str, division: str, start: dt.datetime, end: dt.datetime) -> float:
    """验证率 counted here from the exchange's raw rows, in Python: certificates of the division's
    in-migrants (issued by their origin) in force at some time in [start, end), and those a client
    of the division verified in it."""
    roster = {
        r["subject"]: r["hukou_division"]
        for r in query(dsn, "SELECT * FROM roster")
        if r["residence_division"] == division and r["hukou_division"] not in (None, division)
    }
    held = {
        c["certificate_number"]
        for c in query(dsn, "SELECT * FROM certificate_stats")
        if roster.get(c["subject"]) == c["issuer"]
        and c["issued_at"] is not None
        and c["issued_at"] < end
        and (c["revoked_at"] is None or c["revoked_at"] >= start)
        and c["valid_until"] >= start.date()
    }
    checked = {
        v["certificate_number"]
        for v in query(dsn, "SELECT * FROM verification_stats")
        if v["division"] == division and start <= v["verified_at"] < end
    }
    return round(len(held & checked) / len(held), 4)


def _verification_rate_matches_an_independent_count(stack: Stack, ops: Api, holder: str, number: str) -> None:
    """A kiosk at the destination checks the holder's certificate: the destination's rate is the
    one counted independently from the rows, and the check is in it."""
    dsn = stack.service("migrant_exchange").dsn
    verify_db = stack.service("verification").dsn
    wait_until(lambda: query(verify_db, "SELECT 1 FROM certificates WHERE number = $1", number), 10)
    kiosk = Api(stack, "verification", f"kiosk-{DESTINATION}")
    check = {"certificate_number": number, "holder_id_number": holder, "purpose": "arrival_registration"}
    assert kiosk.post("/v1/verifications", check).json()["result"] == "valid"
    wait_until(
        lambda: query(dsn, "SELECT 1 FROM verification_stats WHERE certificate_number = $1", number), 10
    )
    end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    start = end - dt.timedelta(hours=24)
    answer = ops.get(
        "/v1/indicators", jurisdiction=DESTINATION, **{"from": start.isoformat(), "to": end.isoformat()}
    ).json()["jurisdictions"][0]
    assert answer["certificates_verified"] >= 1
    assert answer["verification_rate"] == _expected_verification_rate(dsn, DESTINATION, start, end)


def test_indicators_and_flows_over_http(stack: Stack) -> None:
    """An issued certificate reaches the exchange's own projection and moves the issuance rate."""
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    ops = Api(stack, "migrant_exchange", "operator")
    before = ops.get("/v1/indicators", jurisdiction=ORIGIN).json()["jurisdictions"][0]
    who = person_id("F")
    r = origin.post(
        "/v1/persons",
        {
            "id_number": who,
            "name": "黄蓉",
            "sex": "F",
            "birth_date": f"{who[6:10]}-{who[10:12]}-{who[12:14]}",
            "hukou_division": ORIGIN,
            "residence_division": DESTINATION,
        },
    )
    assert r.status_code == 201, r.text
    issued_cert = origin.post("/v1/certificates", {"holder_id_number": who})
    assert issued_cert.status_code == 201, issued_cert.text

    subject = subject_key(who, stack.subject_secret.encode())
    number = issued_cert.json()["certificate_number"]
    exchange_db = stack.service("migrant_exchange").dsn

    def issued() -> dict[str, Any] | None:
        # Her own roster row and certificate first (other streams of the session may move the
        # counts meanwhile), then the indicators, which are read after them.
        mine = query(
            exchange_db, "SELECT 1 FROM roster WHERE subject = $1 AND hukou_division = $2", subject, ORIGIN
        )
        counted = query(exchange_db, "SELECT 1 FROM certificate_stats WHERE certificate_number = $1", number)
        if not (mine and counted):
            return None
        row = ops.get("/v1/indicators", jurisdiction=ORIGIN).json()["jurisdictions"][0]
        done = row["certificates_issued"] > before["certificates_issued"]
        return row if done and row["out_migrants"] > before["out_migrants"] else None

    row = wait_until(issued, timeout=10)
    assert row["certificate_issuance_rate"] is not None and row["certificate_issuance_rate"] > 0
    _verification_rate_matches_an_independent_count(stack, ops, who, number)

    flows = ops.get("/v1/flows", format="matrix").json()
    i, j = flows["divisions"].index(ORIGIN), flows["divisions"].index(DESTINATION)
    assert flows["matrix"][i][j] >= 1 and flows["total"] == sum(map(sum, flows["matrix"]))

    bad = ops.get("/v1/indicators", **{"from": "2026-05-02T00:00:00Z", "to": "2026-05-01T00:00:00Z"})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"][0]["field"] == "from"
    assert Api(stack, "migrant_exchange", f"reg-{DESTINATION}").get("/v1/flows").status_code == 403


def test_crossed_thresholds_raise_early_warnings_on_the_page(stack: Stack, browser: Any) -> None:
    """An overdue notification and a dead letter turn into readable warnings, then clear."""
    dsn = stack.service("migrant_exchange").dsn
    note_id = uuid.uuid4()
    query(
        dsn,
        """INSERT INTO notifications (id, target_division, source_division, subject, event_id, event_type,
                                      event_sequence, event_time, payload, state, deadline, created_at)
           VALUES ($1, $2, $3, $4, $5, 'birth.registered.v1', 1, now() - interval '2 hours', '{}'::jsonb,
                   'overdue', now() - interval '1 hour', now() - interval '2 hours')""",
        note_id,
        ORIGIN,
        DESTINATION,
        "0" * 32,
        uuid.uuid4(),
    )
    dead = query(
        dsn,
        """INSERT INTO dead_letters (consumer, topic, partition, "offset", value, reason)
           VALUES ('migrant-exchange-vital', 'vital.birth.v1', 0, 1, '\\x00'::bytea,
                   'invalid event: data.birth_order: too large') RETURNING id""",
    )[0]["id"]
    try:
        page = _open(browser, stack)
        # Both cases in one sample: one taken between the two inserts above shows only the first.
        page.wait_for_function(
            "document.querySelector('[data-testid=alerts]').textContent.includes('notifications overdue')"
            " && document.querySelector('[data-testid=alerts]').textContent.includes('dead letters waiting')",
            timeout=10_000,
        )
        alerts = page.get_by_test_id("alerts").inner_text()
        assert "ALERT" in alerts and "oldest 2.0 h" in alerts
        assert "WARNING" in alerts and "dead letters waiting" in alerts
        assert page.get_by_test_id("notifications-overdue").inner_text() != "0"
        assert f'data-href="/v1/dead-letters/{dead}"' in page.inner_html("[data-testid=cases]")
        # The link opens the case with the operator's token, on the page.
        page.click(f"button[data-href='/v1/dead-letters/{dead}']")
        page.wait_for_selector("#detail[open]", timeout=5_000)
        detail = page.inner_text("#detail-body")
        assert "vital.birth.v1" in detail and "birth_order" in detail and "value" not in detail
        page.screenshot(path=str(ARTIFACTS / "dashboard-alerts.png"))
    finally:
        query(dsn, "DELETE FROM notifications WHERE id = $1", note_id)
        query(dsn, "DELETE FROM dead_letters WHERE id = $1", dead)
    # Cleared: our two cases leave the page (other tests' cases may stay, so not "no alerts" as such).
    page.wait_for_function(
        f"!document.querySelector('[data-testid=cases]').innerHTML.includes('/v1/dead-letters/{dead}\"')"
        " && !document.querySelector('[data-testid=alerts]').textContent.includes('oldest 2.0 h')",
        timeout=10_000,
    )
    page.close()
