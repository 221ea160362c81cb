"""The clients file's rules: scopes per kind, a home jurisdiction, hashes only, one entry per id."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from shared.auth import hash_secret
from shared.clients_file import (
    ClientsFile,
    ClientsFileError,
    parse_entries,
    parse_file_text,
    parse_text,
    read_document,
    write_file,
)

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
        # the registries' internal reconciliation is the exchange's service credential's alone
        (
            {"kind": "operator", "jurisdiction": None, "scopes": ["ops:resolve", "reconcile:internal"]},
            "client c-one: scopes: a client of kind operator may not hold 'reconcile:internal'",
        ),
        (
            {"kind": "jurisdiction", "scopes": ["reconcile:internal"]},
            "a client of kind jurisdiction may not hold 'reconcile:internal'",
        ),
        (
            {"kind": "service", "jurisdiction": None, "scopes": ["reconcile:internal", "ops:read"]},
            "a client of kind service may not hold 'ops:read'",
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
            entry(client_id="exchange-service", kind="service", jurisdiction=None),
        ]
    )
    assert parsed[0].effective_scopes == ["verify"]
    assert parsed[1].effective_scopes == ["ops:read", "ops:resolve", "exchange:read"]
    assert parsed[2].effective_scopes == ["persons:read", "pregnancy:read"]
    assert parsed[3].effective_scopes == ["reconcile:internal"]


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


def test_a_file_with_a_revision_holds_it_and_its_clients(tmp_path: Path) -> None:
    found = parse_file_text(
        f"revision: 7\nclients:\n  - {{client_id: c-one, kind: kiosk, jurisdiction: '440703', secret_hash: {HASH}}}\n"
    )
    assert found.revision == 7 and [e.client_id for e in found.entries] == ["c-one"]
    path = tmp_path / "clients.yaml"
    write_file(path, found.entries, revision=8)
    assert read_document(path) == ClientsFile(8, found.entries)
    write_file(path, found.entries)  # a bare list, as files were before revisions
    assert read_document(path) == ClientsFile(None, found.entries)
    with pytest.raises(ClientsFileError, match="revision: must be a whole number of at least 1"):
        write_file(path, found.entries, revision=0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("revision: 0\nclients: []\n", "revision: must be a whole number of at least 1"),
        ("revision: '3'\nclients: []\n", "revision: must be a whole number of at least 1"),
        ("clients: []\n", "revision: must be a whole number of at least 1"),
        ("revision: 2\nclients: []\nowner: ops\n", "owner: not a field of the clients file"),
        ("revision: 2\nclients: {c-one: {}}\n", "the clients file must be a list of clients"),
    ],
)
def test_a_malformed_revision_or_document_is_named(text: str, message: str) -> None:
    with pytest.raises(ClientsFileError, match=message):
        parse_file_text(text)
