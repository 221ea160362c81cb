"""Use cases of the verification service's read model: corrections and the bulk rebuild (the
verifications: ``service_layer/verifications.py``)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from services.verification.adapters import repository as repo
from shared.events import payloads as p
from shared.events.envelope import Envelope
from shared.events.signature import NOT_AUTHORIZED, Rejected

log = logging.getLogger(__name__)

# Corrections of a certificate that the read model keeps; anything else is not ours to show.
CORRECTABLE = {"holder_name": str, "marital_status": str, "children_count": int, "valid_until": dt.date}


def certificate_changes(data: p.RecordCorrectedV1) -> dict[str, Any]:
    """The corrected fields of a certificate that the read model keeps, typed."""
    return typed_changes(data.changes)


def typed_changes(corrected: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``corrected`` that the read model keeps, typed (a correction kept ahead of
    its certificate is read back from JSON through here as well)."""
    changes: dict[str, Any] = {}
    for name, kind in CORRECTABLE.items():
        value = corrected.get(name)
        if value is not None:
            changes[name] = dt.date.fromisoformat(str(value)) if kind is dt.date else kind(value)
    return changes


def made_at(event: Envelope[Any]) -> dt.datetime:
    """When the producer made ``event`` (its envelope's time), aware: one without an offset is read
    as UTC, the same in SQL and in the rebuild's fold (which could not compare it otherwise)."""
    return event.time if event.time.tzinfo is not None else event.time.replace(tzinfo=dt.UTC)


def corrected_holder_name(data: p.RecordCorrectedV1) -> str | None:
    name = data.changes.get("name") if data.record_type == "person" else None
    return name if isinstance(name, str) else None


async def apply_correction(
    conn: asyncpg.Connection, subject: str, data: p.RecordCorrectedV1, corrector: str, at: dt.datetime
) -> None:
    """A certificate is corrected only by its issuer; a holder's name only on that issuer's certificates.

    The authority rule that needs the read model: a correction changes only certificates issued
    by the correcting jurisdiction (the envelope checks come first, ``shared.events.signature``).
    A correction of a certificate not seen yet is kept until it comes, and a holder's name
    corrected for her certificates still to come, each with ``at``, the envelope's time
    (``apply_corrections_ahead``). On a certificate already here, a correction of the name applies
    only if made after the one that last set it, whatever the order they came in: her name's
    (``correct_holder_name``) only if made after the certificate too, and after one of the
    certificate's own made at the same time; the certificate's own (``correct_certificate``) if
    made at the same time or later.
    """
    if data.record_type == "certificate":
        cert = await repo.get_certificate(conn, data.record_id)
        changes = certificate_changes(data)
        if cert is None:
            if changes and kept_ahead(data.record_id, corrector):
                await repo.keep_correction_ahead(conn, data.record_id, corrector, changes, at)
            return
        if cert["issuer"] != corrector:
            if all(cert[k] == v for k, v in changes.items()):
                return  # changes nothing (a reconciliation repair sending the issuer's own values back)
            raise Rejected(NOT_AUTHORIZED, f"{corrector} corrects a certificate of another issuer")
        if changes:
            await repo.correct_certificate(conn, data.record_id, changes, at)
    elif (name := corrected_holder_name(data)) is not None:
        await repo.correct_holder_name(conn, subject, name, corrector, at)
        await repo.keep_name_correction(conn, subject, corrector, name, at)


def kept_ahead(number: str, corrector: str) -> bool:
    """Whether a correction of a certificate not seen yet is kept for it: only one by the issuer
    the number names (issuers mint their numbers ``<issuer>-<year>-<suffix>``); anyone else's
    would be refused once the certificate came, so it is not kept at all."""
    return number.startswith(f"{corrector}-")


def in_order_made(
    name: tuple[str, dt.datetime] | None, own: Iterable[tuple[dt.datetime, dict[str, Any]]]
) -> tuple[dict[str, Any], dt.datetime | None]:
    """What the corrections kept ahead of a certificate change on it, applied in the order they
    were made, whatever their kind: ``name`` is its holder's name as its issuer last corrected it
    (name, time), if after the certificate was made; ``own`` its own corrections by its issuer
    (time, changes), in the order they came. The one made last wins a field. Made at the same
    time, the holder's name goes first and the certificate's own after (the narrower correction),
    those in the order they came: never the order the two topics happened to interleave in.
    Returns the changes and when the holder name among them was made (``holder_name_at``).
    """
    kept = [(at, 1, n, changes) for n, (at, changes) in enumerate(own)]
    if name is not None:
        kept.append((name[1], 0, 0, {"holder_name": name[0]}))
    merged: dict[str, Any] = {}
    name_at: dt.datetime | None = None
    for at, *_, changes in sorted(kept, key=lambda k: k[:3]):
        merged.update(changes)
        if "holder_name" in changes:
            name_at = at
    return merged, name_at


async def apply_corrections_ahead(conn: asyncpg.Connection, event: Envelope[p.CertificateIssuedV1]) -> None:
    """The corrections that came before the certificate ``event`` issued, in the order they were
    made (``in_order_made``): its holder's name as its issuer last corrected it, if after the
    certificate was made, and the certificate's own, by its issuer.

    Made before or after is told by the envelopes' times: all are the issuer's own clock, signed
    with the event, to the microsecond. ``issued_on`` is a day, and a name corrected the day a
    certificate was issued would be undecided by it.
    """
    number, issuer = event.data.certificate_number, event.data.issuer
    kept = await repo.name_correction_ahead(conn, number, event.id, made_at(event))
    name = (kept["holder_name"], kept["corrected_at"]) if kept is not None else None
    own = [
        (row["corrected_at"], typed_changes(row["changes"]))
        for row in await repo.take_corrections_ahead(conn, number)
        if row["corrector"] == issuer
    ]
    changes, name_at = in_order_made(name, own)
    if changes:
        await repo.correct_certificate(conn, number, changes, name_at)


def _correct(cert: dict[str, Any], changes: dict[str, Any], at: dt.datetime | None, now: dt.datetime) -> None:
    """``repo.correct_certificate`` on a certificate of the rebuild's fold."""
    rest = {k: v for k, v in changes.items() if k != "holder_name"}
    name = changes.get("holder_name")
    last_set = cert["holder_name_at"]
    if name is not None and not (last_set is not None and at is not None and last_set > at):
        cert.update(holder_name=name, holder_name_at=at)
    cert.update(rest, corrected_at=now)


async def rebuild_read_model(conn: asyncpg.Connection, events: Iterable[Envelope[Any]]) -> None:
    """The read model from every event at once, for a rebuild from the beginning into cleared
    tables: the outcome of ``messagebus.HANDLERS`` on each event in turn, folded in memory and
    written with COPY (a replay at tens of thousands of events a second, not a few thousand).
    """
    certs: dict[str, dict[str, Any]] = {}
    by_holder: dict[str, list[dict[str, Any]]] = {}
    revocations: dict[tuple[str, int], tuple[str, dt.date, str]] = {}
    # corrections before their certificate: (corrector, changes, made at)
    ahead: dict[str, list[tuple[str, dict[str, Any], dt.datetime]]] = {}
    names: dict[tuple[str, str], tuple[str, dt.datetime]] = {}  # (holder, corrector): (name, at)
    now = dt.datetime.now(dt.UTC)
    for event in events:
        data = event.data
        if isinstance(data, p.CertificateIssuedV1):
            if data.certificate_number not in certs:  # upsert_issued: the first one stays
                revoked = revocations.get((data.issuer, data.status_index))
                if revoked is not None and revoked[0] != data.certificate_number:
                    revoked = None
                cert = repo.certificate_row(data, event.subject, event.id, made_at(event), now)
                if revoked is not None:
                    cert["revoked_on"], cert["revocation_reason"] = revoked[1], revoked[2]
                kept = names.get((event.subject, data.issuer))  # apply_corrections_ahead
                renamed = kept if kept is not None and kept[1] > made_at(event) else None
                own = [
                    (at, changes)
                    for corrector, changes, at in ahead.pop(data.certificate_number, [])
                    if corrector == data.issuer
                ]
                changes, name_at = in_order_made(renamed, own)
                if changes:
                    _correct(cert, changes, name_at, now)
                certs[data.certificate_number] = cert
                by_holder.setdefault(event.subject, []).append(cert)
        elif isinstance(data, p.CertificateRevokedV1):  # record_revocation
            key = (data.issuer, data.status_index)
            revocations.setdefault(key, (data.certificate_number, data.revoked_on, data.reason))
            revoked_cert = certs.get(data.certificate_number)
            if (
                revoked_cert is not None
                and revoked_cert["issuer"] == data.issuer
                and revoked_cert["revoked_on"] is None
            ):
                revoked_cert["revoked_on"], revoked_cert["revocation_reason"] = data.revoked_on, data.reason
        elif isinstance(data, p.RecordCorrectedV1):  # apply_correction
            if data.record_type == "certificate":
                changes = certificate_changes(data)
                corrected = certs.get(data.record_id)
                if changes and corrected is not None and corrected["issuer"] == event.producer:
                    _correct(corrected, changes, made_at(event), now)
                elif changes and corrected is None and kept_ahead(data.record_id, str(event.producer)):
                    ahead.setdefault(data.record_id, []).append(
                        (str(event.producer), changes, made_at(event))
                    )
            elif (name := corrected_holder_name(data)) is not None:
                for cert in by_holder.get(event.subject, []):  # correct_holder_name
                    last_set = max(cert["issued_at"], cert["holder_name_at"] or cert["issued_at"])
                    if cert["issuer"] == event.producer and made_at(event) > last_set:
                        cert.update(holder_name=name, holder_name_at=made_at(event), corrected_at=now)
                holder = (event.subject, str(event.producer))  # keep_name_correction
                if holder not in names or names[holder][1] < made_at(event):
                    names[holder] = (name, made_at(event))
    await repo.copy_certificates(conn, list(certs.values()))
    await repo.copy_revocations(
        conn, [(issuer, index, *rest) for (issuer, index), rest in revocations.items()]
    )
    await repo.copy_corrections_ahead(
        conn, [(number, *kept) for number, corrections in ahead.items() for kept in corrections]
    )
    await repo.copy_name_corrections(conn, [(*holder, *kept) for holder, kept in names.items()])
