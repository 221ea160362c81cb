"""Pure rules of verification: verdicts, disclosure, the token bucket, bitstrings, the offline verifier."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.verification.domain.rate_limit import TokenBuckets
from services.verification.domain.verdict import DISCLOSURE, disclosed, token_verdict, verdict
from shared import signing
from shared.offline_verifier import (
    STATUS_LIST_MIN_BITS,
    BadToken,
    OfflineVerifier,
    bit_is_set,
    decode_bitstring,
    encode_bitstring,
)

TODAY = dt.date(2026, 11, 23)


def cert(**kw: Any) -> dict[str, Any]:
    return {
        "holder_subject": "a" * 32,
        "issuer": "320412",
        "holder_name": "李娜",
        "marital_status": "married",
        "children_count": 1,
        "valid_until": TODAY,
        "revoked_on": None,
    } | kw


@pytest.mark.parametrize(
    ("row", "subject", "expected"),
    [
        (None, "a" * 32, "not_found"),
        (cert(), "b" * 32, "holder_mismatch"),
        (cert(revoked_on=TODAY, valid_until=TODAY - dt.timedelta(days=9)), "a" * 32, "revoked"),
        (cert(valid_until=TODAY - dt.timedelta(days=1)), "a" * 32, "expired"),
        (cert(), "a" * 32, "valid"),  # valid through its last day
    ],
)
def test_verdict(row: dict[str, Any] | None, subject: str, expected: str) -> None:
    assert verdict(row, subject, TODAY) == expected


def test_a_stranger_learns_nothing_about_someone_elses_revoked_certificate() -> None:
    assert verdict(cert(revoked_on=TODAY), "b" * 32, TODAY) == "holder_mismatch"
    assert disclosed(cert(revoked_on=TODAY), "holder_mismatch", "benefits") == {}


def test_no_purpose_ever_discloses_pregnancy_or_identity_data() -> None:
    allowed = {f for fields in DISCLOSURE.values() for f in fields}
    assert allowed <= {"holder_name", "marital_status", "children_count", "valid_until"}
    assert not any("pregnan" in f for f in allowed)


def test_token_verdict_prefers_the_read_models_revocation_and_expiry() -> None:
    claims = {"sub": "a" * 32, "exp": (TODAY + dt.timedelta(days=10)).isoformat()}
    assert token_verdict(claims, None, False, None, TODAY) == "valid"
    assert token_verdict(claims, None, True, None, TODAY) == "revoked"
    assert token_verdict(claims, None, False, "b" * 32, TODAY) == "holder_mismatch"
    corrected = cert(valid_until=TODAY - dt.timedelta(days=1))
    assert token_verdict(claims, corrected, False, "a" * 32, TODAY) == "expired"


def test_token_bucket_allows_the_burst_then_says_how_long_to_wait() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("k", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.take("k", 100.0)
    assert wait == pytest.approx(0.5)
    assert TokenBuckets.retry_after_header(wait) == 1
    assert buckets.take("other", 100.0) == 0.0  # clients do not share a bucket
    assert buckets.take("k", 100.5) == 0.0  # one token came back after 1/rate seconds
    assert buckets.take("k", 100.5) > 0


@given(st.sets(st.integers(min_value=0, max_value=STATUS_LIST_MIN_BITS + 5000), max_size=50))
def test_bitstring_round_trip(revoked: set[int]) -> None:
    bits = decode_bitstring(encode_bitstring(revoked))
    assert len(bits) * 8 >= STATUS_LIST_MIN_BITS
    for i in revoked:
        assert bit_is_set(bits, i)
    for i in {0, 7, 8, 1000, STATUS_LIST_MIN_BITS - 1} - revoked:
        assert not bit_is_set(bits, i)


def test_bitstring_index_zero_is_the_leftmost_bit() -> None:
    assert decode_bitstring(encode_bitstring([0]))[0] == 0x80


# --- the offline verifier, with keys made here ---------------------------------------------------
ISSUER_KEY, LIST_KEY, OTHER_KEY = (signing.new_private_key() for _ in range(3))


def _jwks() -> dict[str, Any]:
    return {
        "keys": [
            signing.jwk("k1", signing.public_bytes(ISSUER_KEY), jurisdiction="320412", status="active"),
            signing.jwk("s1", signing.public_bytes(LIST_KEY), jurisdiction=None, purpose="status-list"),
        ]
    }


def _token(**kw: Any) -> str:
    claims = {
        "iss": "320412",
        "num": "320412-2026-AAAAAAAA",
        "sub": "a" * 32,
        "name": "李娜",
        "ms": "married",
        "ch": 2,
        "iat": "2026-01-01",
        "exp": "2026-12-31",
        "sti": 5,
    } | kw
    return signing.sign(claims, ISSUER_KEY, "k1")


def _status_list(
    revoked: list[int], valid_until: str = "2026-11-24T00:00:00+00:00", key: Any = LIST_KEY
) -> dict:
    credential = {
        "validUntil": valid_until,
        "credentialSubject": {
            "statusPurpose": "revocation",
            "jurisdiction": "320412",
            "encodedList": encode_bitstring(revoked),
        },
    }
    return {"jws": signing.sign(credential, key, "s1")}


NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)


def test_offline_valid_revoked_expired() -> None:
    v = OfflineVerifier(_jwks(), [_status_list([7])])
    ok = v.verify(_token(), "arrival_registration", now=NOW)
    assert ok.result == "valid" and ok.attributes == {
        "holder_name": "李娜",
        "marital_status": "married",
        "children_count": 2,
    }
    assert v.verify(_token(sti=7), "benefits", now=NOW).result == "revoked"
    assert v.verify(_token(exp="2026-11-22"), "benefits", now=NOW).result == "expired"
    assert v.verify(_token(), "identity_check", now=NOW).attributes == {}


def test_offline_refuses_what_it_cannot_vouch_for() -> None:
    v = OfflineVerifier(_jwks(), [_status_list([])])
    assert v.verify(_token(iss="440703"), "benefits", now=NOW).result == "invalid_signature"
    assert v.verify(signing.sign({"iss": "320412"}, OTHER_KEY, "k1"), "benefits", now=NOW).result == (
        "invalid_signature"
    )
    later = NOW + dt.timedelta(days=2)
    assert v.verify(_token(), "benefits", now=later).result == "status_unknown"
    assert OfflineVerifier(_jwks()).verify(_token(), "benefits", now=NOW).result == "status_unknown"
    with pytest.raises(BadToken):
        OfflineVerifier(_jwks(), [_status_list([], key=OTHER_KEY)])
    with pytest.raises(ValueError, match="purpose"):
        v.verify(_token(), "pregnancy_review", now=NOW)


def test_tune_gc_freezes_what_exists_and_sets_the_young_generation_threshold() -> None:
    import gc

    from shared.app import tune_gc

    before = gc.get_threshold()
    try:
        tune_gc(12_345)
        assert gc.get_threshold() == (12_345, 20, 100)
        assert gc.get_freeze_count() > 1000  # the modules, classes and objects loaded by now
        tune_gc(0)  # 0 keeps whatever thresholds there are
        assert gc.get_threshold() == (12_345, 20, 100)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
