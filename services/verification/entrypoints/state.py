"""Verification's application state: built once at start (``entrypoints/app.py``), read through
``verification_state``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
from fastapi import Request

from services.verification.adapters.audit_writer import AuditWriter
from services.verification.adapters.keys import StatusListSigner
from services.verification.domain.rate_limit import TokenBuckets
from services.verification.entrypoints.background import KeyRefresher
from services.verification.settings import VerificationSettings
from shared.app import service_resources


@dataclass(frozen=True, slots=True)
class VerificationState:
    settings: VerificationSettings
    pool: asyncpg.Pool
    subject_secret: bytes  # keys a presented identity number as the read model keys holders
    buckets: TokenBuckets  # the per-client rate limit of this process
    signer: StatusListSigner  # signs status lists
    audit_writer: AuditWriter  # the audit's group commit, and the read of a checked certificate
    key_refresher: KeyRefresher | None  # None without key URLs
    tasks: list[asyncio.Task[None]]  # ``entrypoints/background.py``


def verification_state(request: Request) -> VerificationState:
    """The state of the app serving this request."""
    state = service_resources(request.app)
    assert isinstance(state, VerificationState)
    return state
