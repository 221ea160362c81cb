"""The offline verifier a kiosk ships as one file (shared/offline_verifier.py) refuses what the
service refuses: a key the standard status list names as revoked, a key past its overlap window.

Both tests (which failed when an adversarial review found the gaps) assert the documented behaviour (services/verification/README.md, "Revoked signing
keys" and "The kiosk page, online and offline") that the browser kiosk (static/offline.js) and the
online service already have, and the Python verifier a kiosk ships as one file does not.
"""

from __future__ import annotations

import datetime as dt

from services.verification.adapters.keys import StatusListSigner
from services.verification.domain import status_list as tsl
from shared import signing
from shared.offline_verifier import OfflineVerifier

ISSUER = "320412"


def _setup(**issuer_jwk_extra: object) -> tuple[OfflineVerifier, StatusListSigner, object]:
    list_key, issuer_key = signing.new_private_key(), signing.new_private_key()
    signer = StatusListSigner("status-test", list_key)
    jwks = {
        "keys": [
            signing.jwk("status-test", signer.public_raw, purpose="status-list", jurisdiction=None),
            signing.jwk(
                "320412-k1",
                signing.public_bytes(issuer_key),
                jurisdiction=ISSUER,
                purpose="certificate",
                **issuer_jwk_extra,
            ),
        ]
    }
    return OfflineVerifier(jwks), signer, issuer_key


def _token(issuer_key: object) -> str:
    claims = {
        "iss": ISSUER,
        "num": "320412-2026-AAAAAAAA",
        "sub": "k",
        "exp": "2999-01-01",
        "name": "李娜",
        "ms": "married",
        "ch": 1,
        "sti": 7,
        "status": {"status_list": {"idx": 7, "uri": "u"}},
    }
    return signing.sign(claims, issuer_key, "320412-k1")  # type: ignore[arg-type]


def test_a_token_status_list_naming_the_revoked_signing_key_makes_its_tokens_revoked_offline() -> None:
    """`exchangectl keys revoke`: the Token Status List carries `revoked_keys`, "so an offline
    kiosk refuses its tokens from its next status list download even while it still holds the
    key". The W3C form does this in Python (`revokedKeys`); the standard token form does not."""
    verifier, signer, issuer_key = _setup()
    now = int(dt.datetime.now(dt.UTC).timestamp())
    listed = tsl.claims(
        uri="u",
        jurisdiction=ISSUER,
        revoked=[],
        issued_at=now,
        validity=3600,
        ttl=300,
        revoked_keys=["320412-k1"],
    )
    verifier.add_token_status_list(signer.sign_typed(listed, tsl.JWT_TYP))
    answer = verifier.verify(_token(issuer_key), "benefits")
    assert answer.result == "revoked", answer


def test_a_key_past_its_overlap_window_signs_nothing_offline() -> None:
    """Online (`repository.key_of`: expires_at > now) and in the browser kiosk ("signed by a key
    past its overlap window") a token under an expired key is not genuine; the Python verifier
    ignores the JWK's `expires_at` and answers `valid` from a stale key download."""
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    verifier, signer, issuer_key = _setup(status="retired", expires_at=past)
    now = int(dt.datetime.now(dt.UTC).timestamp())
    listed = tsl.claims(uri="u", jurisdiction=ISSUER, revoked=[], issued_at=now, validity=3600, ttl=300)
    verifier.add_token_status_list(signer.sign_typed(listed, tsl.JWT_TYP))
    answer = verifier.verify(_token(issuer_key), "benefits")
    assert answer.result == "invalid_signature", answer
