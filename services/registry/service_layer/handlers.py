"""Use cases of the registry. Each runs inside the caller's unit of work and never commits itself."""

from __future__ import annotations

import base64
import datetime as dt
import os
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.registry.adapters import keys
from services.registry.adapters import repository as repo
from services.registry.domain import rules
from services.registry.settings import RegistrySettings
from shared import audit, signing
from shared.auth import Client
from shared.errors import Forbidden, NotFound, RuleViolation
from shared.events import payloads as p
from shared.identity import birth_date_of, subject_key
from shared.outbox import add_event


@dataclass(frozen=True)
class Context:
    """What a use case needs besides the connection: configuration and the caller's trace."""

    settings: RegistrySettings
    traceparent: str | None = None

    @property
    def secret(self) -> bytes:
        return self.settings.subject_key_secret.get_secret_value().encode()

    def subject(self, id_number: str) -> str:
        return subject_key(id_number, self.secret)


def _source(jurisdiction: str) -> str:
    return f"/registry/{jurisdiction}"


async def register_person(
    conn: asyncpg.Connection, ctx: Context, here: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Record a person in the jurisdiction's register and announce ``person.registered.v1``."""
    rules.check_person_birth_date(birth_date_of(body["id_number"]), body["birth_date"])
    person = {**body, "residence_division": body.get("residence_division") or body["hukou_division"]}
    subject = ctx.subject(person["id_number"])
    if not await repo.insert_person(conn, here, person, subject, here):
        raise rules.duplicate("a person with this identity number", "id_number")
    event = await add_event(
        conn,
        event_type="person.registered.v1",
        source=_source(here),
        subject=subject,
        data=p.PersonRegisteredV1(**person),
        origin=person["hukou_division"],
        destination=person["residence_division"],
        traceparent=ctx.traceparent,
    )
    return {**person, "jurisdiction": here, "source_division": here, "event_id": event.id}


async def record_migration(
    conn: asyncpg.Connection, ctx: Context, here: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Record a departure, arrival or return, and announce it as ``migration.<kind>.v1``."""
    kind, id_number = body["kind"], body["id_number"]
    known = await repo.residence(conn, here, id_number)
    person = await repo.get_person(conn, here, id_number)
    name = body.get("name") or (person["name"] if person else None)
    hukou = body.get("hukou_division") or (person["hukou_division"] if person else None)
    if name is None or hukou is None:
        raise RuleViolation(
            "the person is not known here: give name and hukou_division with the first record",
            field="name",
            rule="first-record-needs-identity",
        )
    rules.check_migration(
        kind, here, body["from_division"], body["to_division"], body["migration_date"], known, hukou
    )
    migration = {**body, "migration_id": uuid.uuid4(), "name": name, "hukou_division": hukou}
    subject = ctx.subject(id_number)
    if person is None:
        await repo.insert_person(
            conn,
            here,
            {
                "id_number": id_number,
                "name": name,
                "sex": rules.sex_from_id_number(id_number),
                "birth_date": birth_date_of(id_number),
                "hukou_division": hukou,
                "residence_division": here,
            },
            subject,
            here,
        )
    await repo.insert_migration(conn, here, migration, kind, here)
    await repo.set_residence(conn, here, id_number, body["to_division"])
    payload_cls = {
        "departed": p.MigrationDepartedV1,
        "arrived": p.MigrationArrivedV1,
        "returned": p.MigrationReturnedV1,
    }[kind]
    event = await add_event(
        conn,
        event_type=f"migration.{kind}.v1",
        source=_source(here),
        subject=subject,
        data=payload_cls(**{k: migration[k] for k in payload_cls.model_fields}),
        origin=hukou,
        destination=body["to_division"],
        traceparent=ctx.traceparent,
    )
    return {**migration, "jurisdiction": here, "event_id": event.id}


async def register_birth(
    conn: asyncpg.Connection, ctx: Context, here: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Record a birth (one per birth medical certificate) and announce ``birth.registered.v1``."""
    mother = body["mother_id_number"]
    if await repo.birth_by_certificate(conn, here, body["medical_certificate_number"]):
        raise rules.duplicate("a birth with this medical certificate number", "medical_certificate_number")
    previous = await repo.births_of_mother(conn, here, mother)
    order = body.get("birth_order") or len(previous) + 1
    rules.check_birth(birth_date_of(mother), body["child_birth_date"], order, len(previous))
    mother_row = await repo.get_person(conn, here, mother)
    birth = {
        **body,
        "birth_id": uuid.uuid4(),
        "birth_order": order,
        "birth_division": body.get("birth_division") or here,
    }
    await repo.insert_birth(conn, here, birth, here)
    event = await add_event(
        conn,
        event_type="birth.registered.v1",
        source=_source(here),
        subject=ctx.subject(mother),
        data=p.BirthRegisteredV1(**{k: birth.get(k) for k in p.BirthRegisteredV1.model_fields}),
        origin=mother_row["hukou_division"] if mother_row else None,
        destination=mother_row["residence_division"] if mother_row else here,
        traceparent=ctx.traceparent,
    )
    return {**birth, "jurisdiction": here, "event_id": event.id}


def _certificate_number(here: str, today: dt.date) -> str:
    suffix = base64.b32encode(os.urandom(5)).decode()[:8]
    return f"{here}-{today.year}-{suffix}"


async def issue_certificate(
    conn: asyncpg.Connection, ctx: Context, here: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Issue a signed marriage-and-childbearing certificate (婚育证明) for a person of this register."""
    holder = body["holder_id_number"]
    person = await repo.get_person(conn, here, holder)
    if person is None:
        raise RuleViolation(
            "the holder is not in this jurisdiction's records",
            field="holder_id_number",
            rule="person-must-exist",
        )
    today = dt.date.today()
    kid, key = await keys.active_key(
        conn, here, ctx.settings.key_encryption_key.get_secret_value(), ctx.settings.key_rotation_overlap_days
    )
    cert: dict[str, Any] = {
        "certificate_number": _certificate_number(here, today),
        "holder_id_number": holder,
        "holder_name": person["name"],
        "marital_status": await repo.marital_status(conn, here, holder),
        "children_birth_dates": await repo.children_birth_dates(conn, here, holder),
        "issuer": here,
        "issued_on": today,
        "valid_until": today
        + dt.timedelta(days=body.get("valid_days") or ctx.settings.certificate_validity_days),
        "key_id": kid,
        "status_index": await repo.next_status_index(conn, here),
    }
    cert["token"] = signing.sign(certificate_claims(cert, ctx.subject(holder)), key, kid)
    await repo.insert_certificate(conn, here, cert)
    event = await add_event(
        conn,
        event_type="certificate.issued.v1",
        source=_source(here),
        subject=ctx.subject(holder),
        data=p.CertificateIssuedV1(**cert),
        origin=person["hukou_division"],
        destination=person["residence_division"],
        traceparent=ctx.traceparent,
    )
    return {**cert, "event_id": event.id}


def certificate_claims(cert: dict[str, Any], holder_subject: str) -> dict[str, Any]:
    """What the QR code carries: no raw identity number, only the pseudonymous holder key."""
    return {
        "iss": cert["issuer"],
        "num": cert["certificate_number"],
        "sub": holder_subject,
        "name": cert["holder_name"],
        "ms": cert["marital_status"],
        "ch": len(cert["children_birth_dates"]),
        "iat": cert["issued_on"].isoformat(),
        "exp": cert["valid_until"].isoformat(),
        "sti": cert["status_index"],
    }


async def read_person(
    conn: asyncpg.Connection, ctx: Context, client: Client, id_number: str, purpose: str
) -> dict[str, Any]:
    """A person's record as the client's jurisdiction holds it; the read is written to the audit log."""
    here = client.jurisdiction
    if here is None or here not in ctx.settings.served:
        raise Forbidden(
            "this registry does not keep the records of the client's jurisdiction", rule="jurisdiction"
        )
    person = await repo.get_person(conn, here, id_number)
    if person is None:
        raise NotFound(
            "no such person in the client's jurisdiction", field="id_number", rule="person-must-exist"
        )
    history = await repo.person_history(conn, here, id_number)
    await audit.append(
        conn,
        [
            audit.AuditEntry(
                client.client_id, "person.read", purpose, person["subject"], {"jurisdiction": here}
            )
        ],
    )
    out = {
        k: person[k]
        for k in (
            "id_number",
            "name",
            "sex",
            "birth_date",
            "hukou_division",
            "residence_division",
            "source_division",
            "jurisdiction",
        )
    }
    return {**out, **history}
