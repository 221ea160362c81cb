"""Standard status lists and the printed certificate, read by software none of us wrote.

* The IETF Token Status List the verification service serves (``Accept:
  application/statuslist+jwt``) is read by the OpenWallet Foundation's
  ``@sd-jwt/jwt-status-list`` (npm, run with node; Node's own Ed25519 checks the signature) and
  must agree with the planted revocations on every index of the list.
* A registry certificate carries the standard ``status.status_list`` reference, and its ``uri``
  is where that list is served.
* The printed A5 PDF is rendered by poppler's ``pdftoppm``, its QR code decoded by zxing-cpp,
  and the token verified by the verification service.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import DESTINATION, ORIGIN, Stack
from services.verification.domain import status_list as tsl
from shared import signing
from tests.helpers import Api, person_id, wait_until
from tests.stacks_ahead import StackSpec, stack_fixture
from tests.verification_kit import VerificationStack

pytestmark = pytest.mark.e2e
JS = Path(__file__).resolve().parents[1] / "js"
# Indices that tell the bit order apart (0, 1, 7, 8), byte and list edges, and one past the
# minimum size so the list has to grow.
PLANTED = [0, 1, 7, 8, 9, 255, 1000, 4095, 65_536, 131_071, 131_077]
PLANTED_ISSUER = "110105"


def _claims(jws: str) -> dict[str, Any]:
    """The payload of a compact JWS, unchecked (the checks are the tests' business)."""
    return json.loads(signing.b64u_decode(jws.split(".")[1]))  # type: ignore[no-any-return]


def _read_with_npm(list_jwt: str, jwk: dict[str, Any], certificates: list[str]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "@sd-jwt" / "jwt-status-list").exists():
        pytest.fail("node or tests/js/node_modules is missing: run `make node-tools`")
    done = subprocess.run(
        [node, str(JS / "read_status_list.cjs")],
        input=json.dumps({"list": list_jwt, "jwk": jwk, "certificates": certificates}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _status_key(base: str) -> dict[str, Any]:
    keys = httpx.get(base + "/v1/keys").json()["keys"]
    return next(k for k in keys if k.get("purpose") == "status-list")


def _token_list(url: str) -> httpx.Response:
    return httpx.get(url, headers={"Accept": tsl.MEDIA_TYPE})


# A verification service whose trust list names the planted issuer: its events are signed with
# that division's key, as every event must be.
planted = stack_fixture(
    "planted",
    StackSpec("planted", db_prefix="planted_", registries=(PLANTED_ISSUER,), kind=VerificationStack),
)


def test_an_independent_reader_agrees_with_planted_revocations_on_every_index(
    planted: VerificationStack,
) -> None:
    base = planted.url
    issuer = planted.issuer(PLANTED_ISSUER)
    try:
        for index in PLANTED:
            issuer.next_index = index
            issuer.revoke(issuer.issue(person_id("F")))
        issuer.next_index = 3  # issued and in force: must read 0
        issuer.issue(person_id("M"))
    finally:
        issuer.close()
    url = f"{base}/v1/status-lists/{PLANTED_ISSUER}"

    def planted_seen() -> bool:
        r = _token_list(url)
        if r.status_code != 200:
            return False
        bits = tsl.decode(_claims(r.text)["status_list"]["lst"])
        # a list published before the planted events were consumed is shorter: not seen yet
        return all(i // 8 < len(bits) and tsl.status_of(bits, i) for i in PLANTED)

    wait_until(planted_seen, timeout=20, interval=0.2)
    r = _token_list(url)
    assert r.headers["content-type"].startswith(tsl.MEDIA_TYPE)
    assert "accept" in r.headers["vary"].lower()
    read = _read_with_npm(r.text, _status_key(base), [])
    assert read["typ"] == "statuslist+jwt" and read["signature_ok"] is True
    assert read["sub"] == url
    assert read["size"] >= tsl.MIN_ENTRIES and read["size"] > max(PLANTED)
    revoked_there = {i for i, s in enumerate(read["statuses"]) if s == "1"}
    assert revoked_there == set(PLANTED)  # every index agrees: these set, all others clear
    assert read["exp"] > read["iat"]

    # The signature is over these bytes: one flipped bit of the list and Node refuses it.
    h, p, s = r.text.split(".")
    claims = json.loads(signing.b64u_decode(p))
    claims["status_list"]["lst"] = tsl.encode([2])
    forged = f"{h}.{signing.b64u(json.dumps(claims).encode())}.{s}"
    assert _read_with_npm(forged, _status_key(base), [])["signature_ok"] is False

    # The transition form stays the default.
    legacy = httpx.get(url)
    assert legacy.headers["content-type"].startswith("application/json")
    assert legacy.json()["credential"]["type"][-1] == "BitstringStatusListCredential"


def _registered(origin: Api, name: str) -> str:
    holder = person_id("F")
    born = f"{holder[6:10]}-{holder[10:12]}-{holder[12:14]}"
    body = {"id_number": holder, "name": name, "sex": "F", "birth_date": born, "hukou_division": ORIGIN}
    assert origin.post("/v1/persons", body).status_code == 201
    return holder


def test_registry_certificates_reference_the_standard_list_and_it_says_revoked(stack: Stack) -> None:
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    kept = origin.post("/v1/certificates", {"holder_id_number": _registered(origin, "陈静")}).json()
    gone = origin.post("/v1/certificates", {"holder_id_number": _registered(origin, "王芳")}).json()
    r = origin.post(f"/v1/certificates/{gone['certificate_number']}/revocation", {"reason": "replaced"})
    assert r.is_success, r.text
    uri = _claims(gone["token"])["status"]["status_list"]["uri"]

    def revoked_seen() -> bool:
        r = _token_list(uri)
        if r.status_code != 200:
            return False
        bits = tsl.decode(_claims(r.text)["status_list"]["lst"])
        return bool(tsl.status_of(bits, gone["status_index"]))

    wait_until(revoked_seen, timeout=20, interval=0.2)
    base = stack.service("verification").url
    read = _read_with_npm(_token_list(uri).text, _status_key(base), [kept["token"], gone["token"]])
    refs = read["references"]
    assert refs[0] == {"idx": kept["status_index"], "uri": uri} and refs[1]["idx"] == gone["status_index"]
    assert read["sub"] == uri == f"{base}/v1/status-lists/{ORIGIN}"
    assert read["statuses"][gone["status_index"]] == "1" and read["statuses"][kept["status_index"]] == "0"


def test_the_printed_certificate_scans_back_to_a_token_that_verifies(stack: Stack, tmp_path: Path) -> None:
    zxingcpp = pytest.importorskip("zxingcpp")
    from PIL import Image

    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        pytest.fail("pdftoppm is missing: run `make poppler`")
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    holder = _registered(origin, "周晓梅")
    cert = origin.post("/v1/certificates", {"holder_id_number": holder}).json()
    r = origin.get(f"/v1/certificates/{cert['certificate_number']}/document")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf" and r.content.startswith(b"%PDF")
    pdf = tmp_path / "certificate.pdf"
    pdf.write_bytes(r.content)

    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    size = next(line for line in info.splitlines() if line.startswith("Page size:"))
    width, height = (float(v) for v in size.split(":")[1].split("pts")[0].split(" x "))
    assert (round(width), round(height)) == (420, 595)  # A5 in points
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert "NotoSansSC" in fonts and " yes " in fonts  # the CJK font is embedded

    subprocess.run(
        [pdftoppm, "-r", "150", "-png", "-singlefile", str(pdf), str(tmp_path / "page")], check=True
    )
    image = Image.open(tmp_path / "page.png")
    codes = zxingcpp.read_barcodes(image)
    assert len(codes) == 1 and codes[0].format == zxingcpp.BarcodeFormat.QRCode
    scanned = codes[0].text
    assert scanned == cert["token"]

    kiosk = Api(stack, "verification", f"kiosk-{DESTINATION}")
    answer = kiosk.post(
        "/v1/verifications/token", {"token": scanned, "purpose": "benefits", "holder_id_number": holder}
    ).json()
    assert answer["result"] == "valid" and answer["attributes"]["holder_name"] == "周晓梅"

    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "婚育证明" in text and "周晓梅" in text and cert["certificate_number"] in text
    assert "江苏省武进区" in text  # the issuer by name (GB/T 2260 via python-stdnum)
    assert holder not in text and holder[-4:] in text  # the identity number only masked
