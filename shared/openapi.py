"""What every service's OpenAPI document says about errors and credentials, in one place.

The answers the shared edge gives are derived from each route, so no route can forget them:

* a route that authenticates (a dependency on ``current_client``, or one declared with
  scopes through ``fastapi.Security``) gets the ``bearer`` security requirement, naming the
  scopes it needs, and 401 and 403;
* a route with any parameter or body gets 422 (validation, and text ``shared.inputs`` refuses);
* a POST gets 400, 413 and 415 (``shared.limits`` refuses bodies before any route sees them);
* a route that uses the database (``database_dependencies``) gets 503 (``shared.errors``).

What only the route knows (404, 409, 429...) it declares with ``problems(...)``; a route that
authenticates without a dependency (a hot path) declares ``secured(scope)``. Every error is an
``application/problem+json`` ``Problem``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel, ConfigDict

from shared.auth import current_client
from shared.errors import PROBLEM_JSON
from shared.jsontypes import JsonObject

BEARER = "bearer"
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "<client_id>.<secret>",
    "description": "a registered client's credential; each operation names the scopes it needs",
}
DESCRIPTIONS = {
    400: "the body is not UTF-8 or nests too deeply (the rule is named)",
    401: "no valid bearer credential",
    403: "the client lacks the scope or serves another jurisdiction",
    404: "not found in the records the client may see",
    409: "conflicts with the current records (the rule is named)",
    413: "the body is larger than the limit",
    415: "the body is not application/json in UTF-8",
    422: "breaks a validation or registration rule (the field and rule are named)",
    429: "the client's rate limit is spent; retry after Retry-After seconds",
    503: "a dependency is unavailable; retry (with the same Idempotency-Key)",
}
_BODY_METHODS = {"POST", "PUT", "PATCH"}


class ProblemError(BaseModel):
    field: str | None
    rule: str | None
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details; ``errors`` names the field and the rule that was broken."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:migrant-exchange:problem:conflict",
                    "title": "The request conflicts with the current records",
                    "status": 409,
                    "detail": "spouse_a_id_number is already married",
                    "errors": [
                        {
                            "field": "spouse_a_id_number",
                            "rule": "one-active-marriage",
                            "message": "spouse_a_id_number is already married",
                        }
                    ],
                }
            ]
        },
    )
    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[ProblemError] | None = None


def problems(*codes: int) -> dict[int | str, JsonObject]:
    """OpenAPI ``responses`` entries for the problem+json answers only the route knows it gives."""
    return {
        c: {"model": Problem, "description": DESCRIPTIONS[c], "content": {PROBLEM_JSON: {}}} for c in codes
    }


def secured(*scopes: str) -> JsonObject:
    """``openapi_extra`` of a route that authenticates inside its body rather than by a dependency."""
    return {"security": [{BEARER: list(scopes)}]}


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependants(sub)


def _authentication(route: RouteContext) -> list[str] | None:
    """The scopes a route's dependencies demand (possibly none), or None if it never authenticates."""
    found: list[str] | None = None
    for sub in _dependants(route.dependant):
        if sub.own_oauth_scopes:
            found = [*(found or []), *sub.own_oauth_scopes]
        elif sub.call is current_client and found is None:
            found = []
    return found


def _has_parameters(route: RouteContext, operation: JsonObject) -> bool:
    return bool(operation.get("parameters") or operation.get("requestBody") or route.dependant.body_params)


def _edge_answers(
    route: RouteContext, operation: JsonObject, database: set[Callable[..., object]]
) -> list[int]:
    codes = []
    if _has_parameters(route, operation):
        codes.append(422)
    if (route.methods or set()) & _BODY_METHODS:
        codes += [400, 413, 415]
    if any(sub.call in database for sub in _dependants(route.dependant)):
        codes.append(503)
    return codes


def _problem_response(code: int, existing: JsonObject | None) -> JsonObject:
    return {
        "description": (existing or {}).get("description") or DESCRIPTIONS[code],
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _document(route: RouteContext, operation: JsonObject, database: set[Callable[..., object]]) -> None:
    responses: JsonObject = operation.setdefault("responses", {})
    scopes = _authentication(route)
    if scopes is not None:
        operation["security"] = [{BEARER: sorted(set(scopes))}]
    codes = set(_edge_answers(route, operation, database))
    if "security" in operation:
        codes |= {401, 403}
    # A route's own declarations: problems(...) entries; other media types (a health report) stay.
    codes |= {
        int(c)
        for c, answer in responses.items()
        if c.isdigit() and int(c) >= 400 and PROBLEM_JSON in answer.get("content", {PROBLEM_JSON: {}})
    }
    for code in sorted(codes):
        responses[str(code)] = _problem_response(code, responses.get(str(code)))


def install_openapi(app: FastAPI, database_dependencies: set[Callable[..., object]]) -> None:
    """Replace ``app.openapi`` by one that documents every answer of the shared edge."""

    def openapi() -> JsonObject:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            description=app.description,
            routes=app.routes,
        )
        # Routes of included routers are seen through their effective context (prefix, dependencies).
        for route in iter_route_contexts(app.routes):
            if isinstance(route.original_route, APIRoute) and route.include_in_schema:
                path = schema["paths"].get(route.path_format, {})
                for method in route.methods or ():
                    if method.lower() in path:
                        _document(route, path[method.lower()], database_dependencies)
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schemas["Problem"].pop("$defs", {}))
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        components.setdefault("securitySchemes", {})[BEARER] = SECURITY_SCHEME
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
