"""SQL of the verification read model: certificates, revocations, issuer keys, the signer key."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

CERT_COLUMNS = """number, issuer, holder_subject, holder_name, marital_status, children_count,
                   issued_on, valid_until, status_index, revoked_on"""


async def get_certificate(conn: Conn, number: str) -> asyncpg.Record | None:
    """One indexed row: the hot path of every online verification."""
    return await conn.fetchrow(f"SELECT {CERT_COLUMNS} FROM certificates WHERE number = $1", number)


async def upsert_issued(
    conn: asyncpg.Connection,
    d: dict[str, Any],
    holder_subject: str,
    event_id: uuid.UUID,
    issued_at: dt.datetime,
) -> None:
    """Insert a certificate issued at ``issued_at`` (its envelope's time); a revocation that
    arrived first (replay, other partition) still holds."""
    await conn.execute(
        """INSERT INTO certificates (number, issuer, holder_subject, holder_name, marital_status, children_count,
                                     issued_on, valid_until, key_id, status_index, token, source_event_id,
                                     issued_at, revoked_on, revocation_reason)
           SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13, r.revoked_on, r.reason
           FROM (SELECT 1) one
           LEFT JOIN revocations r ON r.issuer = $2 AND r.status_index = $10 AND r.certificate_number = $1
           ON CONFLICT (number) DO NOTHING""",
        d["certificate_number"],
        d["issuer"],
        holder_subject,
        d["holder_name"],
        d["marital_status"],
        len(d["children_birth_dates"]),
        d["issued_on"],
        d["valid_until"],
        d["key_id"],
        d["status_index"],
        d["token"],
        event_id,
        issued_at,
    )


_COPY_COLUMNS = [
    "number",
    "issuer",
    "holder_subject",
    "holder_name",
    "marital_status",
    "children_count",
    "issued_on",
    "valid_until",
    "key_id",
    "status_index",
    "token",
    "source_event_id",
    "issued_at",
    "holder_name_at",
    "revoked_on",
    "revocation_reason",
    "corrected_at",
    "updated_at",
]


def certificate_row(
    d: Any, holder_subject: str, event_id: uuid.UUID, issued_at: dt.datetime, now: dt.datetime
) -> dict[str, Any]:
    """The row ``upsert_issued`` writes for a certificate.issued.v1 payload, for a bulk rebuild."""
    return {
        "number": d.certificate_number,
        "issuer": d.issuer,
        "holder_subject": holder_subject,
        "holder_name": d.holder_name,
        "marital_status": d.marital_status,
        "children_count": len(d.children_birth_dates),
        "issued_on": d.issued_on,
        "valid_until": d.valid_until,
        "key_id": d.key_id,
        "status_index": d.status_index,
        "token": d.token,
        "source_event_id": event_id,
        "issued_at": issued_at,
        "holder_name_at": None,
        "revoked_on": None,
        "revocation_reason": None,
        "corrected_at": None,
        "updated_at": now,
    }


async def copy_certificates(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    """Bulk load into an emptied table (a rebuild); every number appears once."""
    await conn.copy_records_to_table(
        "certificates", records=[tuple(r[c] for c in _COPY_COLUMNS) for r in rows], columns=_COPY_COLUMNS
    )


async def copy_revocations(conn: asyncpg.Connection, rows: list[tuple[str, int, str, dt.date, str]]) -> None:
    await conn.copy_records_to_table(
        "revocations",
        records=rows,
        columns=["issuer", "status_index", "certificate_number", "revoked_on", "reason"],
    )


async def record_revocation(
    conn: asyncpg.Connection, number: str, issuer: str, status_index: int, revoked_on: dt.date, reason: str
) -> None:
    await conn.execute(
        """INSERT INTO revocations (issuer, status_index, certificate_number, revoked_on, reason)
           VALUES ($1,$2,$3,$4,$5) ON CONFLICT (issuer, status_index) DO NOTHING""",
        issuer,
        status_index,
        number,
        revoked_on,
        reason,
    )
    await conn.execute(  # only the issuer revokes what it issued
        """UPDATE certificates SET revoked_on = $2, revocation_reason = $3, updated_at = now()
           WHERE number = $1 AND issuer = $4 AND revoked_on IS NULL""",
        number,
        revoked_on,
        reason,
        issuer,
    )


async def is_revoked(conn: Conn, issuer: str, status_index: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM revocations WHERE issuer = $1 AND status_index = $2", issuer, status_index
        )
    )


async def revoked_indices(conn: Conn, issuer: str) -> list[int]:
    rows = await conn.fetch("SELECT status_index FROM revocations WHERE issuer = $1", issuer)
    return [int(r["status_index"]) for r in rows]


async def known_issuers(conn: Conn) -> list[str]:
    rows = await conn.fetch(
        "SELECT issuer FROM issuer_keys UNION SELECT issuer FROM certificates UNION SELECT issuer FROM revocations"
    )
    return sorted(r["issuer"] for r in rows)


async def correct_certificate(
    conn: asyncpg.Connection, number: str, changes: dict[str, Any], name_at: dt.datetime | None
) -> int:
    """Apply the corrected fields the read model keeps; returns the rows changed. A corrected
    holder name, made at ``name_at``, only if no correction made later set the name
    (``holder_name_at``); over one made at the same time, it goes."""
    result = await conn.execute(
        """UPDATE certificates SET
             holder_name = CASE WHEN holder_name_at > $6 THEN holder_name ELSE coalesce($2, holder_name) END,
             holder_name_at = CASE WHEN $2::text IS NULL OR holder_name_at > $6 THEN holder_name_at ELSE $6 END,
             marital_status = coalesce($3, marital_status),
             children_count = coalesce($4, children_count),
             valid_until = coalesce($5, valid_until),
             corrected_at = now(), updated_at = now()
           WHERE number = $1""",
        number,
        changes.get("holder_name"),
        changes.get("marital_status"),
        changes.get("children_count"),
        changes.get("valid_until"),
        name_at,
    )
    return int(result.split()[-1])


async def keep_correction_ahead(
    conn: asyncpg.Connection, number: str, corrector: str, changes: dict[str, Any], at: dt.datetime
) -> None:
    """A correction of a certificate not seen yet, made at ``at`` (its envelope's time), kept until
    the certificate arrives (``take_corrections_ahead``)."""
    await conn.execute(
        """INSERT INTO corrections_ahead (certificate_number, corrector, changes, corrected_at)
           VALUES ($1, $2, $3, $4)""",
        number,
        corrector,
        changes,
        at,
    )


async def take_corrections_ahead(conn: asyncpg.Connection, number: str) -> list[asyncpg.Record]:
    """The corrections that came before the certificate ``number``, in the order they came; gone after."""
    rows = await conn.fetch(
        """DELETE FROM corrections_ahead WHERE certificate_number = $1
           RETURNING id, corrector, changes, corrected_at""",
        number,
    )
    return sorted(rows, key=lambda r: r["id"])


async def copy_corrections_ahead(
    conn: asyncpg.Connection, rows: list[tuple[str, str, dict[str, Any], dt.datetime]]
) -> None:
    """Bulk load (a rebuild): corrections whose certificate the replay did not bring."""
    await conn.copy_records_to_table(
        "corrections_ahead",
        records=rows,
        columns=["certificate_number", "corrector", "changes", "corrected_at"],
    )


async def correct_holder_name(
    conn: asyncpg.Connection, holder_subject: str, name: str, issuer: str, at: dt.datetime
) -> None:
    """The holder's name, corrected at ``at``, on the certificates ``issuer`` issued (its own
    records only) after it was made (a certificate issued at or after ``at`` carries it as issued),
    where no correction made at or after it set the name already."""
    await conn.execute(
        """UPDATE certificates SET holder_name = $2, holder_name_at = $4, corrected_at = now(), updated_at = now()
           WHERE holder_subject = $1 AND issuer = $3 AND $4 > greatest(issued_at, holder_name_at)""",
        holder_subject,
        name,
        issuer,
        at,
    )


async def keep_name_correction(
    conn: asyncpg.Connection, holder_subject: str, corrector: str, name: str, at: dt.datetime
) -> None:
    """The holder's name as ``corrector`` last corrected it (at ``at``), for its certificates of
    her still to come (``name_correction_ahead``); a correction made before the kept one, or at the
    same time, changes nothing (as on a certificate, ``correct_holder_name``)."""
    await conn.execute(
        """INSERT INTO name_corrections (holder_subject, corrector, holder_name, corrected_at)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (holder_subject, corrector) DO UPDATE
             SET holder_name = EXCLUDED.holder_name, corrected_at = EXCLUDED.corrected_at, recorded_at = now()
           WHERE name_corrections.corrected_at < EXCLUDED.corrected_at""",
        holder_subject,
        corrector,
        name,
        at,
    )


async def name_correction_ahead(
    conn: asyncpg.Connection, number: str, source_event_id: uuid.UUID, made_at: dt.datetime
) -> asyncpg.Record | None:
    """The kept name correction (``holder_name``, ``corrected_at``) of its issuer for its holder
    that concerns the certificate ``number`` just inserted by the event ``source_event_id`` (not
    one an earlier event inserted): one made after the certificate was (``made_at``)."""
    return await conn.fetchrow(
        """SELECT n.holder_name, n.corrected_at FROM certificates c
           JOIN name_corrections n ON n.holder_subject = c.holder_subject AND n.corrector = c.issuer
           WHERE c.number = $1 AND c.source_event_id = $2 AND n.corrected_at > $3""",
        number,
        source_event_id,
        made_at,
    )


async def copy_name_corrections(
    conn: asyncpg.Connection, rows: list[tuple[str, str, str, dt.datetime]]
) -> None:
    """Bulk load (a rebuild): the latest name correction per holder and corrector."""
    await conn.copy_records_to_table(
        "name_corrections",
        records=rows,
        columns=["holder_subject", "corrector", "holder_name", "corrected_at"],
    )


# --- issuer keys ----------------------------------------------------------------------------------
async def key_of(conn: Conn, kid: str) -> asyncpg.Record | None:
    """A key published, not withdrawn, inside its overlap window (``revoked_at`` says if it was revoked)."""
    return await conn.fetchrow(
        """SELECT kid, issuer, public_key, revoked_at FROM issuer_keys
           WHERE kid = $1 AND withdrawn_at IS NULL AND (expires_at IS NULL OR expires_at > now())""",
        kid,
    )


async def learn_key(
    conn: asyncpg.Connection,
    *,
    kid: str,
    issuer: str,
    public_key: bytes,
    source: str,
    status: str | None = None,
    expires_at: dt.datetime | None = None,
) -> str:
    """Record a key. Returns 'new', 'updated', 'same' or 'conflict' (another key under this kid)."""
    row = await conn.fetchrow("SELECT issuer, public_key FROM issuer_keys WHERE kid = $1 FOR UPDATE", kid)
    if row is None:
        await conn.execute(
            """INSERT INTO issuer_keys (kid, issuer, public_key, status, expires_at, source)
               VALUES ($1,$2,$3,coalesce($4,'active'),$5,$6) ON CONFLICT (kid) DO NOTHING""",
            kid,
            issuer,
            public_key,
            status,
            expires_at,
            source,
        )
        return "new"
    if row["issuer"] != issuer or bytes(row["public_key"]) != public_key:
        return "conflict"
    if status is None:  # an event says nothing about rotation; only the registry's JWKS does
        return "same"
    await conn.execute(
        """UPDATE issuer_keys SET status = CASE WHEN revoked_at IS NULL THEN $2 ELSE 'revoked' END,
                  expires_at = $3, source = $4, withdrawn_at = NULL, updated_at = now() WHERE kid = $1""",
        kid,
        status,
        expires_at,
        source,
    )
    return "updated"


async def withdraw_missing(conn: asyncpg.Connection, source: str, present: list[str]) -> None:
    """Keys a JWKS URL published before and no longer does are withdrawn (expired or compromised)."""
    await conn.execute(
        """UPDATE issuer_keys SET withdrawn_at = now(), updated_at = now()
           WHERE source = $1 AND withdrawn_at IS NULL AND NOT (kid = ANY($2::text[]))""",
        source,
        present,
    )


async def published_keys(conn: Conn) -> list[asyncpg.Record]:
    return await conn.fetch(  # type: ignore[no-any-return]
        """SELECT kid, issuer, public_key, status, expires_at FROM issuer_keys
           WHERE withdrawn_at IS NULL AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
           ORDER BY issuer, learned_at"""
    )


async def revoke_key(
    conn: asyncpg.Connection, *, kid: str, issuer: str, public_key: bytes, source: str
) -> str:
    """Record that the issuer revoked a key, known here or not; final. Returns 'revoked' or 'conflict'."""
    row = await conn.fetchrow(
        """INSERT INTO issuer_keys (kid, issuer, public_key, status, source, revoked_at)
           VALUES ($1,$2,$3,'revoked',$4, now())
           ON CONFLICT (kid) DO UPDATE SET status = 'revoked', updated_at = now(),
             revoked_at = coalesce(issuer_keys.revoked_at, now())
           WHERE issuer_keys.issuer = EXCLUDED.issuer AND issuer_keys.public_key = EXCLUDED.public_key
           RETURNING kid""",
        kid,
        issuer,
        public_key,
        source,
    )
    return "revoked" if row else "conflict"


async def revoked_kids(conn: Conn, issuer: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT kid FROM issuer_keys WHERE issuer = $1 AND revoked_at IS NOT NULL ORDER BY kid", issuer
    )
    return [str(r["kid"]) for r in rows]


# --- this service's status-list key ---------------------------------------------------------------
async def status_list_key(conn: asyncpg.Connection) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT kid, private_key FROM service_keys WHERE purpose = 'status-list' ORDER BY created_at DESC LIMIT 1"
    )


async def store_status_list_key(conn: asyncpg.Connection, kid: str, private: bytes, public: bytes) -> None:
    await conn.execute(
        """INSERT INTO service_keys (kid, purpose, private_key, public_key)
           VALUES ($1, 'status-list', $2, $3) ON CONFLICT DO NOTHING""",
        kid,
        private,
        public,
    )


async def clear_read_model(conn: asyncpg.Connection) -> list[str]:
    """Empty the read model's tables (a rebuild refills them); returns the tables emptied."""
    await conn.execute("TRUNCATE certificates, revocations, corrections_ahead, name_corrections")
    return ["certificates", "revocations", "corrections_ahead", "name_corrections"]


async def next_generation(conn: asyncpg.Connection) -> tuple[int, int]:
    """Forget keys learned from events and bump the replay generation: (old, new)."""
    old = await conn.fetchval("SELECT generation FROM projection_state FOR UPDATE")
    await conn.execute("DELETE FROM issuer_keys WHERE source = 'event'")
    new = await conn.fetchval(
        "UPDATE projection_state SET generation = generation + 1, rebuilt_at = now() RETURNING generation"
    )
    return int(old), int(new)
