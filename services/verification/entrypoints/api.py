"""HTTP and Kafka entry points of the verification service."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from services.verification.domain.verdict import Purpose, Result
from services.verification.service_layer import handlers
from services.verification.settings import VerificationSettings
from shared.app import UnitOfWork, create_service_app
from shared.auth import Client, require
from shared.consumer import EventConsumer
from shared.events.envelope import Envelope
from shared.identity import IdNumber, subject_key

router = APIRouter(prefix="/v1", tags=["verification"])
Verifier = Annotated[Client, require("verify")]


class VerificationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    certificate_number: str = Field(min_length=1, max_length=40, examples=["320412-2026-ABCDEFGH"])
    holder_id_number: IdNumber
    purpose: Purpose


class VerificationOut(BaseModel):
    certificate_number: str
    result: Result
    issuer: str | None
    attributes: dict[str, Any] = Field(description="only what the purpose allows; never pregnancy data")
    checked_at: dt.datetime


@router.post("/verifications", response_model=VerificationOut, summary="Verify a certificate for its holder")
async def verify(
    body: VerificationIn, request: Request, conn: UnitOfWork, client: Verifier
) -> dict[str, Any]:
    """Is this certificate genuine, in force, and held by this person? Discloses the minimum."""
    secret = request.app.state.settings.subject_key_secret.get_secret_value().encode()
    return await handlers.verify_certificate(
        conn, client, body.certificate_number, subject_key(body.holder_id_number, secret), body.purpose
    )


def consumers(pool: asyncpg.Pool, settings: VerificationSettings) -> list[EventConsumer]:
    async def handle(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
        await handlers.apply_lifecycle(conn, event)

    return [
        EventConsumer(
            pool, settings, name=settings.consumer_group, topics=["certificate.lifecycle.v1"], handler=handle
        )
    ]


def create_app(settings: VerificationSettings | None = None) -> FastAPI:
    settings = settings or VerificationSettings()
    return create_service_app(
        settings,
        title="Certificate verification",
        description="Online and offline verification of 婚育证明 certificates, with minimal disclosure.",
        routers=[router],
        consumers=consumers,
    )
