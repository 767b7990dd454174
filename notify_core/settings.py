"""The one settings object.

Read from the environment (prefix ``NOTIFY_``) once, at the entry point, and passed down as an argument.
It is frozen, keeps credentials in ``SecretStr`` so they never reach a log line, and renders the
librdkafka configuration dicts so no other module spells a Kafka setting name.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from notify_core.exceptions import ConfigError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]

DAY_MS = 24 * 3600 * 1000
# The built-in unsubscribe secret: fine on a laptop, forgeable by anyone who has read this file.
DEV_UNSUBSCRIBE_SECRET = "dev-only-unsubscribe-secret"  # noqa: S105 - the known dev value, refused off loopback
DEV_TRACKING_SECRET = "dev-only-tracking-secret"  # noqa: S105 - the same, for click and open links


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything configurable, with defaults that match the local stack."""

    model_config = SettingsConfigDict(env_prefix="NOTIFY_", frozen=True, extra="ignore")

    # --- Kafka connection -------------------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None
    kafka_ssl_certificate_location: str | None = None
    kafka_ssl_key_location: str | None = None
    kafka_ssl_key_password: SecretStr | None = None
    # Any other librdkafka property, passed through as is (JSON object in the environment).
    kafka_extra: dict[str, str] = Field(default_factory=dict)
    client_id: str = "notify"

    # --- Topics -----------------------------------------------------------------------------------
    topic_prefix: str = "notifications"
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    topic_min_insync_replicas: int = Field(default=1, ge=1)
    topic_retention_ms: int = Field(default=7 * DAY_MS, ge=-1)
    dlq_retention_ms: int = Field(default=30 * DAY_MS, ge=-1)
    events_retention_ms: int = Field(default=30 * DAY_MS, ge=-1)

    # How long a consumer that stopped heartbeating keeps its partitions (librdkafka's default: 45 s).
    consumer_session_timeout_ms: int = Field(default=10_000, ge=6_000, le=300_000)

    # --- Producer SDK -----------------------------------------------------------------------------
    # Upper bound for one send: librdkafka gives up on a message after this and we raise.
    produce_timeout_s: float = Field(default=15.0, gt=0)

    # --- Router -----------------------------------------------------------------------------------
    router_group: str = "notify-router"
    # Stable per router process: a restarted instance fences its killed predecessor and aborts its
    # open transaction at once, instead of read_committed consumers waiting for the txn timeout.
    router_instance_id: str = "0"
    router_batch_size: int = Field(default=500, ge=1, le=10_000)
    dedupe_window_s: int = Field(default=7 * 24 * 3600, ge=60)
    # Released deferred messages are kept this long (for support), then pruned.
    deferred_retention_s: int = Field(default=24 * 3600, ge=0)
    fallback_locale: str = "en"
    max_sms_segments: int = Field(default=3, ge=1, le=10)
    user_cache_size: int = Field(default=100_000, ge=0)
    user_cache_ttl_s: float = Field(default=60.0, ge=0)

    # --- Database ---------------------------------------------------------------------------------
    database_url: SecretStr = SecretStr("postgresql://notify@127.0.0.1:55432/notify")

    # --- Local stack (make up / notify stack) -----------------------------------------------------
    cache_dir: Path = Field(default_factory=lambda: _project_root() / ".cache")
    kafka_version: str = "4.1.1"
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    kafka_heap: str = "768m"
    postgres_port: int = Field(default=55432, ge=1, le=65535)
    stack_start_timeout_s: float = Field(default=120.0, gt=0)

    # --- Providers (sandbox and real service are one setting apart) -------------------------------
    apns_endpoint: str = "https://127.0.0.1:8443"
    apns_topic: str = "com.example.notify"
    apns_key_id: str = "ABC123DEFG"
    apns_team_id: str = "DEF123GHIJ"
    apns_key: SecretStr | None = None
    apns_ca_file: Path | None = None  # extra CA to trust (the sandbox's test CA); None = system CAs
    fcm_endpoint: str = "http://127.0.0.1:8444"
    fcm_project_id: str = "notify-sandbox"
    fcm_credentials_file: Path | None = (
        None  # a service-account JSON; its token_uri is where tokens come from
    )
    fcm_timeout_s: float = Field(default=10.0, gt=0)
    sns_endpoint: str | None = "http://127.0.0.1:8445"
    aws_region: str = "us-east-1"
    aws_access_key_id: SecretStr = SecretStr("testing")
    aws_secret_access_key: SecretStr = SecretStr("testing")
    sms_sender_id: str = "NOTIFY"
    sms_type: Literal["Transactional", "Promotional"] = "Transactional"
    sms_max_per_second: float = Field(default=20.0, gt=0)  # SNS account limit: the SMS worker's pace
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=8025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_start_tls: bool = False
    smtp_ca_file: Path | None = None  # extra CA to trust for STARTTLS (the sandbox's test CA)
    smtp_pool_size: int = Field(default=4, ge=1, le=64)
    smtp_timeout_s: float = Field(default=15.0, gt=0)
    email_from: str = "Notify <no-reply@example.com>"
    # Signs RFC 8058 one-click unsubscribe tokens (notify_core.tracking), served under public_base_url.
    unsubscribe_secret: SecretStr = SecretStr(DEV_UNSUBSCRIBE_SECRET)

    # --- Engagement tracking (links the router writes, endpoints the HTTP API serves) -------------
    # Where people's clicks, opens and unsubscribes reach the API: the base of every signed link.
    public_base_url: str = "http://127.0.0.1:8080"
    # Signs click, open and push-open tokens (itsdangerous). Rotation: put the new key here and the
    # old one in tracking_previous_secrets; links signed under either keep working during the overlap.
    tracking_secret: SecretStr = SecretStr(DEV_TRACKING_SECRET)
    tracking_previous_secrets: list[SecretStr] = Field(default_factory=list)
    # The same rotation for unsubscribe tokens, whose current key is unsubscribe_secret.
    unsubscribe_previous_secrets: list[SecretStr] = Field(default_factory=list)
    # How long a signed link works. Long on purpose: people open old mails.
    click_token_max_age_s: int = Field(default=180 * 24 * 3600, ge=60)
    open_token_max_age_s: int = Field(default=180 * 24 * 3600, ge=60)
    push_token_max_age_s: int = Field(default=90 * 24 * 3600, ge=60)
    unsubscribe_token_max_age_s: int = Field(default=400 * 24 * 3600, ge=366 * 24 * 3600)
    # Off: the router leaves e-mail links and push payloads as rendered.
    tracking_enabled: bool = True

    # --- HTTP API (notify api run) ----------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    # A body over this is refused with 413 before it is read whole.
    api_max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # Most notifications in one POST /v1/notifications:batch; more is 422.
    api_max_batch: int = Field(default=500, ge=1, le=10_000)
    # Per-key token bucket defaults (a key can carry its own): quota units per second and burst.
    # A notification costs one unit, any other call one unit.
    api_rate_per_s: float = Field(default=1000.0, gt=0)
    api_rate_burst: int = Field(default=2000, ge=1)
    # A verified key is trusted this long before PostgreSQL is asked again (revocation takes effect
    # within it).
    api_key_cache_s: float = Field(default=5.0, ge=0)
    # Preference and contact changes: each router applies them within this after they are made.
    user_changes_poll_s: float = Field(default=0.05, gt=0, le=1.0)

    # --- Analytics sink (notify sink run) and report ------------------------------------------------
    sink_group: str = "notify-sink"
    # Where the Parquet files go: a directory, or s3://bucket/prefix. Unset: <cache_dir>/analytics.
    sink_output: str | None = None
    # A file is written per partition once this many events are buffered, or once the oldest has
    # waited this long (so a quiet topic still lands within the age).
    sink_flush_rows: int = Field(default=100_000, ge=1, le=10_000_000)
    sink_flush_s: float = Field(default=60.0, gt=0)
    # An S3-compatible endpoint (moto's server in tests); unset: AWS itself. Credentials: NOTIFY_AWS_*.
    s3_endpoint: str | None = None

    # --- Observability (metrics, traces, monitoring) ----------------------------------------------
    # Every process serves Prometheus metrics at http://<metrics_host>:<metrics_port>/metrics. Port 0
    # picks a free one (so two of a process can share a host); either way the process writes a
    # Prometheus file_sd target under <cache_dir>/monitoring/targets, which the local Prometheus reads.
    metrics_enabled: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # Where the file_sd target files go instead of <cache_dir>/monitoring/targets (a deployment's own
    # discovery folder, or a test's temporary one). Unset: that default.
    metrics_targets_dir: Path | None = None
    # Spans for produce, route and deliver; the trace context always travels in Kafka headers.
    tracing_enabled: bool = True
    # OTLP/HTTP traces endpoint (e.g. http://127.0.0.1:4318/v1/traces); unset: spans are not exported.
    otlp_endpoint: str | None = None
    # The local Prometheus of `notify stack up --with-monitoring`, and the lag exporter it scrapes.
    prometheus_port: int = Field(default=9090, ge=1, le=65535)
    lag_exporter_port: int = Field(default=9308, ge=0, le=65535)
    # notify lag's Burrow-style window: this many samples, this far apart (the exporter's refresh).
    lag_window: int = Field(default=10, ge=2, le=1000)
    lag_interval_s: float = Field(default=5.0, gt=0)

    def monitoring_dir(self) -> Path:
        """Where processes register their metrics endpoints and the local Prometheus keeps its files."""
        return self.cache_dir / "monitoring"

    def sink_location(self) -> str:
        """The sink's output: ``sink_output``, or the cache directory's ``analytics`` folder."""
        return self.sink_output or str(self.cache_dir / "analytics")

    # --- Channel workers ---------------------------------------------------------------------------
    # Stable per worker process (like router_instance_id): a restarted worker takes back its own
    # delivery-log leases at once instead of waiting for them to lapse.
    worker_instance_id: str = "0"
    worker_group_prefix: str = "notify"  # consumer groups are <prefix>-<channel>
    delivery_lease_s: float = Field(default=60.0, gt=0)
    delivery_max_in_flight: int = Field(default=256, ge=1, le=10_000)  # per worker process
    delivery_max_attempts: int = Field(default=6, ge=1, le=50)
    delivery_backoff_base_s: float = Field(default=1.0, gt=0)
    # At most the largest retry tier (notify_core.topics.RETRY_TIERS_S): no retry waits longer than it.
    delivery_backoff_max_s: float = Field(default=300.0, gt=0, le=300.0)
    delivery_shutdown_grace_s: float = Field(default=15.0, gt=0)
    # Finished delivery-log rows are pruned after this: longer than a channel topic keeps records
    # (7 days), so a record read again still finds its row and is not sent twice.
    delivery_log_retention_s: int = Field(default=14 * 24 * 3600, ge=3600)
    # How often the running processes prune, and at most how many rows a table per round.
    prune_every_s: float = Field(default=60.0, gt=0)
    prune_batch: int = Field(default=5_000, ge=1)
    # Provider calls per second per worker process, a token bucket in the worker; 0 means unlimited.
    # SMS is always paced, at sms_max_per_second.
    rate_limit_ios: float = Field(default=0.0, ge=0)
    rate_limit_android: float = Field(default=0.0, ge=0)
    rate_limit_email: float = Field(default=0.0, ge=0)

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix_is_legal(cls, value: str) -> str:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if not value or set(value) - allowed:
            raise ValueError("topic_prefix must be non-empty and use only letters, digits, '.', '_' and '-'")
        return value

    # --- start-up checks ---------------------------------------------------------------------------
    def check_for_production(self) -> None:
        """Refuse development-only values where they would reach the outside world.

        Called at the entry point of every process that signs or verifies unsubscribe or tracking
        links (the e-mail worker today), not as a validator: tests and tools build ``Settings`` with
        public URLs and never send a link. A dev secret, current or previous, is refused when
        ``public_base_url`` or ``api_host`` (where the API listens) is not on loopback: whoever has
        read this file could forge links.
        Raises ``ConfigError`` naming the setting, never its value.
        """
        host = f"[{self.api_host}]" if ":" in self.api_host else self.api_host
        if is_loopback_url(self.public_base_url) and is_loopback_url(f"http://{host}"):
            return  # links lead to loopback and the API listens only there: nobody else can use one
        # A previous key still verifies, so the dev value there lets forged links in just the same.
        checks = [
            ("UNSUBSCRIBE_SECRET", DEV_UNSUBSCRIBE_SECRET, [self.unsubscribe_secret]),
            ("UNSUBSCRIBE_PREVIOUS_SECRETS", DEV_UNSUBSCRIBE_SECRET, self.unsubscribe_previous_secrets),
            ("TRACKING_SECRET", DEV_TRACKING_SECRET, [self.tracking_secret]),
            ("TRACKING_PREVIOUS_SECRETS", DEV_TRACKING_SECRET, self.tracking_previous_secrets),
        ]
        for setting, dev, keys in checks:
            if any(key.get_secret_value() == dev for key in keys):
                links = "unsubscribe" if "UNSUBSCRIBE" in setting else "click, open and push-open"
                raise ConfigError(
                    f"NOTIFY_{setting} holds the built-in development value, but NOTIFY_PUBLIC_BASE_URL"
                    f" or NOTIFY_API_HOST is not on loopback: anyone could forge {links} links."
                    " Use a random secret of your own."
                )

    # --- librdkafka renderings --------------------------------------------------------------------
    def kafka_common(self) -> dict[str, Any]:
        """Connection and security properties shared by every client."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap,
            "client.id": self.client_id,
            "security.protocol": self.kafka_security_protocol.lower(),
        }
        optional = {
            "sasl.mechanism": self.kafka_sasl_mechanism,
            "sasl.username": self.kafka_sasl_username,
            "sasl.password": self.kafka_sasl_password,
            "ssl.ca.location": self.kafka_ssl_ca_location,
            "ssl.certificate.location": self.kafka_ssl_certificate_location,
            "ssl.key.location": self.kafka_ssl_key_location,
            "ssl.key.password": self.kafka_ssl_key_password,
        }
        for key, value in optional.items():
            if value is not None:
                conf[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
        conf.update(self.kafka_extra)
        return conf

    def kafka_producer(self, *, transactional_id: str | None = None) -> dict[str, Any]:
        """An idempotent producer; transactional when given an id."""
        conf = self.kafka_common()
        conf.update(
            {
                # Every accepted request must survive a broker failover: wait for all in-sync replicas.
                "acks": "all",
                # No duplicates or reordering from librdkafka's own retries.
                "enable.idempotence": True,
                # Bound a send: after this the delivery report fails instead of retrying forever.
                "message.timeout.ms": int(self.produce_timeout_s * 1000),
                # A 2 ms batching window: measured ~20k req/s for the batch API vs ~17k at 0 ms, while a
                # lone send waits ~3 ms instead of the 5 ms default.
                "linger.ms": 2,
                "compression.type": "lz4",
            }
        )
        if transactional_id is not None:
            conf["transactional.id"] = transactional_id
            # A killed router's open transaction blocks read_committed readers until it times out
            # (unless the same id restarts first): keep that bound short.
            conf["transaction.timeout.ms"] = 30_000
        return conf

    def kafka_consumer(
        self, group_id: str, *, instance_id: str | None = None, per_topic_balance: bool = False
    ) -> dict[str, Any]:
        """A consumer that commits explicitly and sees only committed transactional output.

        With ``instance_id`` it is a static member of its group (KIP-345): a restarted process
        with the same id takes its partitions straight back, with no rebalance and no wait for
        its dead predecessor's session to lapse.

        ``per_topic_balance``: members share out each topic, not just the total partition count.
        Cooperative-sticky balances totals only, so of two workers reading a channel topic and its
        four retry tiers, one could hold every channel partition and do all the fresh work.
        Round-robin over the sorted partitions shares every topic (at the price of eager
        rebalances, which the delivery log makes safe: a record in flight during one is skipped
        or waits for its lease when redelivered).
        """
        conf = self.kafka_common()
        conf.update(
            {
                "group.id": group_id,
                # Offsets are committed by our code (in the transaction, or for the completed prefix).
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                # A new group starts at the beginning: nothing already accepted is skipped.
                "auto.offset.reset": "earliest",
                # Never act on output of an aborted router transaction.
                "isolation.level": "read_committed",
                "partition.assignment.strategy": (
                    "roundrobin" if per_topic_balance else "cooperative-sticky"
                ),
                # A killed member's partitions move after this, not after the 45 s default: the
                # price is a rebalance when a process stalls for 10 s, which ours never do (the
                # Kafka thread polls on its own).
                "session.timeout.ms": self.consumer_session_timeout_ms,
                "heartbeat.interval.ms": max(1000, self.consumer_session_timeout_ms // 4),
            }
        )
        if instance_id is not None:
            conf["group.instance.id"] = instance_id
        return conf

    def kafka_admin(self) -> dict[str, Any]:
        return self.kafka_common()


def is_loopback_url(url: str) -> bool:
    """True when ``url``'s host is ``localhost``, in 127.0.0.0/8 or ``::1``; False for anything else."""
    try:
        host = urlsplit(url).hostname  # lower-cased, brackets and userinfo removed
    except ValueError:  # e.g. an unclosed "[" in the netloc
        return False
    if host is None:
        return False
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve anywhere
        return False
