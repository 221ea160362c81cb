"""The exchange's application state: built once at start (``entrypoints/app.py``), read through
``exchange_state``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
from fastapi import Request

from services.migrant_exchange.adapters.registries import RegistryClient
from services.migrant_exchange.service_layer.live_feed import LiveFeed
from services.migrant_exchange.settings import ExchangeSettings
from shared.app import service_resources


@dataclass(frozen=True, slots=True)
class ExchangeState:
    settings: ExchangeSettings
    pool: asyncpg.Pool
    registries: RegistryClient  # the registries' reconciliation endpoints
    live_feed: LiveFeed  # the operations centre's picture, behind ``GET /v1/stream``
    tasks: list[asyncio.Task[None]]  # ``entrypoints/background.py``


def exchange_state(request: Request) -> ExchangeState:
    """The state of the app serving this request."""
    state = service_resources(request.app)
    assert isinstance(state, ExchangeState)
    return state
