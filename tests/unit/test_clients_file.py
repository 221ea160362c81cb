"""The clients file's rules: scopes per kind, a home jurisdiction, hashes only, one entry per id."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.auth import hash_secret
from shared.clients_file import ClientsFileError, parse_entries, parse_text

HASH = hash_secret("s")


def entry(**fields: object) -> dict[str, object]:
    return {"client_id": "c-one", "kind": "kiosk", "jurisdiction": "440703", "secret_hash": HASH} | fields


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"kind": "operator", "jurisdiction": None, "scopes": ["ops:read", "pregnancy:read"]},
            "client c-one: scopes: a client of kind operator may not hold 'pregnancy:read'",
        ),
        ({"scopes": ["verify", "persons:write"]}, "a client of kind kiosk may not hold 'persons:write'"),
        (
            {"kind": "department", "scopes": ["audit:read"]},
            "a client of kind department may not hold 'audit:read'",
        ),
        ({"scopes": ["verify", "everything"]}, "unknown scope 'everything'"),
        (
            {"jurisdiction": None},
            "client c-one: jurisdiction: a client of kind kiosk needs its home jurisdiction",
        ),
        ({"jurisdiction": "4407"}, "client c-one: jurisdiction: String should match pattern"),
        ({"secret_hash": "plain-text-secret"}, "client c-one: secret_hash: String should match pattern"),
        ({"client_id": "A"}, "client A: client_id: String should match pattern"),
        ({"token": "c-one.secret"}, "client c-one: token: Extra inputs are not permitted"),
        ({"previous_secret_hash": HASH}, "a previous secret needs the end of its overlap"),
        ({"revokd": True}, "client c-one: revokd: Extra inputs are not permitted"),
    ],
)
def test_a_client_breaking_a_rule_is_refused_naming_field_and_rule(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ClientsFileError) as e:
        parse_entries([entry(**fields)])
    assert message in str(e.value)


def test_the_kinds_default_scopes_and_allowed_ones_parse() -> None:
    parsed = parse_entries(
        [
            entry(),
            entry(client_id="ops", kind="operator", jurisdiction=None),
            entry(client_id="reg-440703", kind="jurisdiction", scopes=["persons:read", "pregnancy:read"]),
        ]
    )
    assert parsed[0].effective_scopes == ["verify"]
    assert parsed[1].effective_scopes == ["ops:read", "ops:resolve", "exchange:read"]
    assert parsed[2].effective_scopes == ["persons:read", "pregnancy:read"]


def test_an_id_listed_twice_is_refused() -> None:
    with pytest.raises(ClientsFileError, match="client c-one: client_id: listed twice"):
        parse_text(f"- {{client_id: c-one, kind: kiosk, jurisdiction: '440703', secret_hash: {HASH}}}\n" * 2)


def test_states() -> None:
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    day = dt.timedelta(days=1)
    [active, expired, rotating, revoked] = parse_entries(
        [
            entry(client_id="c-a", expires_at=now + day),
            entry(client_id="c-b", expires_at=now - day),
            entry(client_id="c-c", previous_secret_hash=HASH, previous_expires_at=now + day),
            entry(client_id="c-d", revoked=True),
        ]
    )
    assert [c.state(now) for c in (active, expired, rotating, revoked)] == [
        "active",
        "expired",
        "rotating",
        "revoked",
    ]
