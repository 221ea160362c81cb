"""What every service's FastAPI app has: lifespan wiring, unit of work, health, readiness, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared import db, retention
from shared.audit_anchor import AuditCheckpointer
from shared.auth import ClientRegistry
from shared.clients_file import ClientSources
from shared.consumer import EventConsumer
from shared.consumer_health import ConsumerMonitor
from shared.contracts_routes import contracts_router
from shared.db import create_pool, migrate
from shared.errors import install_error_handlers
from shared.idempotency import IdempotencyMiddleware, held_connection
from shared.kafka import missing_topics
from shared.limits import RequestLimitsMiddleware
from shared.observability import MetricsMiddleware, configure_logging
from shared.openapi import install_openapi
from shared.outbox_measure import measure_outbox
from shared.outbox_relay import OutboxRelay
from shared.retention import Purge
from shared.settings import BaseServiceSettings
from shared.shutdown import shut_down, stop_tasks
from shared.tracing import TracingMiddleware, configure_tracing, native_telemetry_off

log = logging.getLogger(__name__)

S = TypeVar("S", bound=BaseServiceSettings)
# Every consumer of a service, built from its pool and its own settings class.
ConsumerFactory = Callable[[asyncpg.Pool, S], Sequence[EventConsumer]]
# A service's own start-up and shut-down, around the shared state (see ``create_service_app``).
Resources = Callable[["ServiceState"], AbstractAsyncContextManager[object]]


async def unit_of_work(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """The request's unit of work (``shared.db.unit_of_work``): commits when the route returns,
    rolls back if it raises; a POST wakes the outbox relay after the commit. Under an
    Idempotency-Key the middleware already holds it, and the route takes that connection."""
    held = held_connection(request.scope)
    if held is not None:
        yield held
        return
    async with db.unit_of_work(service_state(request.app).pool, wake=request.method == "POST") as conn:
        yield conn


UnitOfWork = Annotated[asyncpg.Connection, Depends(unit_of_work, scope="function")]


async def read_pool(request: Request) -> asyncpg.Pool:
    return service_state(request.app).pool


Pool = Annotated[asyncpg.Pool, Depends(read_pool)]


def tune_gc(gen0_threshold: int) -> None:
    """Once a service has started: everything built so far (modules, routes, models, pools) lives
    as long as the process, so it is frozen out of the collector's sight (full collections stop
    rescanning it), and the young generation is collected less often. Request garbage is freed by
    reference counting; the collector only ever finds the rare cycle."""
    gc.freeze()
    if gen0_threshold:
        gc.set_threshold(gen0_threshold, 20, 100)


@dataclass(frozen=True, slots=True)
class ServiceState:
    """What the shared lifespan builds for every service, stored once on ``app.state.service``
    and read through ``service_state``; a service's own state comes from its ``resources``."""

    settings: BaseServiceSettings
    pool: asyncpg.Pool
    clients: ClientRegistry
    relay: OutboxRelay
    consumers: list[EventConsumer]
    monitor: ConsumerMonitor
    tasks: list[asyncio.Task[None]]


def service_state(app: FastAPI) -> ServiceState:
    """The typed state the lifespan stored (``AttributeError`` before the app has started)."""
    state = app.state.service
    assert isinstance(state, ServiceState)
    return state


def service_resources(app: FastAPI) -> object:
    """What the service's ``resources`` context yielded (its own typed state; ``None`` without one)."""
    return app.state.service_resources


async def _start(
    app: FastAPI, settings: S, consumers: ConsumerFactory[S] | None, purges: Sequence[Purge]
) -> ServiceState:
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    configure_tracing(settings.service_name, settings.otel_exporter, settings.otel_endpoint)
    pool = await create_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    # The clients file (and a registry's CLIENTS_INLINE) is authoritative, applied at start and on change.
    sources = ClientSources(settings.clients_file, getattr(settings, "clients_inline", None))
    clients = ClientRegistry(pool, settings.database_url, sources, settings.service_name)
    app.state.clients = clients  # read by ``shared.auth`` (which this module imports) by name
    await clients.start()
    relay = OutboxRelay(pool, settings)
    built = list(consumers(pool, settings)) if consumers else []
    relay.reset_listeners += [c.restart for c in built]
    monitor = ConsumerMonitor(pool, settings, built)
    tasks = _background(pool, settings, relay, monitor, purges) if settings.run_background else []
    return ServiceState(settings, pool, clients, relay, built, monitor, tasks)


def _background(
    pool: asyncpg.Pool,
    settings: BaseServiceSettings,
    relay: OutboxRelay,
    monitor: ConsumerMonitor,
    purges: Sequence[Purge],
) -> list[asyncio.Task[None]]:
    """The background tasks every service runs: the relay, the consumers' supervisor, the audit
    checkpoints and the retention purges."""
    tasks = [
        asyncio.create_task(relay.run(), name="outbox-relay"),
        asyncio.create_task(monitor.run(), name="consumers"),
    ]
    if settings.audit_checkpoint_interval > 0:
        checkpointer = AuditCheckpointer(pool, settings)
        tasks.append(asyncio.create_task(checkpointer.run(), name="audit-checkpoint"))
    if settings.retention_interval_seconds > 0:
        kept = [*retention.shared_purges(settings), *purges]
        tasks.append(asyncio.create_task(retention.run(pool, settings, kept), name="retention"))
    return tasks


def create_service_app(
    settings: S,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    consumers: ConsumerFactory[S] | None = None,
    resources: Resources | None = None,
    purges: Sequence[Purge] = (),
    batch_paths: Sequence[str] = (),
) -> FastAPI:
    """Build a service app; pools, producers and consumers are created in the lifespan, never at
    import. ``resources`` is the service's own start-up: an async context entered once the shared
    state is up (it yields the service's typed state, kept as ``service_resources``) and left
    before the shared tasks stop. ``batch_paths`` are routes that refuse a body's items one by one
    (``RequestLimitsMiddleware``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await _start(app, settings, consumers, purges)
        app.state.service = state
        own = contextlib.AsyncExitStack()
        try:
            app.state.service_resources = (
                await own.enter_async_context(resources(state)) if resources else None
            )
            tune_gc(settings.gc_gen0_threshold)
            log.info("service started", extra={"port": settings.port})
            yield
        finally:
            log.info("service stopping")
            stopped = await shut_down(
                [
                    ("service resources", own.aclose),
                    ("background tasks", lambda: stop_tasks(state.tasks)),
                    ("clients watch", state.clients.stop),
                    ("database pool", state.pool.close),
                ],
                state.pool,
                settings.shutdown_timeout,
            )
            if stopped:
                log.info("service stopped")

    app = FastAPI(
        title=title, description=description, version="1.0.0", lifespan=lifespan, **native_telemetry_off()
    )
    install_error_handlers(app)
    install_openapi(app, database_dependencies={unit_of_work, read_pool})
    app.add_middleware(IdempotencyMiddleware, pool_getter=lambda scope: service_state(app).pool)
    # Outside the idempotency middleware: hostile bodies are refused before anything buffers them.
    app.add_middleware(RequestLimitsMiddleware, batch_paths=batch_paths)
    app.add_middleware(MetricsMiddleware, service=settings.service_name)
    app.add_middleware(TracingMiddleware)  # outermost: the request's span encloses everything
    for router in routers:  # first: routes are matched in order, and these carry the traffic
        app.include_router(router)
    app.include_router(_ops_router())
    app.include_router(contracts_router())
    return app


def _ops_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: database and broker reachable, the outbox draining, every consumer making "
        "progress; with the outbox backlog, each consumer's lag and the relay's role",
        responses={
            503: {
                "description": "not ready: the same report, naming what is unavailable",
                "content": {"application/json": {}},
            }
        },
    )
    async def readyz(request: Request) -> JSONResponse:
        state = service_state(request.app)
        report: dict[str, Any] = {}
        try:
            async with state.pool.acquire(timeout=2) as conn:
                row = await measure_outbox(conn)
            report["database"] = "ok"
            report["outbox_backlog"] = row["backlog"]
            report["outbox_oldest_age_seconds"] = round(row["oldest"], 3)
            report["outbox_refused"] = row["refused"]
            # Whichever replica relays (or none): every replica says the outbox does not drain.
            limit = state.settings.outbox_stall_seconds
            report["outbox"] = (
                "ok" if row["oldest"] <= limit else f"stalled: oldest event waits over {limit:g} s"
            )
        except Exception as e:
            report["database"] = f"unavailable: {type(e).__name__}"
        try:
            await asyncio.wait_for(missing_topics(state.settings, []), 2.0)
            report["broker"] = "ok"
        except Exception as e:
            report["broker"] = f"unavailable: {type(e).__name__}"
        monitor = state.monitor
        report["relay"] = "leader" if state.relay.leader else "standby"
        if state.settings.run_background:
            report["consumers"] = {c.name: monitor.state(c) for c in state.consumers}
        else:  # consumers run elsewhere (a replay, a test): nothing here to supervise
            report["consumers"] = {c.name: "waiting" for c in state.consumers}
        report["consumer_lag"] = {c.name: monitor.health[id(c)].lag for c in state.consumers}
        report["consumer_last_progress_seconds"] = {
            c.name: round(monitor.health[id(c)].since_progress, 1) for c in state.consumers
        }
        unhealthy = [name for name, s in report["consumers"].items() if s in ("stalled", "absent")]
        ready = (
            report["database"] == "ok"
            and report["broker"] == "ok"
            and report.get("outbox") == "ok"
            and not unhealthy
        )
        report["status"] = "ready" if ready else "not ready"
        return JSONResponse(report, status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def run_cli(
    service: str, settings: BaseServiceSettings, app_path: str, migrations: Path, argv: list[str]
) -> int:
    """``python -m services.<name> serve|migrate``."""
    command = argv[1] if len(argv) > 1 else "serve"
    if command == "migrate":
        configure_logging(service, settings.log_level, settings.log_json)
        owner = settings.database_migration_url
        dsn = owner.get_secret_value() if owner else settings.database_url
        applied = asyncio.run(migrate(dsn, service, migrations, service_role=settings.database_service_role))
        print(f"{service}: {len(applied)} migrations applied")
        return 0
    if command == "serve":
        uvicorn.run(
            app_path,
            factory=True,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
            timeout_keep_alive=30,  # clients and proxies reuse connections; 5 s drops them under load
        )
        return 0
    print(f"usage: python -m services.{service} serve|migrate")
    return 2
