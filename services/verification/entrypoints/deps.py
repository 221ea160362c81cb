"""The verifier dependency shared by the verification service's routers."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Request, Security

from services.verification.domain.rate_limit import TokenBuckets
from services.verification.entrypoints.state import verification_state
from shared.app import service_state
from shared.auth import Client
from shared.errors import Forbidden, TooManyRequests


async def verifier(request: Request) -> Client:
    """A client with the ``verify`` scope and tokens left in its bucket: one async dependency
    (a sync one would hop through the thread pool on every request)."""
    client = service_state(request.app).clients.authenticate(request.headers.get("authorization"))
    request.state.client_id = client.client_id
    if "verify" not in client.scopes:
        raise Forbidden("this client lacks the 'verify' scope", rule="scope", scope="verify")
    wait = verification_state(request).buckets.take(client.client_id, time.monotonic())
    if wait:
        retry = TokenBuckets.retry_after_header(wait)
        raise TooManyRequests(
            f"rate limit of this client exceeded; retry in {retry} s", rule="rate-limit", retry_after=retry
        )
    return client


Verifier = Annotated[Client, Security(verifier, scopes=["verify"])]
