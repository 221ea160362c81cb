"""Configuration read from the environment (pydantic-settings), one subclass per service."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SUBJECT_KEY = "dev-only-subject-key-change-me"


class KafkaSettings(BaseSettings):
    """How to reach the broker; all a topic-provisioning job needs."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = "development"
    service_name: str = "service"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    # Mutual TLS (security protocol SSL): this service's client certificate and key, PEM files.
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    kafka_topic_partitions: int = 6
    kafka_topic_replication: int = 1

    def kafka_client_options(self) -> dict[str, object]:
        """Connection options shared by every aiokafka client of this service."""
        options: dict[str, object] = {
            "bootstrap_servers": self.kafka_bootstrap_servers.split(","),
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=self.kafka_ssl_cafile, certfile=self.kafka_ssl_certfile, keyfile=self.kafka_ssl_keyfile
            )
        return options

    @model_validator(mode="after")
    def _refuse_clear_text_kafka_in_production(self) -> KafkaSettings:
        """Events and credentials never cross the network in clear in production (DESIGN section 10)."""
        if self.environment == "production" and self.kafka_security_protocol in (
            "PLAINTEXT",
            "SASL_PLAINTEXT",
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL {self.kafka_security_protocol} is refused in production: use SSL or SASL_SSL"
            )
        return self


class BaseServiceSettings(KafkaSettings):
    """Settings every service shares: where the database and the broker are, and the secrets."""

    host: str = "127.0.0.1"
    port: int = 8000

    database_url: str = "postgresql://postgres@localhost/postgres"
    # `migrate` only: the owner's DSN (default DATABASE_URL) and the service's own login role,
    # which it grants what the service needs: no ownership, no UPDATE/DELETE/TRUNCATE of audit rows.
    database_migration_url: SecretStr | None = None
    database_service_role: str | None = None
    db_pool_min: int = 2
    db_pool_max: int = 10
    # Garbage collection (shared.app.tune_gc): what exists once the service started is frozen
    # out of the collector's sight, and the young generation is collected every this many net
    # allocations instead of Python's 700 (a collection every few requests); 0 keeps Python's
    # defaults. Measured effect: docs/scale.md.
    gc_gen0_threshold: int = Field(default=20_000, ge=0)

    # Keyed HMAC secret for pseudonymous subject keys. Every service of one exchange shares it.
    subject_key_secret: SecretStr = SecretStr(DEV_SUBJECT_KEY)
    # JSON/YAML file of registered clients (credentials stored as hashes); seeded into the database.
    clients_file: str | None = None

    # The trust list (every party's public event keys, shared.trust) and this process's own
    # private keys (a Kubernetes Secret in production). Without a trust list every event is refused.
    trust_list_file: str | None = None
    event_keys_file: str | None = None

    log_level: str = "INFO"
    log_json: bool = True

    outbox_poll_interval: float = Field(
        default=1.0, description="seconds between polls when no NOTIFY arrives"
    )
    outbox_batch_size: int = 500
    outbox_replay_window: float = Field(
        default=3600.0, description="seconds of published outbox rows re-sent after the broker lost its log"
    )
    outbox_stall_seconds: float = Field(
        default=300.0,
        gt=0,
        description="an outbox whose oldest unpublished row is older than this is stalled: /readyz "
        "answers not ready on every replica (alert OutboxNotDraining fires at 60 s)",
    )
    consumer_max_retries: int = 3
    # Tansu holds every fetch this long, so it is both a floor on delivery latency per hop and
    # how often each consumer polls. Measured end to end (bench pipeline, 3,000 events at full
    # load): 20 ms: 78 ev/s, 9.0 ms CPU/event, p99 0.74 s; 60 ms: 100 ev/s, 6.5 ms, p99 0.50 s;
    # 100 ms: 129 ev/s, 5.1 ms, p50 0.17 s, p99 0.37 s; 250 ms: 124 ev/s, p50 0.29 s.
    consumer_fetch_max_wait_ms: int = Field(
        default=100, ge=1, description="how long a fetch may wait for records (latency floor per hop)"
    )
    background_fetch_max_wait_ms: int = Field(
        default=1000,
        ge=1,
        description="how long a fetch may wait for records in a consumer no event's delivery waits "
        "on (a registry's subject-access log, the exchange's indicators and dead-letter census, "
        "verification's read model); it polls ten times less often than at 100 ms",
    )
    kafka_group_instance_id: str | None = Field(
        default=None,
        description="static group membership (KIP-345): this process's stable name, unique among "
        "the members of its groups (the pod's name); a consumer replaced in-process, or the process "
        "restarted under the same name, takes its partitions back at once rather than after the "
        "old member's session timeout",
    )
    consumer_stall_seconds: float = Field(
        default=30.0,
        gt=0,
        description="a consumer group with records unread and no progress for this long is stalled: "
        "its member is replaced by a fresh one and /readyz answers not ready",
    )
    consumer_check_interval: float = Field(
        default=5.0, gt=0, description="how often each service measures its consumers' lag and progress"
    )
    run_background: bool = Field(default=True, description="run the outbox relay and consumers in-process")
    shutdown_timeout: float = Field(
        default=8.0,
        gt=0,
        description="seconds the lifespan's shutdown may take, after uvicorn's 5 s for open "
        "connections (the chart's grace period is this plus 15 s); past it the step still running "
        "and every pending task are named in the log and the database connections are closed hard",
    )

    # Retention (shared.retention): a background task purges what is older than this.
    retention_idempotency_seconds: float = Field(
        default=86400.0, gt=0, description="stored Idempotency-Key answers: a retry after this runs again"
    )
    retention_dead_letter_days: float = Field(default=90.0, gt=0, description="dead letters, replayed or not")
    retention_interval_seconds: float = Field(
        default=3600.0, ge=0, description="seconds between retention purges; 0: no purging"
    )

    # The audit chain's head, signed (Ed25519, base64url of the 32-byte private key, from a
    # Secret) and published to the audit checkpoint topic and the log every this many seconds.
    audit_checkpoint_key: SecretStr | None = None
    audit_checkpoint_interval: float = Field(default=60.0, ge=0, description="0: no checkpoints")

    # Development and tests: append every event the relay publishes to a file in this folder
    # (shared.events.recording), to check them against the published contracts. Ignored in
    # production: payloads carry identity numbers.
    events_record_dir: str | None = None

    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_endpoint: str | None = None

    def require_signing_keys(self, parties: set[str]) -> None:
        """A producer must hold an event-signing key for every party it speaks for: refused at
        start outside development when it has no keys file, and anywhere when one lacks a party."""
        if not self.event_keys_file:
            if self.environment == "production":
                raise ValueError("EVENT_KEYS_FILE must name this service's event-signing keys")
            return
        from shared.trust import load_keyring

        missing = parties - load_keyring(self.event_keys_file).parties()
        if missing:
            raise ValueError(f"EVENT_KEYS_FILE holds no event-signing key for {', '.join(sorted(missing))}")

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> BaseServiceSettings:
        if self.environment == "production" and self.subject_key_secret.get_secret_value() == DEV_SUBJECT_KEY:
            raise ValueError("SUBJECT_KEY_SECRET must be set to a real secret outside development")
        if self.environment == "production" and not self.trust_list_file:
            raise ValueError("TRUST_LIST_FILE must name the trust list outside development")
        if self.environment == "production" and self.audit_checkpoint_key is None:
            raise ValueError("AUDIT_CHECKPOINT_KEY must come from a Secret in production")
        return self
