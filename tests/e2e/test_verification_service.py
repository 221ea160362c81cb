"""The verification service as a process on its own broker, fed by registry-like issuers over Kafka.

Both issuers publish their keys through a JWKS URL bound to them (as registries do) and sign
their events with their keys in the stack's trust list; certificate events never teach a key.
Everything goes over real HTTP, the real broker and real PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.embedded import env_with
from shared import signing
from shared.events import payloads as p
from shared.events.envelope import new_event_id
from shared.identity import subject_key
from shared.offline_verifier import BadToken, OfflineVerifier
from tests.helpers import person_id, query, tamper, wait_until
from tests.stacks_ahead import StackSpec, stack_fixture
from tests.verification_kit import FakeIssuer, JwksServer, LazyJwks, VerificationStack

pytestmark = pytest.mark.e2e
JWKS_ISSUER, EVENT_ISSUER = "320412", "440703"
_clients = itertools.count(1)


KEYS = LazyJwks()


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JwksServer]:
    yield from KEYS.serving()


vstack = stack_fixture(
    "vstack",
    StackSpec(
        "vfs_",
        db_prefix="vfs_",
        kind=VerificationStack,
        extra_env={"key_refresh_seconds": "0.3", "rate_limit_per_minute": "600", "rate_limit_burst": "30"},
        files=lambda _: {
            "registry_key_urls": ",".join(f"{j}={KEYS.server.url(j)}" for j in (JWKS_ISSUER, EVENT_ISSUER))
        },
    ),
)


@pytest.fixture(scope="module")
def issuers(vstack: VerificationStack, jwks_server: JwksServer) -> Iterator[dict[str, FakeIssuer]]:
    made = {j: vstack.issuer(j) for j in (JWKS_ISSUER, EVENT_ISSUER)}
    jwks_server.issuers.update(made)
    yield made
    for issuer in made.values():
        issuer.close()


@pytest.fixture
def kiosk(vstack: VerificationStack) -> Iterator[httpx.Client]:
    """A kiosk client of the test's own, so rate limits of one test never touch another."""
    with vstack.http(vstack.add_client(f"kiosk-t{next(_clients)}")) as client:
        wait_until(lambda: client.post("/v1/verifications", json={}).status_code != 401, timeout=15)
        yield client


def issue(issuers: dict[str, FakeIssuer], jurisdiction: str = EVENT_ISSUER, **kw: Any):  # type: ignore[no-untyped-def]
    return issuers[jurisdiction].issue(person_id("F"), **kw)


def check(client: httpx.Client, number: str, holder: str, purpose: str = "arrival_registration") -> dict:
    r = client.post(
        "/v1/verifications",
        json={"certificate_number": number, "holder_id_number": holder, "purpose": purpose},
    )
    assert r.status_code == 200, r.text
    return r.json()


def check_token(client: httpx.Client, token: str, purpose: str = "arrival_registration", **kw: str) -> dict:
    r = client.post("/v1/verifications/token", json={"token": token, "purpose": purpose, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def until(client: httpx.Client, number: str, holder: str, result: str) -> dict:
    return wait_until(lambda: (v := check(client, number, holder))["result"] == result and v, timeout=5)


# --- each result --------------------------------------------------------------------------------
def test_each_result_of_an_online_verification(kiosk: httpx.Client, issuers: dict[str, FakeIssuer]) -> None:
    valid = issue(issuers, name="王芳")
    expired = issue(issuers, issued_on=dt.date.today() - dt.timedelta(days=200), valid_days=180)
    revoked = issue(issuers)
    issuers[EVENT_ISSUER].revoke(revoked)

    answer = until(kiosk, valid.number, valid.holder_id_number, "valid")
    assert answer["issuer"] == EVENT_ISSUER and answer["attributes"]["holder_name"] == "王芳"
    assert until(kiosk, expired.number, expired.holder_id_number, "expired")["issuer"] == EVENT_ISSUER
    assert until(kiosk, revoked.number, revoked.holder_id_number, "revoked")["issuer"] == EVENT_ISSUER

    stranger = check(kiosk, valid.number, person_id("M"))
    assert stranger["result"] == "holder_mismatch" and stranger["attributes"] == {}
    missing = check(kiosk, f"{EVENT_ISSUER}-2026-NOSUCH00", valid.holder_id_number)
    assert missing == missing | {"result": "not_found", "issuer": None, "attributes": {}}


@pytest.mark.parametrize(
    ("purpose", "shown"),
    [
        ("arrival_registration", {"holder_name", "marital_status", "children_count"}),
        ("maternal_care_services", {"holder_name", "children_count"}),
        ("benefits", {"holder_name", "marital_status", "children_count", "valid_until"}),
        ("identity_check", set()),
    ],
)
def test_each_purpose_discloses_only_its_fields(
    kiosk: httpx.Client, issuers: dict[str, FakeIssuer], purpose: str, shown: set[str]
) -> None:
    cert = issue(issuers, children=2)
    until(kiosk, cert.number, cert.holder_id_number, "valid")
    answer = check(kiosk, cert.number, cert.holder_id_number, purpose)
    assert set(answer["attributes"]) == shown
    never = {
        "pregnancies",
        "pregnancy",
        "children_birth_dates",
        "holder_id_number",
        "holder_subject",
        "token",
    }
    all_fields = {"holder_name", "marital_status", "children_count", "valid_until"}
    assert not (set(answer["attributes"]) & (never | (all_fields - shown)))
    assert not (set(answer) & never)
    assert cert.holder_id_number not in str(answer) and "pregnan" not in str(answer).lower()
    by_token = check_token(kiosk, cert.token, purpose)
    assert set(by_token["attributes"]) == shown


def test_bad_input_is_a_problem_naming_the_field(kiosk: httpx.Client) -> None:
    bad_id = "11010119900307123X"
    r = kiosk.post(
        "/v1/verifications",
        json={"certificate_number": "x", "holder_id_number": bad_id, "purpose": "arrival_registration"},
    )
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in r.json()["errors"]] == ["holder_id_number"]
    assert bad_id not in r.text
    r = kiosk.post(
        "/v1/verifications",
        json={"certificate_number": "x", "holder_id_number": person_id(), "purpose": "pregnancy_review"},
    )
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["purpose"]
    # The hot path parses its body itself: broken JSON and unknown fields get the same problems.
    r = kiosk.post(
        "/v1/verifications", content=b'{"certificate_number": ', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["errors"][0] == r.json()["errors"][0] | {
        "field": "body",
        "rule": "json_invalid",
    }
    r = kiosk.post(
        "/v1/verifications",
        json={"certificate_number": "x", "holder_id_number": person_id(), "purpose": "benefits", "name": "x"},
    )
    assert r.status_code == 422 and [(e["field"], e["rule"]) for e in r.json()["errors"]] == [
        ("name", "extra_forbidden")
    ]
    r = kiosk.post("/v1/verifications/token", json={"token": "not-a-jws-at-all", "purpose": "benefits"})
    assert r.status_code == 422 and r.json()["errors"][0] == r.json()["errors"][0] | {
        "field": "token",
        "rule": "compact-jws",
    }


def test_callers_need_a_credential_and_the_verify_scope(vstack: VerificationStack) -> None:
    body = {"certificate_number": "x", "holder_id_number": person_id(), "purpose": "benefits"}
    assert httpx.post(vstack.url + "/v1/verifications", json=body).status_code == 401
    with vstack.http(vstack.add_client(f"operator-t{next(_clients)}", "operator")) as operator:
        # the service learns of the new client through the database's notification (a client
        # that never came was revoked by the service's own sync of the file it read before the
        # client was added: tests/integration/test_client_lifecycle.py)
        r = wait_until(
            lambda: (x := operator.post("/v1/verifications", json=body)).status_code != 401 and x, timeout=15
        )
        assert r.status_code == 403 and r.json()["errors"][0]["rule"] == "scope"


# --- tokens -------------------------------------------------------------------------------------
def _tampered_claims(token: str, **changes: Any) -> str:
    header, payload, sig = token.split(".")
    import orjson

    claims = orjson.loads(signing.b64u_decode(payload)) | changes
    return f"{header}.{signing.b64u(orjson.dumps(claims, option=orjson.OPT_SORT_KEYS))}.{sig}"


def test_a_tampered_token_is_not_genuine(kiosk: httpx.Client, issuers: dict[str, FakeIssuer]) -> None:
    cert = issue(issuers, name="赵敏", marital_status="married")
    until(kiosk, cert.number, cert.holder_id_number, "valid")
    genuine = check_token(kiosk, cert.token, holder_id_number=cert.holder_id_number)
    assert genuine["result"] == "valid" and genuine["attributes"]["holder_name"] == "赵敏"

    header, payload, sig = cert.token.split(".")
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    forged_key = signing.new_private_key()
    foreign = signing.sign({"iss": EVENT_ISSUER, "num": cert.number, "sti": 0}, forged_key, cert.key_id)
    for token in (
        _tampered_claims(cert.token, ms="unmarried"),
        _tampered_claims(cert.token, exp="2099-12-31"),
        f"{header}.{payload}.{flipped}",
        foreign,  # signed by another key under the issuer's kid
        signing.sign({"iss": EVENT_ISSUER}, forged_key, "no-such-kid"),
    ):
        answer = check_token(kiosk, token)
        assert answer["result"] == "invalid_signature" and answer["attributes"] == {}, token
    other = check_token(kiosk, cert.token, holder_id_number=person_id("M"))
    assert other["result"] == "holder_mismatch" and other["attributes"] == {}


def test_a_genuinely_signed_token_that_is_no_certificate_is_answered_not_genuine(
    kiosk: httpx.Client, vstack: VerificationStack, issuers: dict[str, FakeIssuer]
) -> None:
    """A token signed by an issuer's published key whose claims are not a certificate's as
    registries issue them (an issuer's bug, or a key used for something else) is answered like a
    forgery, never a 500: nothing it says can be checked against a certificate."""
    cert = issue(issuers)
    until(kiosk, cert.number, cert.holder_id_number, "valid")  # the issuer's key is known
    issuer = issuers[EVENT_ISSUER]
    offline = _offline(vstack, EVENT_ISSUER)  # a kiosk's own verifier judges it the same
    claims = {"iss": EVENT_ISSUER, "num": cert.number, "sub": cert.subject, "exp": "2099-12-31", "sti": 0}
    for broken in (
        {**claims, "sti": "x"},
        {k: v for k, v in claims.items() if k != "exp"},
        {**claims, "exp": "not a date"},
        {**claims, "exp": 20991231},
        {**claims, "num": ["a", "list"]},
        {**claims, "sti": -1},
    ):
        token = signing.sign(broken, issuer.active.private, issuer.active.kid)
        r = kiosk.post("/v1/verifications/token", json={"token": token, "purpose": "arrival_registration"})
        assert r.status_code == 200, (broken, r.status_code, r.text)
        assert r.json()["result"] == "invalid_signature" and r.json()["attributes"] == {}, broken
        assert offline.verify(token, "arrival_registration").result == "invalid_signature", broken


def test_a_token_verifies_before_the_read_model_knows_its_certificate(
    kiosk: httpx.Client, vstack: VerificationStack, issuers: dict[str, FakeIssuer]
) -> None:
    warm = issue(issuers)  # the issuer's key is fetched from its key URL
    until(kiosk, warm.number, warm.holder_id_number, "valid")
    cert = issue(issuers)
    # let the projection catch up first, or it could re-insert the row after the delete below
    wait_until(lambda: query(vstack.dsn, "SELECT 1 FROM certificates WHERE number = $1", cert.number))
    query(vstack.dsn, "DELETE FROM certificates WHERE number = $1", cert.number)  # as if not yet projected
    wait_until(lambda: not query(vstack.dsn, "SELECT 1 FROM certificates WHERE number = $1", cert.number))
    answer = check_token(kiosk, cert.token, "benefits")
    assert answer["result"] == "valid" and answer["attributes"]["valid_until"] == str(
        dt.date.today() + dt.timedelta(days=180)
    )


# --- offline: keys and status lists ------------------------------------------------------------
def _offline(vstack: VerificationStack, *issuer_codes: str) -> OfflineVerifier:
    keys = httpx.get(vstack.url + "/v1/keys").json()
    lists = [httpx.get(f"{vstack.url}/v1/status-lists/{i}").json() for i in issuer_codes]
    return OfflineVerifier(keys, lists)


def test_a_revoked_certificate_is_refused_offline_against_the_status_list(
    kiosk: httpx.Client, vstack: VerificationStack, issuers: dict[str, FakeIssuer]
) -> None:
    kept, revoked = issue(issuers), issue(issuers)
    issuers[EVENT_ISSUER].revoke(revoked)
    until(kiosk, revoked.number, revoked.holder_id_number, "revoked")

    offline = _offline(vstack, EVENT_ISSUER)  # the kiosk's two downloads; no network from here on
    assert offline.verify(revoked.token, "arrival_registration").result == "revoked"
    ok = offline.verify(kept.token, "maternal_care_services")
    assert ok.result == "valid" and set(ok.attributes) == {"holder_name", "children_count"}
    assert offline.verify(_tampered_claims(kept.token, ch=0), "benefits").result == "invalid_signature"
    assert (
        offline.verify(kept.token, "benefits", now=dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).result
        == "status_unknown"
    ), "a status list past its validUntil must not vouch for anything"

    document = httpx.get(f"{vstack.url}/v1/status-lists/{EVENT_ISSUER}").json()
    assert document["credential"]["credentialSubject"]["encodedList"].startswith("u")
    header, payload, sig = document["jws"].split(".")
    import orjson

    claims = orjson.loads(signing.b64u_decode(payload))
    claims["credentialSubject"]["encodedList"] = document["credential"]["credentialSubject"]["encodedList"]
    claims["validUntil"] = "2099-01-01T00:00:00+00:00"
    forged = f"{header}.{signing.b64u(orjson.dumps(claims))}.{sig}"
    with pytest.raises(BadToken):
        OfflineVerifier(httpx.get(vstack.url + "/v1/keys").json(), [{"jws": forged}])
    assert httpx.get(f"{vstack.url}/v1/status-lists/110101").status_code == 404


def test_key_rotation_keeps_old_certificates_valid_until_the_overlap_ends(
    kiosk: httpx.Client, vstack: VerificationStack, issuers: dict[str, FakeIssuer]
) -> None:
    registry = issuers[JWKS_ISSUER]
    old = issue(issuers, JWKS_ISSUER)
    old_kid = registry.active.kid
    until(kiosk, old.number, old.holder_id_number, "valid")
    wait_until(lambda: check_token(kiosk, old.token)["result"] == "valid", timeout=5)

    new_kid = registry.rotate()
    new = issue(issuers, JWKS_ISSUER)

    def published() -> dict[str, Any]:
        return {k["kid"]: k for k in httpx.get(vstack.url + "/v1/keys").json()["keys"]}

    keys = wait_until(lambda: (k := published()).get(old_kid, {}).get("status") == "retired" and k, timeout=5)
    assert keys[new_kid]["status"] == "active" and keys[new_kid]["jurisdiction"] == JWKS_ISSUER
    until(kiosk, new.number, new.holder_id_number, "valid")
    assert check_token(kiosk, old.token)["result"] == "valid"
    assert check_token(kiosk, new.token)["result"] == "valid"
    offline = _offline(vstack, JWKS_ISSUER)
    assert offline.verify(old.token, "benefits").result == "valid"
    assert offline.verify(new.token, "benefits").result == "valid"

    registry.drop_retired()  # the overlap ended: the registry stops publishing the old key
    wait_until(lambda: old_kid not in published(), timeout=5)
    assert check_token(kiosk, old.token)["result"] == "invalid_signature"
    assert check_token(kiosk, new.token)["result"] == "valid"
    assert _offline(vstack, JWKS_ISSUER).verify(old.token, "benefits").result == "invalid_signature"


class _KidSquatter:
    """A hostile jurisdiction's key document: its own keys, plus every kid another issuer
    publishes, republished as its own (it reads the victim's public JWKS, as anyone can)."""

    def __init__(self, own: FakeIssuer, victim: FakeIssuer):
        self.own, self.victim = own, victim

    def jwks(self) -> dict[str, Any]:
        stolen = [k | {"jurisdiction": self.own.jurisdiction} for k in self.victim.jwks()["keys"]]
        return {"keys": [*self.own.jwks()["keys"], *stolen]}


def test_a_key_document_cannot_claim_another_issuers_kid(
    kiosk: httpx.Client, vstack: VerificationStack, jwks_server: JwksServer, issuers: dict[str, FakeIssuer]
) -> None:
    """A kid is bound to one key for ever, first come: a jurisdiction whose document names the
    kid another issuer just minted (before this service fetched the minter's) must not take it,
    or every certificate under the minter's new key would be answered not genuine."""
    hostile, victim = issuers[JWKS_ISSUER], issuers[EVENT_ISSUER]
    jwks_server.issuers[JWKS_ISSUER] = _KidSquatter(hostile, victim)  # type: ignore[assignment]
    try:
        new_kid = victim.rotate()
        cert = issue(issuers, EVENT_ISSUER)
        until(kiosk, cert.number, cert.holder_id_number, "valid")
        time.sleep(1.0)  # several key refresh rounds, the squatter's document fetched first in each
        assert check_token(kiosk, cert.token)["result"] == "valid"
        keys = [k for k in httpx.get(vstack.url + "/v1/keys").json()["keys"] if k["kid"] == new_kid]
        assert [k["jurisdiction"] for k in keys] == [EVENT_ISSUER]
        assert _offline(vstack, EVENT_ISSUER).verify(cert.token, "benefits").result == "valid"
    finally:
        jwks_server.issuers[JWKS_ISSUER] = hostile


def test_known_keys_survive_a_registry_outage(
    kiosk: httpx.Client, vstack: VerificationStack, jwks_server: JwksServer, issuers: dict[str, FakeIssuer]
) -> None:
    cert = issue(issuers, JWKS_ISSUER)
    wait_until(lambda: check_token(kiosk, cert.token)["result"] == "valid", timeout=5)
    jwks_server.available = False
    try:
        time.sleep(1.0)  # several refresh rounds against a registry that answers 503
        assert check_token(kiosk, cert.token)["result"] == "valid"
    finally:
        jwks_server.available = True


def test_a_correction_changes_what_is_disclosed(kiosk: httpx.Client, issuers: dict[str, FakeIssuer]) -> None:
    cert = issue(issuers, name="钱丽")
    until(kiosk, cert.number, cert.holder_id_number, "valid")
    issuers[EVENT_ISSUER].correct(cert, {"holder_name": "钱莉", "children_count": 3})
    corrected = wait_until(
        lambda: (
            (v := check(kiosk, cert.number, cert.holder_id_number))["attributes"]["holder_name"] == "钱莉"
            and v
        ),
        timeout=5,
    )
    assert corrected["attributes"]["children_count"] == 3


def test_a_correction_that_overtakes_its_certificate_still_holds(
    kiosk: httpx.Client, vstack: VerificationStack, issuers: dict[str, FakeIssuer]
) -> None:
    """Certificates and corrections travel on different topics, so the consumer (and a rebuild
    reading the broker from the beginning) can meet a correction before the certificate it
    corrects: the correction must still hold once the certificate arrives (a shortened validity
    above all), and one by another jurisdiction still changes nothing."""
    registry, other = issuers[EVENT_ISSUER], issuers[JWKS_ISSUER]
    holder, number = person_id("F"), registry.new_number()
    subject = subject_key(holder, registry.subject_secret.encode())
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()

    def correction(changes: dict[str, Any]) -> p.RecordCorrectedV1:
        return p.RecordCorrectedV1(
            correction_id=new_event_id(),
            corrected_event_id=new_event_id(),
            record_type="certificate",
            record_id=number,
            changes=changes,
            reason="registrar corrected a typing error",
        )

    early = [
        registry.publish(
            "record.corrected.v1", subject, correction({"holder_name": "赵敏", "valid_until": yesterday})
        ),
        other.publish("record.corrected.v1", subject, correction({"children_count": 9})),
    ]
    for event_id in early:
        wait_until(
            lambda e=event_id: query(vstack.dsn, "SELECT 1 FROM inbox WHERE event_id = $1", e), timeout=5
        )
    registry.issue(holder, "赵民", children=1, number=number)
    answer = wait_until(
        lambda: (v := check(kiosk, number, holder, "benefits"))["result"] != "not_found" and v
    )
    assert answer["result"] == "expired", answer
    assert answer["attributes"] == answer["attributes"] | {"holder_name": "赵敏", "children_count": 1}


def test_a_different_key_under_a_known_kid_is_refused(
    kiosk: httpx.Client, vstack: VerificationStack, issuers: dict[str, FakeIssuer]
) -> None:
    genuine = issue(issuers)
    until(kiosk, genuine.number, genuine.holder_id_number, "valid")
    # Signed with the issuer's own event key (a compromised or mistaken sender), carrying a key
    # of its own under the issuer's kid: the event is refused, the key never learned.
    rogue = FakeIssuer(EVENT_ISSUER, vstack.bootstrap, event_signer=issuers[EVENT_ISSUER].event_signer)
    rogue.keys[0].kid = genuine.key_id
    try:
        forged = rogue.issue(person_id("F"), "假冒", with_jwk=True)
        wait_until(
            lambda: query(
                vstack.dsn,
                "SELECT reason FROM dead_letters WHERE convert_from(value, 'UTF8') LIKE $1",
                f"%{forged.number}%",
            ),
            timeout=5,
        )
        assert check(kiosk, forged.number, forged.holder_id_number)["result"] == "not_found"
        assert check_token(kiosk, forged.token)["result"] == "invalid_signature"
        assert check_token(kiosk, genuine.token)["result"] == "valid"
        keys = [k for k in httpx.get(vstack.url + "/v1/keys").json()["keys"] if k["kid"] == genuine.key_id]
        assert (
            len(keys) == 1 and keys[0]["x"] == issuers[EVENT_ISSUER].jwk_of(issuers[EVENT_ISSUER].active)["x"]
        )
    finally:
        rogue.close()


def test_a_corrected_person_name_reaches_their_certificates(
    kiosk: httpx.Client, issuers: dict[str, FakeIssuer]
) -> None:
    cert = issue(issuers, name="刘洋")
    until(kiosk, cert.number, cert.holder_id_number, "valid")
    data = p.RecordCorrectedV1(
        correction_id=new_event_id(),
        corrected_event_id=new_event_id(),
        record_type="person",
        record_id="person-record",
        changes={"name": "刘阳"},
        reason="name registered with a wrong character",
    )
    issuers[EVENT_ISSUER].publish("record.corrected.v1", cert.subject, data)
    wait_until(
        lambda: check(kiosk, cert.number, cert.holder_id_number)["attributes"]["holder_name"] == "刘阳",
        timeout=5,
    )


# --- rate limit ---------------------------------------------------------------------------------
def test_a_client_over_its_rate_gets_429_with_retry_after(kiosk: httpx.Client) -> None:
    body = {"certificate_number": "x", "holder_id_number": person_id(), "purpose": "identity_check"}
    statuses = [kiosk.post("/v1/verifications", json=body) for _ in range(45)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert all(r.status_code in (200, 429) for r in statuses)
    first = limited[0]
    assert first.headers["content-type"] == "application/problem+json"
    assert int(first.headers["retry-after"]) >= 1
    assert first.json()["errors"][0]["rule"] == "rate-limit"


# --- audit --------------------------------------------------------------------------------------
def test_changing_one_audit_row_is_named_by_the_chain_check(
    kiosk: httpx.Client, vstack: VerificationStack, issuers: dict[str, FakeIssuer]
) -> None:
    cert = issue(issuers)
    until(kiosk, cert.number, cert.holder_id_number, "valid")
    for purpose in ("benefits", "identity_check", "maternal_care_services"):
        check(kiosk, cert.number, cert.holder_id_number, purpose)
    with vstack.http(vstack.add_client(f"auditor-t{next(_clients)}", "operator")) as auditor:
        report = wait_until(
            lambda: (
                (r := auditor.get("/v1/audit/verify")).status_code == 200
                and r.json()["pending"] == 0
                and r.json()
            )
        )
        assert report["intact"] and report["first_broken_seq"] is None

        rows = query(vstack.dsn, "SELECT * FROM audit_log WHERE purpose = 'identity_check' ORDER BY seq")
        assert all(r["subject"] != cert.holder_id_number for r in rows)
        assert not query(
            vstack.dsn, "SELECT 1 FROM audit_log WHERE detail::text LIKE $1", f"%{cert.holder_id_number}%"
        )
        target = rows[-1]
        tamper(
            vstack.dsn,
            """UPDATE audit_log SET detail = jsonb_set(detail, '{result}', '"not_found"') WHERE seq = $1""",
            target["seq"],
        )
        try:
            report = auditor.get("/v1/audit/verify").json()
            assert report["intact"] is False and report["first_broken_seq"] == target["seq"]
            env = env_with(database_url=vstack.dsn)
            cli = subprocess.run(
                [sys.executable, "-m", "services.verification", "audit-verify"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                cwd=Path(__file__).resolve().parents[2],
            )
            assert cli.returncode == 1 and f"seq {target['seq']}" in cli.stdout, cli.stdout + cli.stderr
        finally:
            tamper(
                vstack.dsn, "UPDATE audit_log SET detail = $2 WHERE seq = $1", target["seq"], target["detail"]
            )
        assert auditor.get("/v1/audit/verify").json()["intact"] is True


def test_every_verification_is_audited_before_it_is_answered(
    kiosk: httpx.Client, vstack: VerificationStack, issuers: dict[str, FakeIssuer]
) -> None:
    cert = issue(issuers)
    until(kiosk, cert.number, cert.holder_id_number, "valid")
    client_id = kiosk.headers["authorization"].split()[1].split(".")[0]
    both = """SELECT client_id, subject, detail FROM audit_log WHERE client_id = $1
              UNION ALL SELECT client_id, subject, detail FROM audit_pending WHERE client_id = $1"""
    before = len(query(vstack.dsn, both, client_id))
    for _ in range(5):
        check(kiosk, cert.number, cert.holder_id_number, "benefits")
        check_token(kiosk, cert.token, "benefits")
    # No waiting: each answer came after its entry was durable (pending or already chained).
    assert len(query(vstack.dsn, both, client_id)) == before + 10
    # ... and the chainer moves them into the hash chain shortly after.
    wait_until(lambda: not query(vstack.dsn, "SELECT 1 FROM audit_pending"), timeout=5)
    rows = query(
        vstack.dsn, "SELECT * FROM audit_log WHERE client_id = $1 ORDER BY seq DESC LIMIT 10", client_id
    )
    details = [json.loads(r["detail"]) for r in rows]
    assert {d["via"] for d in details} == {"number", "token"}
    assert all(r["subject"] == cert.subject for r in rows) and {d["result"] for d in details} == {"valid"}


def test_the_chain_records_the_verdict_each_caller_was_given(
    kiosk: httpx.Client, vstack: VerificationStack, issuers: dict[str, FakeIssuer]
) -> None:
    """A check by number is audited with the evidence it read; the chainer draws the verdict from
    that evidence, and it must be the one the caller was answered, for every result."""
    valid = issue(issuers)
    expired = issue(issuers, issued_on=dt.date.today() - dt.timedelta(days=200), valid_days=180)
    revoked = issue(issuers)
    issuers[EVENT_ISSUER].revoke(revoked)
    until(kiosk, valid.number, valid.holder_id_number, "valid")
    until(kiosk, expired.number, expired.holder_id_number, "expired")
    until(kiosk, revoked.number, revoked.holder_id_number, "revoked")
    asked = [
        (valid.number, valid.holder_id_number),
        (expired.number, expired.holder_id_number),
        (revoked.number, revoked.holder_id_number),
        (valid.number, person_id("F")),
        (f"{EVENT_ISSUER}-2026-NOSUCH01", valid.holder_id_number),
    ]
    answers = [check(kiosk, number, holder, "benefits") for number, holder in asked]
    assert [a["result"] for a in answers] == ["valid", "expired", "revoked", "holder_mismatch", "not_found"]

    client_id = kiosk.headers["authorization"].split()[1].split(".")[0]
    wait_until(lambda: not query(vstack.dsn, "SELECT 1 FROM audit_pending"), timeout=5)
    rows = query(
        vstack.dsn, "SELECT * FROM audit_log WHERE client_id = $1 ORDER BY seq DESC LIMIT 5", client_id
    )[::-1]
    chained = [json.loads(r["detail"]) for r in rows]
    assert [(d["result"], d["issuer"], d["via"]) for d in chained] == [
        (a["result"], a["issuer"], "number") for a in answers
    ]
    assert [r["subject"] for r in rows[:3]] == [valid.subject, expired.subject, revoked.subject]


# --- replay ---------------------------------------------------------------------------------------
def test_the_read_model_is_rebuilt_by_replay(
    kiosk: httpx.Client, vstack: VerificationStack, issuers: dict[str, FakeIssuer]
) -> None:
    kept, revoked = issue(issuers, name="孙艳"), issue(issuers)
    issuers[EVENT_ISSUER].revoke(revoked)
    until(kiosk, revoked.number, revoked.holder_id_number, "revoked")
    until(kiosk, kept.number, kept.holder_id_number, "valid")  # both projected before counting
    before = {r["number"] for r in query(vstack.dsn, "SELECT number FROM certificates")}

    svc = vstack.service("verification")
    vstack.stop_service(svc)
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "replay",
            "verification",
            "--from-broker",
            "--stack",
            "/nonexistent.json",  # as in a deployment: the database named on its own
            f"--db=verification={vstack.dsn}",
        ],
        env=env_with(kafka_bootstrap_servers=vstack.bootstrap),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert query(vstack.dsn, "SELECT count(*) AS n FROM certificates")[0]["n"] == 0
    vstack.spawn(svc)
    vstack.wait_ready(svc)

    # every certificate comes back (and any an earlier test deleted by hand, too: replay is the log)
    wait_until(
        lambda: before <= {r["number"] for r in query(vstack.dsn, "SELECT number FROM certificates")},
        timeout=15,
    )
    assert check(kiosk, kept.number, kept.holder_id_number)["attributes"]["holder_name"] == "孙艳"
    assert check(kiosk, revoked.number, revoked.holder_id_number)["result"] == "revoked"
