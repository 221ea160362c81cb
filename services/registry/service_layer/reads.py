"""Reads of personal data: each one is scoped, purpose-bound and written to the subject-access log."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from services.registry.adapters import certificates, disclosures, marriages, persons, pregnancies
from services.registry.domain import access
from services.registry.service_layer.context import Context
from services.registry.service_layer.disclosures import tell_read
from shared import agreements, audit
from shared.agreements import Agreement
from shared.auth import Client
from shared.errors import Forbidden, NotFound

PERSON_FIELDS = (
    "id_number",
    "name",
    "sex",
    "birth_date",
    "hukou_division",
    "residence_division",
    "source_division",
    "jurisdiction",
)


def _not_found() -> NotFound:
    # The same answer for "no such person" and "not shared with you": existence is personal data too.
    return NotFound(
        "no such person shared with the client's jurisdiction", field="id_number", rule="person-must-exist"
    )


async def _readable(
    conn: asyncpg.Connection, ctx: Context, client: Client, id_number: str
) -> tuple[asyncpg.Record, dict[str, list[dict[str, Any]]], Agreement | None]:
    """The record the client may read: its own jurisdiction's, or a counterpart's shared with it
    (the reader is her current origin or destination, under an agreement with the holder: the
    agreement comes back, None for the client's own record)."""
    reader = client.jurisdiction
    if reader is None:
        raise Forbidden("only a jurisdiction's clients read person records", rule="jurisdiction")
    served = ctx.settings.served
    holders = [reader] if reader in served else sorted(served)
    agreed = agreements.load(ctx.settings.agreements_file, ctx.settings.environment)
    for here in holders:
        person = await persons.get_person(conn, here, id_number)
        if person is None:
            continue
        if here == reader:
            return person, await persons.person_history(conn, here, id_number), None
        agreement = agreements.between(agreed, here, reader)
        if agreement is not None and access.shares_with(
            reader, person["hukou_division"], person["residence_division"]
        ):
            return person, await persons.person_history(conn, here, id_number), agreement
    raise _not_found()


async def _sections(
    conn: asyncpg.Connection,
    client: Client,
    person: asyncpg.Record,
    history: dict[str, list[dict[str, Any]]],
    sections: set[str],
    agreement: Agreement | None,
) -> dict[str, list[dict[str, Any]]]:
    """Each section the read discloses; a counterpart's limited to what its agreement lets it see."""
    here, id_number = person["jurisdiction"], person["id_number"]
    if agreement is not None:
        sections = access.agreed_sections(sections, agreement.covers)
    out: dict[str, list[dict[str, Any]]] = {}
    if "migrations" in sections:
        out["migrations"] = history["migrations"]
    if "births" in sections:
        out["births"] = history["births"]
    if "marriages" in sections:
        out["marriages"] = await marriages.marriages_of(conn, here, id_number)
    if "pregnancies" in sections:
        kept = await pregnancies.pregnancies_of(conn, here, id_number)
        out["pregnancies"] = access.held_by(client.jurisdiction, here, kept)
    if "certificates" in sections:
        out["certificates"] = await certificates.certificates_of(conn, here, id_number)
    if agreement is not None and client.jurisdiction is not None:
        for section, records_ in out.items():
            for event_type in access.SECTION_EVENTS.get(section, ()):
                records_ = access.without_withheld(
                    records_, agreement.withheld(client.jurisdiction, event_type)
                )
            out[section] = records_
    return out


async def read_person(
    conn: asyncpg.Connection, ctx: Context, client: Client, id_number: str, purpose: str
) -> dict[str, Any]:
    """A person's record as this registry holds it, limited to what the purpose needs (and, for a
    counterpart, to what its agreement lets it see); audited."""
    person, history, agreement = await _readable(conn, ctx, client, id_number)
    here = person["jurisdiction"]
    sections = set(access.PURPOSE_SECTIONS[purpose])
    if not access.may_see_pregnancies(
        client.jurisdiction,
        client.has("pregnancy:read"),
        purpose,
        person["hukou_division"],
        person["residence_division"],
    ):
        sections.discard("pregnancies")
    disclosed = await _sections(conn, client, person, history, sections, agreement)
    out: dict[str, Any] = {k: person[k] for k in PERSON_FIELDS} | disclosed
    await audit.append(
        conn,
        [
            audit.AuditEntry(
                client.client_id,
                "person.read",
                purpose,
                person["subject"],
                {"jurisdiction": here, "reader": client.jurisdiction, "sections": sorted(disclosed)},
            )
        ],
    )
    await tell_read(
        conn, ctx.settings, person, purpose, reader=client.client_id, reader_division=client.jurisdiction
    )
    return out


async def read_pregnancy(
    conn: asyncpg.Connection, ctx: Context, client: Client, pregnancy_id: uuid.UUID, purpose: str
) -> dict[str, Any]:
    """One pregnancy record, for the mother's own origin and destination registries only; audited,
    and told to her other registry (``tell_read``)."""
    for here in [client.jurisdiction] if client.jurisdiction in ctx.settings.served else []:
        row = await pregnancies.get_pregnancy(conn, here, pregnancy_id)
        mother = await persons.get_person(conn, here, row["mother_id_number"]) if row else None
        if row is None or mother is None:
            break
        if not access.may_see_pregnancies(
            client.jurisdiction, True, purpose, mother["hukou_division"], mother["residence_division"]
        ):
            break
        await audit.append(
            conn,
            [
                audit.AuditEntry(
                    client.client_id, "pregnancy.read", purpose, mother["subject"], {"jurisdiction": here}
                )
            ],
        )
        # her other registry's subject-access log names the reader too, as for her person record
        await tell_read(
            conn, ctx.settings, mother, purpose, reader=client.client_id, reader_division=client.jurisdiction
        )
        return {
            "pregnancy_id": row["id"],
            "mother_id_number": row["mother_id_number"],
            "registered_in": row["registered_in"],
            "registered_on": row["registered_on"],
            "expected_delivery": row["expected_delivery"],
            "closed_on": row["closed_on"],
            "outcome": row["outcome"],
            "jurisdiction": here,
        }
    raise NotFound(
        "no such pregnancy shared with the client's jurisdiction for this purpose",
        field="pregnancy_id",
        rule="exists",
    )


async def read_disclosures(
    conn: asyncpg.Connection, ctx: Context, client: Client, id_number: str, limit: int
) -> dict[str, Any]:
    """The subject-access log, from the hash-chained audit: who read this person's data here, and
    what other parties reported (notifications with their real targets, REST pick-ups,
    certificate checks, reads at the person's other registry; ``disclosures``)."""
    here = client.jurisdiction
    person = await persons.get_person(conn, here, id_number) if here in ctx.settings.served else None
    if person is None:
        raise _not_found()
    entries = await disclosures.disclosures(conn, person["subject"], limit)
    await audit.append(
        conn,
        [audit.AuditEntry(client.client_id, "disclosures.read", "registration", person["subject"], {})],
    )
    return {
        "id_number": id_number,
        "jurisdiction": here,
        "disclosures": [
            {
                "seq": e["seq"],
                "at": e["at"],
                "client_id": e["client_id"],
                "action": e["action"],
                "purpose": e["purpose"],
                "detail": e["detail"],
            }
            for e in entries
        ],
    }
