"""What a batch item may be: each write kind with the single route's schemas, use case and scope.

A batch item is checked exactly as its single route checks a request (the same pydantic
schema, the same use case, the same scope) and answered with the same body, so a registrar
system that knows the single routes reads a batch's results without learning anything new.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import BaseModel, TypeAdapter, ValidationError

from services.registry.entrypoints import schemas_certificates as sr
from services.registry.entrypoints import schemas_vital_events as s
from services.registry.entrypoints.routes_certificates import CertificateNumber
from services.registry.service_layer import (
    births,
    certificates,
    corrections,
    marriages,
    migrations,
    persons,
    pregnancies,
)
from services.registry.service_layer.batches import Item
from services.registry.service_layer.context import Context
from shared.auth import Client
from shared.errors import DomainError, Forbidden, InvalidInput, validation_problem

Body = dict[str, Any]
# (connection, context, jurisdiction, the record acted on, the kind's validated command) -> its answer
UseCase = Callable[[asyncpg.Connection, Context, str, Any, Any], Awaitable[BaseModel]]
WRITE = "persons:write"  # what every single write route requires today (routes_common.Writer)


@dataclass(frozen=True)
class Kind:
    """One write kind: the single route it stands for and what that route uses."""

    route: str
    body: type[BaseModel]
    answer: type[BaseModel]
    run: UseCase
    status: int = 201
    target: TypeAdapter[Any] | None = None  # the record acted on: the single route's path parameter
    target_name: str = "target"  # that parameter's name, which the single route's problems use
    scope: str = WRITE


def _new(use_case: Callable[[asyncpg.Connection, Context, str, Any], Awaitable[BaseModel]]) -> UseCase:
    """A use case that creates a record (no record acted on)."""

    async def run(conn: asyncpg.Connection, ctx: Context, here: str, _: Any, body: Any) -> BaseModel:
        return await use_case(conn, ctx, here, body)

    return run


def _change(route: str, body: type[BaseModel], answer: type[BaseModel], run: UseCase, target: str) -> Kind:
    """A kind that changes a record named in its single route's path (a 200, not a 201)."""
    adapter = TypeAdapter(CertificateNumber) if target == "number" else _UUID
    return Kind(route, body, answer, run, status=200, target=adapter, target_name=target)


_UUID = TypeAdapter(uuid.UUID)
KINDS: dict[str, Kind] = {
    "person": Kind("/v1/persons", s.PersonIn, s.PersonOut, _new(persons.register_person)),
    "migration": Kind("/v1/migrations", s.MigrationIn, s.MigrationOut, _new(migrations.record_migration)),
    "marriage": Kind("/v1/marriages", s.MarriageIn, s.MarriageOut, _new(marriages.register_marriage)),
    "marriage_dissolution": _change(
        "/v1/marriages/{marriage_id}/dissolution",
        s.DissolutionIn,
        s.MarriageOut,
        marriages.dissolve_marriage,
        "marriage_id",
    ),
    "pregnancy": Kind("/v1/pregnancies", s.PregnancyIn, s.PregnancyOut, _new(pregnancies.register_pregnancy)),
    "pregnancy_closure": _change(
        "/v1/pregnancies/{pregnancy_id}/closure",
        s.ClosureIn,
        s.PregnancyOut,
        pregnancies.close_pregnancy,
        "pregnancy_id",
    ),
    "birth": Kind("/v1/births", s.BirthIn, s.BirthOut, _new(births.register_birth)),
    "correction": Kind(
        "/v1/corrections", s.CorrectionIn, s.CorrectionOut, _new(corrections.record_correction)
    ),
    "certificate": Kind(
        "/v1/certificates", sr.CertificateIn, sr.CertificateOut, _new(certificates.issue_certificate)
    ),
    "certificate_revocation": _change(
        "/v1/certificates/{number}/revocation",
        sr.RevocationIn,
        sr.RevocationOut,
        certificates.revoke_certificate,
        "number",
    ),
}


class Refused(InvalidInput):
    """An item that failed validation: its problem+json is the single route's 422 body as is."""

    def __init__(self, problem: Body):
        super().__init__(problem["detail"])
        self.validation = problem

    def body(self) -> Body:
        return self.validation


def prepare(
    kind_name: Any, target: Any, body: Any, client: Client, ctx: Context, here: str
) -> Item | DomainError:
    """The item's use case bound to its checked input, or why the item is refused before the database."""
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        return InvalidInput(f"kind must be one of {', '.join(KINDS)}", field="kind", rule="batch-item-kind")
    if not client.has(kind.scope):
        return Forbidden(f"this client lacks the '{kind.scope}' scope", rule="scope", scope=kind.scope)
    try:
        acted_on = _target(kind, target)
        checked = kind.body.model_validate(body)
    except ValidationError as e:
        return Refused(validation_problem(e.errors()))
    except DomainError as e:
        return e

    async def run(conn: asyncpg.Connection) -> BaseModel:
        return await kind.run(conn, ctx, here, acted_on, checked)

    return run


def _target(kind: Kind, value: Any) -> Any:
    if kind.target is None:
        if value is not None:
            raise InvalidInput(
                "this kind acts on no existing record: send no target", field="target", rule="no-target"
            )
        return None
    if value is None:
        raise InvalidInput(f"name the record acted on ({kind.route})", field="target", rule="target-required")
    try:
        return kind.target.validate_python(value)
    except ValidationError as e:
        raise Refused(
            validation_problem([{**err, "loc": (kind.target_name,)} for err in e.errors()])
        ) from None


def answer(kind: str, result: BaseModel) -> Body:
    """The item's created or changed record, exactly as its single route answers it."""
    return KINDS[kind].answer.model_validate(result, from_attributes=True).model_dump(mode="json")
