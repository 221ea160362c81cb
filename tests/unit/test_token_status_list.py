"""The IETF Token Status List encoding against the draft's own example (section 4.1)."""

from __future__ import annotations

import pytest

from services.verification.domain import status_list as tsl


def test_the_drafts_example_list_encodes_byte_for_byte() -> None:
    # draft-ietf-oauth-status-list, bits = 1: statuses 1 0 0 1 1 1 0 1 | 1 1 0 0 0 1 0 1
    # -> bytes 0xB9 0xA3 -> "eNrbuRgAAhcBXQ" (ZLIB, best compression, base64url).
    revoked = [0, 3, 4, 5, 7, 8, 9, 13, 15]
    assert tsl.encode(revoked, min_entries=16) == "eNrbuRgAAhcBXQ"
    assert tsl.decode("eNrbuRgAAhcBXQ") == bytes([0xB9, 0xA3])


def test_every_index_reads_back_and_the_list_grows_past_its_minimum() -> None:
    revoked = {1, 2, 64, 131_071, 200_003}
    bits = tsl.decode(tsl.encode(revoked))
    assert len(bits) * 8 >= 200_004
    assert {i for i in range(len(bits) * 8) if tsl.status_of(bits, i)} == revoked
    with pytest.raises(IndexError):
        tsl.status_of(bits, len(bits) * 8)
    with pytest.raises(ValueError):
        tsl.encode([-1])


def test_the_claims_name_the_list_and_its_lifetime() -> None:
    claims = tsl.claims(
        uri="https://verify.example/v1/status-lists/320412",
        jurisdiction="320412",
        revoked=[5],
        issued_at=1_000,
        validity=86_400,
        ttl=300,
    )
    assert claims["sub"] == "https://verify.example/v1/status-lists/320412"
    assert (claims["iat"], claims["exp"], claims["ttl"]) == (1_000, 87_400, 300)
    assert claims["status_list"]["bits"] == 1
    assert tsl.status_of(tsl.decode(claims["status_list"]["lst"]), 5) == tsl.INVALID


def test_the_python_offline_verifier_reads_the_token_status_list() -> None:
    import datetime as dt

    from services.verification.adapters.keys import StatusListSigner
    from shared import signing
    from shared.offline_verifier import BadToken, OfflineVerifier

    list_key, issuer_key = signing.new_private_key(), signing.new_private_key()
    signer = StatusListSigner("status-test", list_key)
    jwks = {
        "keys": [
            signing.jwk("status-test", signer.public_raw, purpose="status-list"),
            signing.jwk("320412-k", signing.public_bytes(issuer_key), jurisdiction="320412"),
        ]
    }
    now = int(dt.datetime.now(dt.UTC).timestamp())
    listed = tsl.claims(uri="u", jurisdiction="320412", revoked=[9], issued_at=now, validity=3600, ttl=300)
    verifier = OfflineVerifier(jwks)
    assert verifier.add_token_status_list(signer.sign_typed(listed, tsl.JWT_TYP)) == "320412"

    def cert(idx: int) -> str:
        claims = {"iss": "320412", "num": f"n{idx}", "exp": "2999-01-01", "name": "李娜", "sti": 0}
        claims["status"] = {"status_list": {"idx": idx, "uri": "u"}}  # the standard reference wins
        return signing.sign(claims, issuer_key, "320412-k")

    assert verifier.verify(cert(9), "benefits").result == "revoked"
    assert verifier.verify(cert(8), "benefits").result == "valid"  # bit 8 is not bit 9 in LSB order
    assert verifier.verify(
        cert(9), "benefits", now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    ).result == ("status_unknown")
    with pytest.raises(BadToken):  # signed by a certificate key, not the status-list key
        verifier.add_token_status_list(signing.sign(listed, issuer_key, "320412-k"))
