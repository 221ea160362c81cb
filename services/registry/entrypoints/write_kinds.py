"""The registry's writes, one row each: route, schemas, use case, scope and OpenAPI text.

The single write routes (``routes_vital_events.py``, ``routes_certificates.py``) are built from
this table by ``add_routes``, and a batch item (``routes_batches.py``) of a kind is checked
exactly as its single route checks a request (the same pydantic schema, the same use case, the
same scope) and answered with the same body: a registrar system that knows the single routes
reads a batch's results without learning anything new, and a new write kind is one row here.

The single route of a kind with a use case for many at once (moves, most of the traffic) is
group-committed: concurrent requests are recorded as one batch in one transaction, each answered
as if alone (``Grouped``); under an ``Idempotency-Key`` a request keeps its own transaction,
which stores its answer with its effect.
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError

from services.registry.adapters import records
from services.registry.entrypoints import schemas_certificates as sr
from services.registry.entrypoints import schemas_vital_events as s
from services.registry.entrypoints.routes_common import (
    TRACEPARENT,
    WRITE,
    CertificateNumber,
    Recorder,
    WriteScope,
    Writing,
    caller,
    problems,
)
from services.registry.service_layer import (
    births,
    certificates,
    corrections,
    marriages,
    migrations,
    persons,
    pregnancies,
)
from services.registry.service_layer.batches import Outcome, Prepared, record_group
from services.registry.service_layer.context import Context
from shared.app import ServiceState, service_resources, service_state
from shared.auth import Client
from shared.db import unit_of_work
from shared.errors import DomainError, Forbidden, InvalidInput, validation_problem
from shared.group_commit import GroupCommit
from shared.idempotency import held_connection
from shared.tracing import current_traceparent

Body = dict[str, Any]
# (connection, context, jurisdiction, the record acted on, the kind's validated command) -> its answer
UseCase = Callable[[asyncpg.Connection, Context, str, Any, Any], Awaitable[BaseModel]]
Create = Callable[[asyncpg.Connection, Context, str, Any], Awaitable[BaseModel]]
# (connection, context, jurisdiction, a run of a batch's validated commands, the trace each one's
# event carries) -> each one's answer or refusal
CreateMany = Callable[
    [asyncpg.Connection, Context, str, list[Any], list[str | None]],
    Awaitable[Sequence[BaseModel | DomainError]],
]
VITAL_EVENTS, CERTIFICATES = "registry: vital events", "registry: certificates"
# (the record acted on, the kind's validated command) -> the records, as (type, key), whose people
# an item of the kind locks: a batch of several runs locks them all first, in key order
# (``service_layer.batches``), rather than item by item in the caller's order.
Touches = Callable[[Any, Any], tuple[tuple[str, object], ...]]


def _nobody(_: Any, __: Any) -> tuple[tuple[str, object], ...]:
    return ()


def _people(*fields: str) -> Touches:
    """The persons the command names in these fields."""
    return lambda _, command: tuple(("person", getattr(command, f)) for f in fields)


def _acted_on(record_type: str) -> Touches:
    """The people of the record the item acts on (a marriage's spouses, a pregnancy's mother)."""
    return lambda target, _: ((record_type, target),)


def _corrected(_: Any, command: Any) -> tuple[tuple[str, object], ...]:
    key = records.record_key(command.record_type, command.record_id)
    return () if key is None else ((command.record_type, key),)


@dataclass(frozen=True)
class Doc:
    """The single route's OpenAPI text: its function name (and operation id), summary, description."""

    name: str
    summary: str
    description: str
    problems: tuple[int, ...] = (409, 422)
    tag: str = VITAL_EVENTS


@dataclass(frozen=True)
class Kind:
    """One write kind: its single route and what that route uses."""

    route: str
    body: type[BaseModel]
    answer: type[BaseModel]
    run: UseCase
    doc: Doc
    status: int = 201
    target: Any = None  # the record acted on: the type of the single route's path parameter
    target_name: str = "target"  # that parameter's name, which the single route's problems use
    target_adapter: TypeAdapter[Any] | None = None  # a batch item's target checked as that parameter
    scope: str = WRITE
    together: CreateMany | None = None  # a batch's run of items of this kind recorded at once
    touches: Touches = _nobody


def _new(
    route: str,
    body: type[BaseModel],
    answer: type[BaseModel],
    use_case: Create,
    doc: Doc,
    touches: Touches,
    together: CreateMany | None = None,
) -> Kind:
    """A kind that creates a record (no record acted on): a 201."""

    async def run(conn: asyncpg.Connection, ctx: Context, here: str, _: Any, command: Any) -> BaseModel:
        return await use_case(conn, ctx, here, command)

    return Kind(route, body, answer, run, doc, together=together, touches=touches)


def _change(
    route: str,
    body: type[BaseModel],
    answer: type[BaseModel],
    run: UseCase,
    doc: Doc,
    target: str,
    touches: Touches,
) -> Kind:
    """A kind that changes a record named in its single route's path (a 200, not a 201)."""
    annotation = CertificateNumber if target == "number" else uuid.UUID
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    return Kind(route, body, answer, run, doc, 200, annotation, target, adapter, touches=touches)


KINDS: dict[str, Kind] = {
    "person": _new(
        "/v1/persons", s.PersonIn, s.PersonOut, persons.register_person,
        Doc("register_person", "Register a person",
            "Record a person in the client's jurisdiction; publishes ``person.registered.v1``."),
        _people("id_number"),
    ),
    "migration": _new(
        "/v1/migrations", s.MigrationIn, s.MigrationOut, migrations.record_migration,
        Doc("record_migration", "Record a move",
            "Record a departure (at the place left), an arrival or a return (at the place arrived at)."),
        _people("id_number"), migrations.record_migrations,
    ),
    "marriage": _new(
        "/v1/marriages", s.MarriageIn, s.MarriageOut, marriages.register_marriage,
        Doc("register_marriage", "Register a marriage",
            "Record a marriage of two persons on record, neither already married; ``marriage.registered.v1``."),
        _people("spouse_a_id_number", "spouse_b_id_number"),
    ),
    "marriage_dissolution": _change(
        "/v1/marriages/{marriage_id}/dissolution", s.DissolutionIn, s.MarriageOut, marriages.dissolve_marriage,
        Doc("dissolve_marriage", "Record the end of a marriage",
            "Divorce, death or annulment; publishes ``marriage.dissolved.v1``.", (404, 409, 422)),
        "marriage_id", _acted_on("marriage"),
    ),
    "pregnancy": _new(
        "/v1/pregnancies", s.PregnancyIn, s.PregnancyOut, pregnancies.register_pregnancy,
        Doc("register_pregnancy", "Register a pregnancy",
            "Record a pregnancy for maternal care; only the mother's origin and destination hear of it."),
        _people("mother_id_number"),
    ),
    "pregnancy_closure": _change(
        "/v1/pregnancies/{pregnancy_id}/closure", s.ClosureIn, s.PregnancyOut, pregnancies.close_pregnancy,
        Doc("close_pregnancy", "Close a pregnancy record",
            "Close the record when the pregnancy ends; publishes ``pregnancy.closed.v1``.", (404, 409, 422)),
        "pregnancy_id", _acted_on("pregnancy"),
    ),
    "birth": _new(
        "/v1/births", s.BirthIn, s.BirthOut, births.register_birth,
        Doc("register_birth", "Register a birth",
            "Record a birth, one per birth medical certificate; publishes ``birth.registered.v2``."),
        _people("mother_id_number"),
    ),
    "correction": _new(
        "/v1/corrections", s.CorrectionIn, s.CorrectionOut, corrections.record_correction,
        Doc("record_correction", "Correct a record",
            "Correct fields of a record, naming the event corrected and why; ``record.corrected.v1``.",
            (404, 409, 422)),
        _corrected,
    ),
    "certificate": _new(
        "/v1/certificates", sr.CertificateIn, sr.CertificateOut, certificates.issue_certificate,
        Doc("issue_certificate", "Issue a 婚育证明",
            "Issue a signed marriage-and-childbearing certificate; the token fits a QR code.",
            (404, 422), CERTIFICATES),
        _people("holder_id_number"),
    ),
    "certificate_revocation": _change(
        "/v1/certificates/{number}/revocation", sr.RevocationIn, sr.RevocationOut,
        certificates.revoke_certificate,
        Doc("revoke_certificate", "Revoke a certificate",
            "Revoke a certificate of the client's jurisdiction; ``certificate.revoked.v1`` carries its "
            "status index.", (404, 409, 422), CERTIFICATES),
        "number", _acted_on("certificate"),
    ),
}  # fmt: skip


def add_routes(router: APIRouter, tag: str) -> None:
    """Add the single route of every kind with this tag to ``router`` (whose prefix is ``/v1``).

    Each route is one call of its use case with the validated body (and the record its path
    names) and the request's ``Recorder`` (connection, caller, jurisdiction, trace)."""
    for name, kind in KINDS.items():
        if kind.doc.tag == tag:
            router.add_api_route(
                kind.route.removeprefix(router.prefix),
                _endpoint(name, kind),
                methods=["POST"],
                status_code=kind.status,
                response_model=kind.answer,
                summary=kind.doc.summary,
                description=kind.doc.description,
                # a grouped route reaches the database without a dependency: its 503 is declared
                responses=problems(*kind.doc.problems, *((503,) if kind.together else ())),
                name=kind.doc.name,
                route_class_override=_plain_route(kind) if kind.together else None,
            )


_TRACEPARENT = re.compile(TRACEPARENT)


def _plain_route(kind: Kind) -> type[APIRoute]:
    """The route of a kind recorded together (moves: most of a registry's single requests), which
    answers a plainly well-formed request itself and hands every other to FastAPI.

    For each request FastAPI reads the body with the standard library's JSON, validates the
    resulting dict, resolves the route's parameters and dependencies one by one and validates the
    answer before dumping it: ~105 us a move measured in process, against ~35 us for what this
    handler does (pydantic reads the JSON bytes straight into the command, the route's one
    dependency, ``caller``, is called directly, the answer is dumped by its own serializer).
    A request with anything to judge (a body that does not validate, a header FastAPI checks:
    ``traceparent`` malformed, an ``Idempotency-Key``; a media type other than plain
    ``application/json``) goes to FastAPI's handler as it came, so every refusal is FastAPI's
    own, with the field and the rule named as on every route. The OpenAPI document is FastAPI's,
    made from the route's signature as for any route."""

    class Plain(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            checked = super().get_route_handler()
            endpoint, status = self.endpoint, kind.status
            answer: TypeAdapter[Any] = TypeAdapter(kind.answer)

            async def handler(request: Request) -> Response:
                headers = request.headers
                traceparent = headers.get("traceparent")
                if (
                    headers.get("content-type") != "application/json"
                    or "idempotency-key" in headers
                    or (traceparent is not None and not _TRACEPARENT.fullmatch(traceparent))
                ):
                    return await checked(request)
                try:
                    # the limits middleware has read the body whole (its size, depth and UTF-8 checked)
                    command = kind.body.model_validate_json(await request.body())
                except ValidationError:
                    return await checked(request)
                who = await caller(request, traceparent)
                result = await endpoint(body=command, who=who, request=request)
                # as FastAPI answers a route's return value: validated as the answer model, then dumped
                content = answer.dump_json(
                    answer.validate_python(result, from_attributes=True), by_alias=True
                )
                return Response(content, status_code=status, media_type="application/json")

            return handler

    return Plain


def _endpoint(name: str, kind: Kind) -> Callable[..., Awaitable[BaseModel]]:
    """The route function: ``(<path parameter>, body, rec)``, its signature read by FastAPI; for a
    kind recorded together, ``(body, who, request)``, group-committed."""
    param = inspect.Parameter
    parameters = [param("body", param.KEYWORD_ONLY, annotation=kind.body)]
    if kind.together is not None:
        endpoint = _grouped_endpoint(name, kind)
        parameters.append(param("who", param.KEYWORD_ONLY, annotation=Writing))
        parameters.append(param("request", param.KEYWORD_ONLY, annotation=Request))
    else:

        async def endpoint(body: BaseModel, rec: WriteScope, **path: Any) -> BaseModel:
            acted_on = path[kind.target_name] if kind.target is not None else None
            return await kind.run(rec.conn, rec.ctx, rec.here, acted_on, body)

        parameters.append(param("rec", param.KEYWORD_ONLY, annotation=Recorder))
    if kind.target is not None:
        parameters.insert(0, param(kind.target_name, param.KEYWORD_ONLY, annotation=kind.target))
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    endpoint.__name__ = endpoint.__qualname__ = kind.doc.name
    return endpoint


def _grouped_endpoint(name: str, kind: Kind) -> Callable[..., Awaitable[BaseModel]]:
    """A request of a kind recorded together: its item joins the next group commit and is
    answered with its own outcome, or runs alone when the group could not be written (its
    ``None``). Under an ``Idempotency-Key`` the middleware's transaction is used, as for any write."""

    async def endpoint(body: BaseModel, who: Writing, request: Request) -> BaseModel:
        held = held_connection(request.scope)
        if held is not None:
            return await kind.run(held, who.ctx, who.here, None, body)
        # The group is written outside this request's context: its trace travels in the item.
        ctx = replace(who.ctx, traceparent=current_traceparent() or who.ctx.traceparent)
        outcome = await grouped(request.app).submit(_bound(kind, name, ctx, who.here, None, body))
        if outcome is None:
            async with unit_of_work(service_state(request.app).pool) as conn:
                return await kind.run(conn, ctx, who.here, None, body)
        if outcome.error is not None:
            raise outcome.error
        assert outcome.result is not None
        return outcome.result

    return endpoint


# Single requests recorded together: at most this many in one transaction, one group at a time
# (while it commits, the next group gathers; an idle registry writes a lone request at once).
GROUP_MAX = 256
Grouped = GroupCommit[Prepared, Outcome | None]


@asynccontextmanager
async def group_commit(state: ServiceState) -> AsyncIterator[Grouped]:
    """The registry's group commit of single requests, for the app's lifetime (its ``resources``)."""
    group: Grouped = GroupCommit(
        partial(record_group, state.pool), name="registry-writes", linger=0, max_batch=GROUP_MAX, slots=1
    )
    group.start()
    try:
        yield group
    finally:
        await group.stop()


def grouped(app: FastAPI) -> Grouped:
    group = service_resources(app)
    assert isinstance(group, GroupCommit)
    return group


class Refused(InvalidInput):
    """An item that failed validation: its problem+json is the single route's 422 body as is."""

    def __init__(self, problem: Body):
        super().__init__(problem["detail"])
        self.validation = problem

    def body(self) -> Body:
        return self.validation


def prepare(
    kind_name: Any, target: Any, body: Any, client: Client, ctx: Context, here: str
) -> Prepared | DomainError:
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
    return _bound(kind, kind_name, ctx, here, acted_on, checked)


def _bound(kind: Kind, kind_name: str, ctx: Context, here: str, acted_on: Any, checked: Any) -> Prepared:
    """The kind's use case bound to a checked command (and, where it has one, its use case for a run)."""

    async def run(conn: asyncpg.Connection) -> BaseModel:
        return await kind.run(conn, ctx, here, acted_on, checked)

    touches = tuple((record_type, here, key) for record_type, key in kind.touches(acted_on, checked))
    if kind.together is None:
        return Prepared(run, kind_name, checked, touches=touches)
    many = kind.together

    async def together(
        conn: asyncpg.Connection, commands: list[Any], traces: list[str | None]
    ) -> Sequence[BaseModel | DomainError]:
        return await many(conn, ctx, here, commands, traces)

    return Prepared(run, kind_name, checked, together, here, ctx.traceparent, touches)


def _target(kind: Kind, value: Any) -> Any:
    if kind.target_adapter is None:
        if value is not None:
            raise InvalidInput(
                "this kind acts on no existing record: send no target", field="target", rule="no-target"
            )
        return None
    if value is None:
        raise InvalidInput(f"name the record acted on ({kind.route})", field="target", rule="target-required")
    try:
        return kind.target_adapter.validate_python(value)
    except ValidationError as e:
        raise Refused(
            validation_problem([{**err, "loc": (kind.target_name,)} for err in e.errors()])
        ) from None


def answer(kind: str, result: BaseModel) -> Body:
    """The item's created or changed record, exactly as its single route answers it."""
    return KINDS[kind].answer.model_validate(result, from_attributes=True).model_dump(mode="json")
