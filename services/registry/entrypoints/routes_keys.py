"""The key routes: the published certificate-signing keys (JWKS) and a key rotation."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.registry.entrypoints import schemas_keys as s
from services.registry.entrypoints.routes_common import IdempotencyKey, Writer, here, problems
from services.registry.service_layer.keys import jwks
from services.registry.service_layer.keys import rotate_key as rotate_key_for
from shared.app import UnitOfWork

router = APIRouter(prefix="/v1")
Body = dict[str, object]


@router.get(
    "/keys", response_model=s.Jwks, summary="Certificate-signing keys (JWKS)", tags=["registry: certificates"]
)
async def keys(conn: UnitOfWork) -> Body:
    """Public Ed25519 keys of the jurisdictions served: active, and retired within their overlap window."""
    return await jwks(conn)


@router.post(
    "/keys/rotation",
    response_model=s.KeyRotationOut,
    summary="Rotate the jurisdiction's signing key",
    tags=["registry: certificates"],
    responses=problems(),
)
async def rotate_key(
    request: Request, conn: UnitOfWork, client: Writer, idempotency_key: IdempotencyKey = None
) -> Body:
    """A new key signs from now on; the old one stays published so issued certificates keep verifying."""
    return await rotate_key_for(conn, request.app.state.settings, here(request, client))
