"""The clients file: the authoritative list of API clients (DESIGN.md sections 8 and 10).

A client missing from the file is revoked; a revocation is final (the database refuses to undo
it); each client's scopes must be ones its kind may hold; a credential expires, and a rotation
keeps the previous secret valid for an overlap. The file holds SHA-256 hashes only: a secret
is shown once, by ``exchangectl clients create|rotate``, and never written anywhere.

The file is a list of clients, or a mapping of a ``revision`` (a number every edit raises) and
its ``clients``. A database remembers the highest revision applied to it and leaves an older file
as it is: replicas of a service each apply the file when their own mount of it changes, up to a
minute apart for a Kubernetes Secret, and one that saw an edit late must not undo the next.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import NamedTuple

import asyncpg
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.auth import DEFAULT_SCOPES, SCOPES, ClientKind

# What each kind of client may ever hold; DEFAULT_SCOPES is what it gets when the file names none.
ALLOWED_SCOPES: dict[str, frozenset[str]] = {
    "jurisdiction": frozenset(DEFAULT_SCOPES["jurisdiction"]),
    "kiosk": frozenset({"verify"}),
    "department": frozenset({"persons:read", "verify"}),
    # operators see operations, not people: never pregnancy data, never person records, never
    # the registries' internal reconciliation endpoints (per-person record hashes, re-sends)
    "operator": frozenset({"ops:read", "ops:resolve", "exchange:read"}),
    # a service's credential towards another: the exchange's towards the registries, and nothing else
    "service": frozenset({"reconcile:internal"}),
}
# Kinds that act for the whole exchange, not for one jurisdiction (no home jurisdiction needed).
NATIONAL_KINDS = frozenset({"operator", "service"})

_HASH = r"^[0-9a-f]{64}$"
_REVISION_RULE = "revision: must be a whole number of at least 1, raised by every edit"


class ClientsFileError(ValueError):
    """The clients file breaks a rule; the message names the client, the field and the rule."""


class ClientEntry(BaseModel):
    """One client of the file, as stored (hashes only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{2,63}$")
    kind: ClientKind
    jurisdiction: str | None = Field(default=None, pattern=r"^\d{6}$")
    scopes: tuple[str, ...] | None = None
    secret_hash: str = Field(pattern=_HASH)
    expires_at: dt.datetime | None = None
    previous_secret_hash: str | None = Field(default=None, pattern=_HASH)
    previous_expires_at: dt.datetime | None = None
    revoked: bool = False
    revoked_at: dt.datetime | None = None

    @model_validator(mode="after")
    def _rules(self) -> ClientEntry:
        if self.kind not in NATIONAL_KINDS and self.jurisdiction is None:
            raise ValueError(f"jurisdiction: a client of kind {self.kind} needs its home jurisdiction")
        for scope in self.scopes or ():
            if scope not in SCOPES:
                raise ValueError(f"scopes: unknown scope {scope!r}")
            if scope not in ALLOWED_SCOPES[self.kind]:
                raise ValueError(f"scopes: a client of kind {self.kind} may not hold {scope!r}")
        if (self.previous_secret_hash is None) != (self.previous_expires_at is None):
            raise ValueError(
                "previous_expires_at: a previous secret needs the end of its overlap, and only then"
            )
        return self

    @property
    def effective_scopes(self) -> list[str]:
        return list(self.scopes) if self.scopes is not None else list(DEFAULT_SCOPES[self.kind])

    def state(self, now: dt.datetime) -> str:
        if self.revoked:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.previous_expires_at is not None and self.previous_expires_at > now:
            return "rotating"
        return "active"


def parse_entries(document: object) -> list[ClientEntry]:
    """Validate a loaded clients document (a list of mappings); raises ``ClientsFileError``."""
    if document is None:
        return []
    if not isinstance(document, list):
        raise ClientsFileError("the clients file must be a list of clients")
    entries: list[ClientEntry] = []
    seen: set[str] = set()
    for i, item in enumerate(document):
        name = item.get("client_id", f"#{i + 1}") if isinstance(item, dict) else f"#{i + 1}"
        try:
            entry = ClientEntry.model_validate(item)
        except ValidationError as e:
            first = e.errors()[0]
            message = first["msg"].removeprefix("Value error, ")
            where = "".join(f"{p}: " for p in first["loc"])
            raise ClientsFileError(f"client {name}: {where}{message}") from None
        if entry.client_id in seen:
            raise ClientsFileError(f"client {name}: client_id: listed twice")
        seen.add(entry.client_id)
        entries.append(entry)
    return entries


class ClientsFile(NamedTuple):
    """A clients file as read: its revision (None for a bare list) and its clients."""

    revision: int | None
    entries: list[ClientEntry]


def parse_document(document: object) -> ClientsFile:
    """A loaded clients document: a list of clients, or ``{revision: N, clients: [...]}``."""
    if not isinstance(document, dict):
        return ClientsFile(None, parse_entries(document))
    unknown = sorted(set(document) - {"revision", "clients"})
    if unknown:
        raise ClientsFileError(f"{unknown[0]}: not a field of the clients file (revision, clients)")
    revision = document.get("revision")
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
        raise ClientsFileError(_REVISION_RULE)
    return ClientsFile(revision, parse_entries(document.get("clients")))


def parse_file_text(text: str) -> ClientsFile:
    try:
        return parse_document(yaml.safe_load(text))
    except yaml.YAMLError as e:
        raise ClientsFileError(f"the clients file is not YAML/JSON: {type(e).__name__}") from None


def parse_text(text: str) -> list[ClientEntry]:
    return parse_file_text(text).entries


def read_document(path: str | Path) -> ClientsFile:
    return parse_file_text(Path(path).read_text(encoding="utf-8"))


def read_file(path: str | Path) -> list[ClientEntry]:
    return read_document(path).entries


def write_file(path: str | Path, entries: list[ClientEntry], revision: int | None = None) -> None:
    """Replace the file at once (a reader never sees half of it); hashes only, owner-readable.
    With ``revision``, the file says it, and databases that applied a later one leave it."""
    parse_entries([e.model_dump(mode="json") for e in entries])  # never write a file we would refuse
    if revision is not None and revision < 1:
        raise ClientsFileError(_REVISION_RULE)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    docs = [e.model_dump(mode="json", exclude_defaults=True) for e in entries]
    document: object = docs if revision is None else {"revision": revision, "clients": docs}
    tmp.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(target)


class ClientSources:
    """Where a service's clients come from: the file (watched for changes) and inline text."""

    def __init__(self, path: str | None, inline: str | None = None):
        self.path = path
        self.inline = inline
        self._seen: tuple[float, int, int] | None = None

    def __bool__(self) -> bool:
        return bool(self.path or self.inline)

    def _stat(self) -> tuple[float, int, int] | None:
        if not self.path:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime, st.st_size, st.st_ino)

    def changed(self) -> bool:
        """True when the file differs from the one last loaded (a mounted Secret updates in place)."""
        return self._stat() != self._seen

    def load(self) -> ClientsFile:
        stat = self._stat()
        found = read_document(self.path) if self.path else ClientsFile(None, [])
        entries = found.entries + (parse_text(self.inline) if self.inline else [])
        parse_entries([e.model_dump(mode="json") for e in entries])  # no id in both
        self._seen = stat
        return ClientsFile(found.revision, entries)

    async def sync(self, conn: asyncpg.Connection) -> Synced:
        """Make the clients table what the sources say, in the caller's transaction, unless this
        database applied a later revision of the file already.

        The file is read once this transaction holds the lock every writer of the table takes:
        a list read before another writer's change (an operator adding a client and applying
        the file at once) and applied after it would revoke that client, and a revocation is
        final."""
        await _lock_clients(conn)
        found = self.load()
        return await sync_clients(conn, found.entries, found.revision)


class Synced(NamedTuple):
    """What ``sync_clients`` did: the clients listed, the file's revision, the revision this
    database had applied before, and whether the list was applied (not when it was older)."""

    clients: int
    revision: int | None
    applied_before: int | None
    applied: bool


async def sync_clients(
    conn: asyncpg.Connection, entries: list[ClientEntry], revision: int | None = None
) -> Synced:
    """Upsert the listed clients and revoke every client the list no longer names, unless
    ``revision`` is older than the one this database applied last (then nothing changes).

    Revocations are final: a revoked client stays revoked whatever the list says (the
    database's ``clients_revocation_is_final`` trigger refuses to undo one). A list without a
    revision (a bare list, as files were before revisions) is applied as it is.
    """
    await _lock_clients(conn)
    before = await applied_revision(conn)
    if revision is not None and before is not None and revision < before:
        return Synced(len(entries), revision, before, applied=False)
    await conn.executemany(
        """INSERT INTO clients (client_id, kind, jurisdiction, scopes, secret_hash, expires_at,
                                previous_secret_hash, previous_expires_at, revoked_at)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8, CASE WHEN $9 THEN coalesce($10, now()) END)
           ON CONFLICT (client_id) DO UPDATE SET kind = EXCLUDED.kind,
             jurisdiction = EXCLUDED.jurisdiction, scopes = EXCLUDED.scopes,
             secret_hash = EXCLUDED.secret_hash, expires_at = EXCLUDED.expires_at,
             previous_secret_hash = EXCLUDED.previous_secret_hash,
             previous_expires_at = EXCLUDED.previous_expires_at,
             revoked_at = coalesce(clients.revoked_at, EXCLUDED.revoked_at)""",
        [
            (
                e.client_id,
                e.kind,
                e.jurisdiction,
                e.effective_scopes,
                e.secret_hash,
                e.expires_at,
                e.previous_secret_hash,
                e.previous_expires_at,
                e.revoked,
                e.revoked_at,
            )
            for e in entries
        ],
    )
    await conn.execute(
        "UPDATE clients SET revoked_at = now() WHERE revoked_at IS NULL AND NOT (client_id = ANY($1::text[]))",
        [e.client_id for e in entries],
    )
    if revision is not None:
        await conn.execute(
            """INSERT INTO clients_file_applied (revision) VALUES ($1)
               ON CONFLICT (only_row) DO UPDATE SET revision = EXCLUDED.revision, applied_at = now()""",
            revision,
        )
    return Synced(len(entries), revision, before, applied=True)


async def applied_revision(conn: asyncpg.Connection) -> int | None:
    """The highest revision of the clients file this database applied (None: none with one)."""
    revision: int | None = await conn.fetchval("SELECT revision FROM clients_file_applied")
    return revision


async def _lock_clients(conn: asyncpg.Connection) -> None:
    """The lock every writer of the clients table takes, until its transaction ends (taken twice
    by one transaction, it is still one lock)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('clients-file'))")
