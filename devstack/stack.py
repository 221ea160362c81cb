"""The whole system on one machine: embedded PostgreSQL, Tansu, two registries, exchange, verification,
and a REST-only jurisdiction (110101) that takes part through the exchange's REST API.

Used by ``make run`` (``python -m devstack run``) and by the end-to-end tests, so that what the
tests start is what an operator starts. Environment overrides: ``DATABASE_URL`` (an existing
PostgreSQL server: one database per service is created in it) and ``KAFKA_BOOTSTRAP_SERVERS``.

The pieces: ``layout`` (where things are), ``processes`` (a service as a process),
``databases`` (a service's database and login role), ``credentials`` (clients, audit keys),
``embedded`` (PostgreSQL and the broker), ``trust`` (event keys and the trust list).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from devstack import credentials
from devstack.databases import external_database, migrate_for_service
from devstack.embedded import Broker, EmbeddedPostgres, env_with, free_port
from devstack.layout import DESTINATION, ORIGIN, REST_ONLY, ROOT, SERVICES_DIR
from devstack.processes import ServiceProcess, launch, port_free, stop_process, stop_processes, wait_ready
from devstack.trust import TrustFiles

__all__ = ["DESTINATION", "ORIGIN", "REST_ONLY", "ROOT", "SERVICES_DIR", "ServiceProcess", "Stack"]


class Stack:
    """Start, describe and stop the system. ``run_dir`` holds data, logs and stack.json."""

    def __init__(
        self,
        run_dir: Path,
        *,
        fixed_ports: bool = False,
        extra_env: dict[str, str] | None = None,
        pg_cleanup: str | None = "stop",
        pg: EmbeddedPostgres | None = None,
        db_prefix: str = "",
        registries: list[str] | None = None,
        rest_only: list[str] | None = None,
        replicas: int = 1,
    ):
        self.run_dir = run_dir
        self.fixed_ports = fixed_ports
        self.extra_env = extra_env or {}
        self.pg_cleanup = pg_cleanup
        self.pg: EmbeddedPostgres | None = pg
        self.own_pg = pg is None
        self.db_prefix = db_prefix
        # One registry process per jurisdiction listed (default: the two demo jurisdictions).
        self.registries = registries or [ORIGIN, DESTINATION]
        # Jurisdictions not on Kafka: a client each (reg-<code>), no registry (default: 110101,
        # unless a registry serves it).
        self.rest_only = [c for c in (rest_only or [REST_ONLY]) if c not in self.registries]
        # Processes per service, as the chart runs them behind its HPA: one database, one
        # consumer group and one relay lock per service, whatever the number of processes.
        self.replicas = replicas
        self.broker: Broker | None = None
        self.services: list[ServiceProcess] = []
        self.bootstrap = ""
        self.clients: list[dict[str, Any]] = []
        self.subject_secret = "dev-only-subject-key-change-me"  # noqa: S105 - the development default
        self.trust = TrustFiles(run_dir / "trust")

    # --- infrastructure -----------------------------------------------------------------------
    def start_infrastructure(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logs").mkdir(exist_ok=True)
        external_db = os.environ.get("DATABASE_URL")
        if not external_db and self.pg is None:
            self.pg = EmbeddedPostgres(self.run_dir / "pgdata", cleanup=self.pg_cleanup)
        external_kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if external_kafka:
            self.bootstrap = external_kafka
        else:
            self.broker = Broker(
                9092 if self.fixed_ports and port_free(9092) else None, self.run_dir / "logs" / "broker.log"
            ).start()
            self.bootstrap = self.broker.bootstrap

    def database(self, name: str) -> str:
        """A database of the service's own, in the embedded cluster or in DATABASE_URL's server."""
        if self.pg is not None:
            return self.pg.create_database(self.db_prefix + name)
        return external_database(os.environ["DATABASE_URL"], self.db_prefix + name)

    # --- services -----------------------------------------------------------------------------
    def plan(self) -> None:
        taken: set[int] = set()

        def port(default: int | None = None) -> int:
            """A free port no other process of this stack was given: a port the kernel handed out
            and took back can come again on the next call (two services on one port, seen in CI)."""
            chosen = default if default and self.fixed_ports and port_free(default) else free_port()
            while chosen in taken:
                chosen = free_port()
            taken.add(chosen)
            return chosen

        verification_port = port(8020)
        # Certificates reference the verification service's status lists (IETF Token Status List).
        status_lists = f"http://127.0.0.1:{verification_port}/v1/status-lists"
        self.services = [
            ServiceProcess(
                f"registry-{code}",
                "services.registry",
                port(8001 + i),
                f"registry_{code}",
                {"JURISDICTIONS": code, "STATUS_LIST_BASE_URL": status_lists},
                [code],
            )
            for i, code in enumerate(self.registries)
        ]
        # The verification service learns each issuer's public keys from the key URL the trust
        # list binds to that issuer (the registry's JWKS), and from nowhere else.
        self.services += [
            ServiceProcess("migrant_exchange", "services.migrant_exchange", port(8010), "migrant_exchange"),
            ServiceProcess("verification", "services.verification", verification_port, "verification"),
        ]
        self.services += [
            ServiceProcess(s.name, s.module, port(), s.database, dict(s.env), s.jurisdictions, replica=i)
            for i in range(1, self.replicas)
            for s in list(self.services)
        ]

    def write_clients(self) -> Path:
        """The clients file: the demo clients, merged into what the file already says (the file is
        authoritative: see ``credentials.merge_clients_file``)."""
        previous = credentials.previous_tokens(self.run_dir / "stack.json")
        self.clients = credentials.demo_clients(previous, self.registries, self.rest_only)
        path = self.run_dir / "clients.yaml"
        credentials.merge_clients_file(path, self.clients)
        return path

    def write_trust(self) -> Path:
        """Event keys of every registry jurisdiction and of the exchange, and the trust list."""
        registries = [s for s in self.services if s.module == "services.registry"]
        key_urls = {code: f"{s.url}/v1/keys" for s in registries for code in s.jurisdictions}
        return self.trust.write(self.registries, key_urls)

    def audit_keys(self) -> dict[str, str]:
        """Each service's audit-checkpoint signing key (base64url), kept in the run directory."""
        return credentials.audit_keys(self.run_dir / "audit-keys.json", [svc.name for svc in self.services])

    def audit_public_keys(self) -> dict[str, dict[str, str]]:
        """What an auditor pins: each service's checkpoint key id and public key."""
        return credentials.audit_public_keys(self.audit_keys())

    def start_services(self) -> None:
        clients_file = self.write_clients()
        keys = self.audit_keys()
        for svc in self.services:
            svc.env.setdefault("AUDIT_CHECKPOINT_KEY", keys[svc.name])
        assert clients_file.exists()
        self.write_trust()
        for svc in self.services:
            svc.dsn = self.database(svc.database)
            service = svc.module.split(".")[1]
            if svc.replica == 0:
                migrations = SERVICES_DIR / service / "migrations"
                svc.service_dsn = migrate_for_service(
                    svc.dsn, self.db_prefix + svc.database, service, migrations
                )
            else:  # replicas log in as the first process's role
                svc.service_dsn = next(
                    s.service_dsn for s in self.services if s.name == svc.name and s.replica == 0
                )
            self.spawn(svc)
        # Every process starts at once, on two cores in CI: a stack of replicas (a dozen
        # processes importing, migrating and joining their groups) needs longer than one restart.
        for svc in self.services:
            self.wait_ready(svc, timeout=60.0)

    def _log_path(self, svc: ServiceProcess) -> Path:
        return self.run_dir / "logs" / f"{svc.log_name}.log"

    def spawn(self, svc: ServiceProcess) -> None:
        launch(svc, self._env_of(svc), self._log_path(svc))

    def wait_ready(self, svc: ServiceProcess, timeout: float = 30.0) -> None:
        wait_ready(svc, self._log_path(svc), timeout)

    def stop_service(self, svc: ServiceProcess, sig: int = signal.SIGTERM) -> None:
        stop_process(svc, sig)

    def restart_service(self, svc: ServiceProcess, sig: int = signal.SIGTERM) -> None:
        self.stop_service(svc, sig)
        self.spawn(svc)
        self.wait_ready(svc)

    def _env_of(self, svc: ServiceProcess) -> dict[str, str]:
        values = {
            "database_url": svc.service_dsn or svc.dsn,
            "kafka_bootstrap_servers": self.bootstrap,
            "port": str(svc.port),
            "host": "127.0.0.1",
            "clients_file": str(self.run_dir / "clients.yaml"),
            "subject_key_secret": self.subject_secret,
            "environment": "development",
            "kafka_topic_partitions": "4",
            "outbox_replay_window": "600",
            "audit_checkpoint_interval": "2",
            "kafka_group_instance_id": svc.log_name,
        }
        values["trust_list_file"] = str(self.trust.trust_list)
        if (keys := self._env_of_keys(svc)) is not None:
            values["event_keys_file"] = keys
        # The service's own settings, then the caller's, override the defaults above.
        values |= {k.lower(): v for k, v in svc.env.items()}
        values |= {k.lower(): v for k, v in self.extra_env.items()}
        env = env_with(**values)
        env["SERVICE_NAME"] = svc.name
        if svc.module == "services.migrant_exchange":
            # The exchange reconciles the registries over their internal endpoints with its own
            # service credential (reconcile:internal), which no operator holds.
            registries = [s for s in self.services if s.module == "services.registry" and s.replica == 0]
            env.setdefault("REGISTRY_URLS", ",".join(f"{s.jurisdictions[0]}={s.url}" for s in registries))
            env.setdefault("REGISTRY_TOKEN", self.token(credentials.EXCHANGE_SERVICE))
        return env

    def _env_of_keys(self, svc: ServiceProcess) -> str | None:
        """The event keys file a service gets: the exchange's, verification's, or its registry division's."""
        if svc.module == "services.migrant_exchange":
            return str(self.trust.keys_file("exchange"))
        if svc.module == "services.verification":
            return str(self.trust.keys_file("verification"))
        if svc.module == "services.registry" and len(svc.jurisdictions) == 1:
            return str(self.trust.keys_file(svc.jurisdictions[0]))
        return None

    def service(self, name: str) -> ServiceProcess:
        return next(s for s in self.services if s.name == name)

    def replicas_of(self, name: str) -> list[ServiceProcess]:
        return [s for s in self.services if s.name == name]

    # --- supervision (``make run``) -------------------------------------------------------------
    def supervise_once(self) -> list[str]:
        """Restart whatever this stack started that has died; say what was restarted.

        The services recover by themselves: they reconnect to PostgreSQL, notice the broker came
        back empty (re-create its topics, re-send their recent outbox, restart their consumers).
        """
        said = []
        if self.pg is not None and not self.pg.alive():
            self.pg.start_server()
            said.append("PostgreSQL had stopped: restarted it on the same data and socket")
        if self.broker is not None and not self.broker.alive():
            self.broker.start()
            said.append("the broker had stopped: restarted it (empty; the services re-create and re-send)")
        for svc in self.services:
            if svc.process is not None and svc.process.poll() is not None:
                code = svc.process.returncode
                self.spawn(svc)
                said.append(f"{svc.log_name} exited ({code}): restarted it; see logs/{svc.log_name}.log")
        return said

    def token(self, client_id: str) -> str:
        return str(next(c["token"] for c in self.clients if c["client_id"] == client_id))

    def describe(self) -> dict[str, Any]:
        return {
            "services": {
                s.name: {"url": s.url, "jurisdictions": s.jurisdictions}
                for s in self.services
                if s.replica == 0
            },
            "rest_only_jurisdictions": {
                code: {"client_id": f"reg-{code}", "exchange": self.service("migrant_exchange").url}
                for code in self.rest_only
            },
            "broker": {"bootstrap_servers": self.bootstrap},
            "databases": {s.name: s.dsn for s in self.services},
            "clients": self.clients,
            "trust": {
                "trust_list": str(self.trust.trust_list),
                "event_keys": {
                    s.name: path for s in self.services if (path := self._env_of_keys(s)) is not None
                },
            },
            "clients_file": str(self.run_dir / "clients.yaml"),
            "audit_checkpoint_keys": self.audit_public_keys(),
            "urls": {
                "dashboard": self.service("migrant_exchange").url + "/dashboard",
                "kiosk": self.service("verification").url + "/kiosk",
                "api_docs": {s.name: s.url + "/docs" for s in self.services if s.replica == 0},
            },
        }

    def write_description(self) -> Path:
        path = self.run_dir / "stack.json"
        path.write_text(json.dumps(self.describe(), indent=2, ensure_ascii=False))
        path.chmod(0o600)  # it holds the demo credentials
        return path

    def start(self) -> Stack:
        self.start_infrastructure()
        self.plan()
        self.start_services()
        self.write_description()
        return self

    def stop(self) -> None:
        stop_processes(self.services)
        if self.broker:
            self.broker.stop()
        if self.pg and self.own_pg:
            self.pg.stop()
