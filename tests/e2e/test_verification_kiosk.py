"""The reference kiosk page in headless Debian Chromium (Playwright, no browser download)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers import person_id, wait_until
from tests.stacks_ahead import StackSpec, stack_fixture
from tests.verification_kit import IssuedCertificate, JwksServer, LazyJwks, VerificationStack

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


KEYS = LazyJwks()


@pytest.fixture(scope="module")
def kiosk_jwks() -> Iterator[JwksServer]:
    yield from KEYS.serving()


kiosk_stack = stack_fixture(
    "kiosk_stack",
    StackSpec(
        "vfk_",
        db_prefix="vfk_",
        kind=VerificationStack,
        files=lambda _: {"registry_key_urls": f"320412={KEYS.server.url('320412')}"},
    ),
)


@pytest.fixture(scope="module")
def certs(kiosk_stack: VerificationStack, kiosk_jwks: JwksServer) -> Iterator[dict[str, IssuedCertificate]]:
    issuer = kiosk_stack.issuer("320412")
    kiosk_jwks.issuers["320412"] = issuer
    made = {
        "valid": issuer.issue(person_id("F"), "周晓梅", children=2),
        "revoked": issuer.issue(person_id("M")),
        "expired": issuer.issue(
            person_id("F"), "王芳", issued_on=dt.date.today() - dt.timedelta(days=200), valid_days=30
        ),
    }
    issuer.revoke(made["revoked"])
    token = kiosk_stack.add_client("kiosk-browser")
    with kiosk_stack.http(token) as http:

        def result(c: IssuedCertificate) -> str:
            body = {
                "certificate_number": c.number,
                "holder_id_number": c.holder_id_number,
                "purpose": "benefits",
            }
            r = http.post("/v1/verifications", json=body)
            return str(r.json().get("result")) if r.status_code == 200 else ""

        wait_until(
            lambda: (
                result(made["valid"]) == "valid"
                and result(made["revoked"]) == "revoked"
                and result(made["expired"]) == "expired"
            ),
            timeout=10,
        )
    made["_token"] = token  # type: ignore[assignment]
    yield made
    issuer.close()


@pytest.fixture
def page(kiosk_stack: VerificationStack, browser: Browser) -> Iterator[Page]:
    """The kiosk page in a 1280x800 window of its own, closed after the test."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(kiosk_stack.url + "/kiosk")
    yield page
    page.close()


def test_a_clerk_checks_a_certificate_with_the_keyboard_alone(
    certs: dict[str, IssuedCertificate], page: Page
) -> None:
    from playwright.sync_api import expect

    cert, token = certs["valid"], str(certs["_token"])
    verdict = page.locator("#verdict")
    expect(page.locator("#certificate_number")).to_be_focused()

    # Number, Tab, identity number, Tab past purpose and button and the credential's summary, token, Enter.
    page.keyboard.type(cert.number)
    page.keyboard.press("Tab")
    page.keyboard.type(cert.holder_id_number.lower())  # a lower-case x is accepted
    for _ in range(4):
        page.keyboard.press("Tab")
    expect(page.locator("#kiosk_token")).to_be_focused()
    page.keyboard.type(token)
    page.keyboard.press("Enter")
    expect(verdict).to_have_text("VALID 有效")
    expect(page.locator("#details")).to_contain_text("周晓梅")
    expect(page.locator("#details")).to_contain_text("2")
    box = verdict.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 800 and box["height"] >= 60  # large, on screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280

    # Escape clears and puts the cursor back; the credential stays for the session.
    page.keyboard.press("Escape")
    expect(page.locator("#certificate_number")).to_be_focused()
    expect(page.locator("#certificate_number")).to_have_value("")
    page.keyboard.type(cert.number)
    page.keyboard.press("Tab")
    page.keyboard.type(person_id("M"))
    page.keyboard.press("Enter")
    expect(verdict).to_have_text("NOT THIS PERSON 持证人不符")
    expect(page.locator("#details")).not_to_contain_text("周晓梅")  # nothing of a stranger's certificate
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "kiosk-holder-mismatch.png"))

    for number, holder, title, shot in [
        (certs["expired"].number, certs["expired"].holder_id_number, "EXPIRED 已过期", "expired"),
        ("320412-2026-NOSUCHNO", cert.holder_id_number, "NOT FOUND 未找到", "not-found"),
    ]:
        page.keyboard.press("Escape")
        page.keyboard.type(number)
        page.keyboard.press("Tab")
        page.keyboard.type(holder)
        page.keyboard.press("Enter")
        expect(verdict).to_have_text(title)
        page.screenshot(path=str(ARTIFACTS / f"kiosk-{shot}.png"))

    page.reload()
    expect(page.locator("#kiosk_token")).to_have_value(token)


def test_a_scanned_qr_code_is_checked_and_a_revoked_one_refused(
    certs: dict[str, IssuedCertificate], page: Page
) -> None:
    from playwright.sync_api import expect

    page.evaluate("t => sessionStorage.setItem('kioskToken', t)", str(certs["_token"]))
    page.reload()
    page.locator("input[value=token]").check()
    expect(page.locator("#token")).to_be_focused()
    page.keyboard.type(certs["revoked"].token)
    page.keyboard.press("Enter")  # a scanner ends with Enter
    expect(page.locator("#verdict")).to_have_text("REVOKED 已撤销")

    page.keyboard.press("Escape")
    tampered = certs["valid"].token[:-6] + (
        "AAAAAA" if not certs["valid"].token.endswith("AAAAAA") else "BBBBBB"
    )
    page.keyboard.type(tampered)
    page.keyboard.press("Enter")
    expect(page.locator("#verdict")).to_have_text("NOT GENUINE 签名无效")

    page.evaluate("sessionStorage.setItem('kioskToken', 'kiosk-nobody.wrong')")
    page.reload()
    page.locator("#certificate_number").fill(certs["valid"].number)
    page.locator("#holder_id_number").fill(certs["valid"].holder_id_number)
    page.keyboard.press("Enter")
    expect(page.locator("#verdict")).to_have_text("KIOSK NOT AUTHORISED 终端未授权")
