"""Our error hierarchy and the single edge that turns errors into RFC 9457 problem+json."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "urn:migrant-exchange:problem:"


class DomainError(Exception):
    """An error that means something to the caller. Subclasses fix status and problem type."""

    status = 400
    problem = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, *, field: str | None = None, rule: str | None = None, **extra: object):
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.rule = rule
        self.extra = extra

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {
            "type": PROBLEM_BASE + self.problem,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.field or self.rule:
            body["errors"] = [{"field": self.field, "rule": self.rule, "message": self.detail}]
        body.update(self.extra)
        return body


class InvalidInput(DomainError):
    status, problem, title = 422, "invalid-input", "The request breaks a validation rule"


class RuleViolation(DomainError):
    """A registrar's domain rule was broken by an otherwise well-formed request."""

    status, problem, title = 422, "rule-violation", "The request breaks a registration rule"


class Conflict(DomainError):
    status, problem, title = 409, "conflict", "The request conflicts with the current records"


class NotFound(DomainError):
    status, problem, title = 404, "not-found", "Not found"


class Unauthorized(DomainError):
    status, problem, title = 401, "unauthorized", "A valid bearer credential is required"


class Forbidden(DomainError):
    status, problem, title = 403, "forbidden", "The client may not do this"


class TooManyRequests(DomainError):
    status, problem, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(DomainError):
    status, problem, title = (
        503,
        "unavailable",
        "A dependency is unavailable; retry with the same Idempotency-Key",
    )


# Driver errors that mean "this value cannot be stored": SQLSTATE classes 22 (data exception)
# and 54 (program limit exceeded, e.g. an index row too large), and asyncpg's own refusal to
# encode an argument (an integer beyond 64 bits), which it raises before sending anything.
_UNSTORABLE_VALUE = (
    asyncpg.DataError,
    asyncpg.ProgramLimitExceededError,
    asyncpg.exceptions._base.DataError,
)


def problem_response(
    status: int, body: Mapping[str, object], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: tuple[object, ...]) -> str:
    # Only FastAPI's first element says where the value came from; a later "body" is a field of
    # that name (a batch item's), and dropping it would name the wrong field.
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)]
    return ".".join(parts) or str(loc[-1] if loc else "body")


def validation_problem(found: Sequence[Mapping[str, object]]) -> dict[str, object]:
    """The problem+json body of input that failed pydantic validation, each error's field and rule
    named: what a route answers for its body, and what a batch answers for one of its items."""
    errors = _validation_errors(found)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return {
        "type": PROBLEM_BASE + "invalid-input",
        "title": "The request breaks a validation rule",
        "status": 422,
        "detail": detail,
        "errors": errors,
    }


def request_fault(exc: BaseException) -> DomainError | None:
    """The answer a database error earns when the request itself is at fault, else None.

    A constraint caught what the domain checks did not (the records disagree with the request:
    409), or PostgreSQL cannot hold a value the edge let through (out of range, too long, an
    invalid character: 422; the value is never logged). Anything else is the server's trouble.
    """
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return Conflict(
            f"the request conflicts with existing records ({exc.constraint_name or 'constraint'})"
        )
    if isinstance(exc, _UNSTORABLE_VALUE):
        return InvalidInput(
            "a value of the request cannot be stored (out of range, too long or an invalid character)",
            rule="storable-value",
        )
    return None


def describe_fault(exc: BaseException) -> dict[str, str]:
    """What a log line or a span may say of an error: its class and, from PostgreSQL, its SQLSTATE.

    Never the message: a driver error's text carries PostgreSQL's DETAIL line, which quotes the
    failing row or key, identity numbers and pregnancy records included.
    """
    fault = {"error": type(exc).__name__}
    if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate:
        fault["sqlstate"] = exc.sqlstate
    return fault


def fault_text(exc: BaseException) -> str:
    """``describe_fault`` as one line, with the constraint a driver error names (a constraint's
    name is the schema's, never the row's): ``CheckViolationError: sqlstate 23514, constraint
    persons_sex_check``; an error with neither is told by its class alone."""
    fault = describe_fault(exc)
    said = [f"sqlstate {fault['sqlstate']}"] if "sqlstate" in fault else []
    if constraint := getattr(exc, "constraint_name", None):
        said.append(f"constraint {constraint}")
    return f"{fault['error']}: {', '.join(said)}" if said else fault["error"]


def _validation_errors(found: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
    errors: list[dict[str, object]] = []
    for err in found:
        msg = str(err.get("msg", "invalid"))
        loc = err.get("loc", ())
        errors.append(
            {
                "field": _field_path(tuple(loc) if isinstance(loc, tuple | list) else ()),
                "rule": err.get("type"),
                "message": msg.removeprefix("Value error, "),
            }
        )
    return errors


def install_error_handlers(app: FastAPI) -> None:
    """The one place where exceptions become HTTP answers."""

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        headers = {"Retry-After": str(exc.extra["retry_after"])} if "retry_after" in exc.extra else None
        if exc.status == 401:
            headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
        return problem_response(exc.status, exc.body(), headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(422, validation_problem(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = {"type": "about:blank", "title": str(exc.detail), "status": exc.status_code}
        return problem_response(exc.status_code, body, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        from shared.db import is_contention, is_unavailable

        fault = request_fault(exc)
        if fault is not None:
            if fault.status == 422:
                log.warning("value refused by the database", extra=describe_fault(exc))
            return problem_response(fault.status, fault.body())
        if is_unavailable(exc):
            log.warning("dependency unavailable", extra=describe_fault(exc))
            unavailable = ServiceUnavailable(
                "the database is unavailable; retry with the same Idempotency-Key"
            )
            return problem_response(503, unavailable.body(), {"Retry-After": "1"})
        if is_contention(exc):
            log.warning("transaction lost to another; nothing written", extra=describe_fault(exc))
            busy = ServiceUnavailable(
                "the records were busy and nothing was written; retry with the same Idempotency-Key"
            )
            return problem_response(503, busy.body(), {"Retry-After": "1"})
        log.exception("unhandled error", extra=describe_fault(exc))
        body = {"type": PROBLEM_BASE + "internal", "title": "Internal error", "status": 500}
        return problem_response(500, body)
