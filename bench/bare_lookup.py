"""The ceiling to compare against: a bare FastAPI + asyncpg single-row lookup, nothing else.

Same request shape as a verification (POST, JSON body, one indexed row by certificate number),
no auth, no audit, no validation beyond the body model, no middleware.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from pydantic import BaseModel


class LookupIn(BaseModel):
    certificate_number: str


async def _keep_session(conn: asyncpg.Connection) -> None:
    pass


def create_app() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        options: dict[str, Any] = {}
        if os.environ.get("BARE_NO_RESET") == "1":  # the same pool trick the verification hot path uses
            options["reset"] = _keep_session
        app.state.pool = await asyncpg.create_pool(
            os.environ["DATABASE_URL"],
            min_size=2,
            max_size=int(os.environ.get("DB_POOL_MAX", "10")),
            **options,
        )
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/lookup")
    async def lookup(body: LookupIn, request: Request) -> dict[str, Any]:
        row = await request.app.state.pool.fetchrow(
            "SELECT number, issuer, holder_name, valid_until FROM certificates WHERE number = $1",
            body.certificate_number,
        )
        return {"found": row is not None, **(dict(row) if row else {})}

    return app
