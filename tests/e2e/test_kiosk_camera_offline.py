"""The kiosk at a real counter: a webcam, and a network that goes away.

Debian's Chromium (Playwright) runs with a fake camera that plays a Y4M video the test makes
from a real registry certificate's QR code; the page decodes it with the vendored jsQR and shows
the verdict. Then the browser context goes offline: the page verifies in the browser (WebCrypto
Ed25519, the signed IETF status list it keeps), refuses once the list is past its maximum age,
and reports the checks it made for the audit log when the network is back.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from devstack.stack import DESTINATION, ORIGIN, Stack
from services.verification.domain import status_list as tsl
from shared import signing
from tests.e2e.conftest import ARGS, CHROMIUM
from tests.helpers import Api, person_id, wait_until
from tests.helpers import query as _query_here

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WIDTH, HEIGHT = 640, 480


def query(dsn: str, sql: str, *args: Any) -> list[Any]:
    """helpers.query on a thread of its own: Playwright's sync API keeps an event loop on this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_query_here, dsn, sql, *args).result()


def write_y4m(path: Path, text: str, frames: int = 3) -> None:
    """A still video (YUV 4:2:0) of the QR code of ``text`` on a white card, as a webcam sees it."""
    import numpy as np
    import segno
    from PIL import Image

    png = io.BytesIO()
    qr = segno.make(text, error="m", micro=False)
    modules = qr.symbol_size(scale=1, border=4)[0]
    qr.save(png, kind="png", scale=max(2, (HEIGHT - 40) // modules), border=4)
    code = Image.open(io.BytesIO(png.getvalue())).convert("L")
    card = Image.new("L", (WIDTH, HEIGHT), 235)
    card.paste(code, ((WIDTH - code.width) // 2, (HEIGHT - code.height) // 2))
    luma = np.asarray(card, dtype=np.uint8).tobytes()
    chroma = bytes([128]) * ((WIDTH // 2) * (HEIGHT // 2))
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n" + luma + chroma + chroma)


@dataclass
class Certs:
    valid: dict[str, Any]
    revoked: dict[str, Any]
    late: dict[str, Any]  # in force when a page first loads; the offline test revokes it
    tampered: str
    kiosk_token: str


def _issue(origin: Api, name: str, here: str = ORIGIN) -> dict[str, Any]:
    holder = person_id("F")
    born = f"{holder[6:10]}-{holder[10:12]}-{holder[12:14]}"
    body = {"id_number": holder, "name": name, "sex": "F", "birth_date": born, "hukou_division": here}
    assert origin.post("/v1/persons", body).status_code == 201
    r = origin.post("/v1/certificates", {"holder_id_number": holder})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _tamper(token: str) -> str:
    """The same signature over a payload that now claims three children."""
    h, p, s = token.split(".")
    claims = json.loads(signing.b64u_decode(p))
    claims["ch"] = 3
    return f"{h}.{signing.b64u(json.dumps(claims, ensure_ascii=False).encode())}.{s}"


@pytest.fixture(scope="module")
def certs(stack: Stack) -> Certs:
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    kiosk = Api(stack, "verification", f"kiosk-{DESTINATION}")
    valid, revoked, late = _issue(origin, "周晓梅"), _issue(origin, "李娜"), _issue(origin, "王芳")
    r = origin.post(f"/v1/certificates/{revoked['certificate_number']}/revocation", {"reason": "replaced"})
    assert r.is_success, r.text

    def result(token: str) -> str:
        r = kiosk.post("/v1/verifications/token", {"token": token, "purpose": "benefits"})
        return str(r.json().get("result")) if r.status_code == 200 else ""

    wait_until(lambda: result(valid["token"]) == "valid" and result(revoked["token"]) == "revoked", 20)
    return Certs(valid, revoked, late, _tamper(valid["token"]), stack.token(f"kiosk-{DESTINATION}"))


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Browser, Path]]:
    """One Chromium whose camera plays ``video``; a test rewrites the file before opening a page."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: run `make browser`")
    video = tmp_path_factory.mktemp("camera") / "qr.y4m"
    write_y4m(video, "not a certificate")
    flags = [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS + flags)
        yield b, video
        b.close()


def _kiosk(browser: Browser, stack: Stack, bearer: str) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(stack.service("verification").url + "/kiosk")
    page.evaluate("t => sessionStorage.setItem('kioskToken', t)", bearer)
    page.reload()
    page.evaluate("kiosk.ready")
    return page


def test_the_camera_reads_a_certificate_and_the_page_answers(
    stack: Stack, certs: Certs, camera: tuple[Browser, Path]
) -> None:
    from playwright.sync_api import expect

    browser, video = camera
    ARTIFACTS.mkdir(exist_ok=True)
    cases = [
        (certs.valid["token"], "VALID 有效", "valid"),
        (certs.revoked["token"], "REVOKED 已撤销", "revoked"),
        (certs.tampered, "NOT GENUINE 签名无效", "tampered"),
    ]
    for token, verdict, name in cases:
        write_y4m(video, token)
        page = _kiosk(browser, stack, certs.kiosk_token)
        page.locator("input[value=camera]").check()
        expect(page.locator("#verdict")).to_have_text(verdict, timeout=20_000)
        assert page.locator("#token").input_value() == token  # decoded from the video, in the page
        assert page.evaluate("document.getElementById('camera').videoWidth") == WIDTH
        if name == "valid":
            expect(page.locator("#details")).to_contain_text("周晓梅")
        else:
            expect(page.locator("#details")).not_to_contain_text("周晓梅")
        page.screenshot(path=str(ARTIFACTS / f"kiosk-camera-{name}.png"))
        page.context.close()


def test_a_status_list_swapped_on_the_way_is_not_kept(
    stack: Stack, certs: Certs, camera: tuple[Browser, Path]
) -> None:
    """Nobody trusts the network: something between the kiosk and the service (a shared cache, a
    connection without TLS) answers the origin's status list with another issuer's. Both are signed
    by the service's one status-list key, so only the list's own signed ``jurisdiction`` tells them
    apart. The page keeps no list for the origin then, and a certificate the origin revoked is not
    checked offline, instead of answered valid by another issuer's bits."""
    browser, _ = camera
    service = stack.service("verification").url
    destination = Api(stack, f"registry-{DESTINATION}", f"reg-{DESTINATION}")
    _issue(destination, "赵丽", DESTINATION)  # so another issuer has a status list

    def other_list() -> httpx.Response | None:
        r = httpx.get(f"{service}/v1/status-lists/{DESTINATION}", headers={"Accept": tsl.MEDIA_TYPE})
        return r if r.status_code == 200 else None

    other = wait_until(other_list, timeout=20)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.route(
        f"**/v1/status-lists/{ORIGIN}",
        lambda route: route.fulfill(status=200, body=other.text, headers={"Content-Type": tsl.MEDIA_TYPE}),
    )
    page.goto(service + "/kiosk")
    page.evaluate("t => sessionStorage.setItem('kioskToken', t)", certs.kiosk_token)
    page.reload()
    page.evaluate("kiosk.ready")
    try:
        assert ORIGIN not in page.evaluate("Offline.summary()")["issuers"]
        verdict = page.evaluate("t => Offline.verify(t, 'benefits')", certs.revoked["token"])
        assert verdict["result"] == "status_unknown", verdict
    finally:
        context.close()


def test_offline_the_page_verifies_refuses_a_stale_list_and_reports_when_back(
    stack: Stack, certs: Certs, camera: tuple[Browser, Path]
) -> None:
    from playwright.sync_api import expect

    browser, _ = camera
    dsn = stack.service("verification").dsn
    page = _kiosk(browser, stack, certs.kiosk_token)
    page.clock.install()  # the page's clock, moved forward below to age the status list
    held = page.evaluate("Offline.summary()")
    assert ORIGIN in held["issuers"] and held["oldestAge"] < 120 and held["maxAge"] == 86_400
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")

    # Revoked after the page fetched its lists: the next refresh (on schedule, or the clerk's
    # button) brings it.
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    late = f"/v1/certificates/{certs.late['certificate_number']}/revocation"
    assert origin.post(late, {"reason": "replaced"}).is_success
    status_lists = f"{stack.service('verification').url}/v1/status-lists/{ORIGIN}"

    def late_revoked_there() -> str | None:
        r = httpx.get(status_lists, headers={"Accept": tsl.MEDIA_TYPE})
        bits = tsl.decode(json.loads(signing.b64u_decode(r.text.split(".")[1]))["status_list"]["lst"])
        return r.text.strip() if tsl.status_of(bits, certs.late["status_index"]) else None

    revoked_list = wait_until(late_revoked_there, timeout=20, interval=0.2)
    page.locator("#refresh").click()
    # Until the page holds a list of the origin issued no earlier than the one with the revocation
    # (a list's age alone would not tell: one fetched at load, seconds before, is young too).
    issued = json.loads(signing.b64u_decode(revoked_list.split(".")[1]))["iat"]
    page.wait_for_function(
        """([issuer, iat]) => {
             const held = (JSON.parse(localStorage.getItem("kioskTrust")) || {lists: {}}).lists[issuer];
             return !!held && JSON.parse(atob(held.jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).iat >= iat;
           }""",
        arg=[ORIGIN, issued],
        timeout=10_000,
    )

    page.context.set_offline(True)
    page.reload()  # the installed web app opens with no network (service worker)
    expect(page.locator("#net")).to_contain_text("OFFLINE")
    page.locator("input[value=token]").check()

    def scan(token: str) -> None:
        page.keyboard.press("Escape")
        page.locator("#token").fill(token)
        page.keyboard.press("Enter")

    scan(certs.valid["token"])
    expect(page.locator("#verdict")).to_have_text("VALID 有效")
    expect(page.locator("#answer")).to_have_attribute("data-offline", "yes")
    expect(page.locator("#details")).to_contain_text("周晓梅")
    page.screenshot(path=str(ARTIFACTS / "kiosk-offline-valid.png"))
    scan(certs.revoked["token"])  # revoked before the page's last refresh
    expect(page.locator("#verdict")).to_have_text("REVOKED 已撤销")
    page.screenshot(path=str(ARTIFACTS / "kiosk-offline-revoked.png"))
    scan(certs.late["token"])  # revoked before the last refresh
    expect(page.locator("#verdict")).to_have_text("REVOKED 已撤销")
    scan(certs.tampered)
    expect(page.locator("#verdict")).to_have_text("NOT GENUINE 签名无效")

    page.clock.set_system_time(dt.datetime.now(dt.UTC) + dt.timedelta(hours=25))
    scan(certs.valid["token"])
    expect(page.locator("#verdict")).to_have_text("NOT CHECKED 未核验")
    expect(page.locator("#verdict-sub")).to_contain_text("older than its maximum age of 24 h")
    page.screenshot(path=str(ARTIFACTS / "kiosk-offline-stale.png"))
    assert page.evaluate("Offline.queued()") == 5

    subjects = [_sub(certs.valid["token"]), _sub(certs.revoked["token"]), _sub(certs.late["token"])]
    page.clock.set_system_time(dt.datetime.now(dt.UTC))
    page.context.set_offline(False)  # the page hears "online", refreshes and reports

    def reported() -> list[Any]:
        rows = query(
            dsn,
            """SELECT subject, detail FROM audit_log WHERE client_id = $1 AND detail->>'via' = 'offline'
               UNION ALL
               SELECT subject, detail FROM audit_pending WHERE client_id = $1 AND detail->>'via' = 'offline'""",
            f"kiosk-{DESTINATION}",
        )
        return [r for r in rows if r["subject"] in subjects or not json.loads(r["detail"])["genuine"]]

    rows = wait_until(lambda: len(reported()) >= 5 and reported(), timeout=20, interval=0.2)
    seen = sorted((r["subject"] or "-", json.loads(r["detail"])["result"]) for r in rows)
    assert seen == sorted(
        [
            (subjects[0], "valid"),
            (subjects[1], "revoked"),
            (subjects[2], "revoked"),
            ("-", "invalid_signature"),  # a tampered token is recorded without a subject
            (subjects[0], "status_unknown"),
        ]
    )
    wait_until(lambda: page.evaluate("Offline.queued()") == 0, timeout=10)
    expect(page.locator("#net")).to_contain_text("ONLINE")
    page.context.close()


def _sub(token: str) -> str:
    return str(json.loads(signing.b64u_decode(token.split(".")[1]))["sub"])
