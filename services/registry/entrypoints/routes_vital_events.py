"""The vital-event write routes: persons, marriages, moves, pregnancies, births, corrections.

Each is a row of ``write_kinds.KINDS`` (route, schemas, use case in ``service_layer/<kind>.py``,
OpenAPI text), the same row a batch item of that kind is checked by; the route is one call of
its use case with the validated body and the request's ``Recorder`` (``routes_common.py``).
"""

from __future__ import annotations

from fastapi import APIRouter

from services.registry.entrypoints.write_kinds import VITAL_EVENTS, add_routes

router = APIRouter(prefix="/v1", tags=[VITAL_EVENTS])
add_routes(router, VITAL_EVENTS)
