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
