"""The stack's credentials: the demo clients (and the clients file they go into), the services'
audit-checkpoint keys."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from devstack.layout import DESTINATION, ORIGIN
from shared.audit_anchor import load_key
from shared.auth import DEFAULT_SCOPES, hash_secret
from shared.clients_file import ClientEntry, read_document, write_file
from shared.signing import b64u, new_private_key, private_bytes

# The exchange's own credential towards the registries' internal reconciliation endpoints (kind
# ``service``, scope ``reconcile:internal``): the stack gives it to the exchange as REGISTRY_TOKEN.
EXCHANGE_SERVICE = "exchange-service"


def demo_clients(
    existing: dict[str, str], registries: list[str] | None = None, rest_only: list[str] | None = None
) -> list[dict[str, Any]]:
    """Demo clients: one per kind (the service one is the exchange's), and one per jurisdiction
    (with a registry or REST-only).
    Secrets are kept only in stack.json (and the caller's memory)."""
    jurisdictions = [*(registries or [ORIGIN, DESTINATION]), *(rest_only or [])]
    specs = [
        *((f"reg-{code}", "jurisdiction", code) for code in jurisdictions),
        ("kiosk-440703", "kiosk", DESTINATION),
        ("dept-440703", "department", DESTINATION),
        ("operator", "operator", None),
        (EXCHANGE_SERVICE, "service", None),
    ]
    out = []
    for client_id, kind, jurisdiction in specs:
        token = existing.get(client_id) or f"{client_id}.{secrets.token_urlsafe(32)}"
        out.append(
            {
                "client_id": client_id,
                "kind": kind,
                "jurisdiction": jurisdiction,
                "scopes": DEFAULT_SCOPES[kind],
                "token": token,
            }
        )
    return out


def previous_tokens(stack_file: Path) -> dict[str, str]:
    """The demo clients' tokens of an earlier run, from its stack.json (none if there is none)."""
    if not stack_file.exists():
        return {}
    return {c["client_id"]: c["token"] for c in json.loads(stack_file.read_text()).get("clients", [])}


def merge_clients_file(path: Path, clients: list[dict[str, Any]]) -> None:
    """The demo clients merged into what the clients file already says.

    The file is authoritative, so clients added, rotated or revoked with ``exchangectl clients``
    stay as they are; a demo client is (re)written only when the file does not hold its current
    credential.
    """
    found = read_document(path) if path.exists() else None
    entries = {e.client_id: e for e in found.entries} if found else {}
    written = dict(entries)
    for c in clients:
        demo = ClientEntry(
            client_id=c["client_id"],
            kind=c["kind"],
            jurisdiction=c["jurisdiction"],
            scopes=tuple(c["scopes"]),
            secret_hash=hash_secret(c["token"].split(".", 1)[1]),
        )
        kept = entries.get(demo.client_id)
        if kept is None or not (kept.revoked or demo.secret_hash == kept.secret_hash):
            entries[demo.client_id] = demo
    if found is None:
        write_file(path, list(entries.values()), revision=1)
    elif entries != written:  # an edit: the next revision (a bare list, as hand-written, stays one)
        write_file(path, list(entries.values()), None if found.revision is None else found.revision + 1)


def audit_keys(path: Path, services: list[str]) -> dict[str, str]:
    """Each service's audit-checkpoint signing key (base64url), kept in ``path``."""
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    for name in services:
        known.setdefault(name, b64u(private_bytes(new_private_key())))
    path.write_text(json.dumps(known, indent=2))
    path.chmod(0o600)
    return known


def audit_public_keys(keys: dict[str, str]) -> dict[str, dict[str, str]]:
    """What an auditor pins: each service's checkpoint key id and public key."""
    out = {}
    for name, private in keys.items():
        key = load_key(private)
        out[name] = {"kid": key.kid, "public_key": b64u(key.public_raw)}
    return out
