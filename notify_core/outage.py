"""Riding out a dependency outage (PostgreSQL, the broker): back off with jitter, log state changes.

A process must not die because its database restarted or its broker was away for a minute, and it
must not write a log line per failed attempt either. ``Outage`` is the small state machine one
process keeps per dependency: the first failure logs ``<name>_unavailable``, later ones only grow
the delay, and the first success after them logs ``<name>_recovered`` with how long it was down.

``is_outage`` tells an outage (retry the same work later) from an error of the record itself
(dead-letter it and move on): only the former may be retried forever.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg_pool
import structlog

from notify_core.exceptions import ConfigError, DatabaseError, KafkaError

# Broker answers that no retry can fix: they belong to the record, not to the broker's health.
RECORD_ERROR_CODES = frozenset(
    {
        "MSG_SIZE_TOO_LARGE",
        "_MSG_SIZE_TOO_LARGE",
        "RECORD_LIST_TOO_LARGE",
        "INVALID_RECORD",
        "CORRUPT_MESSAGE",
        "_INVALID_ARG",
        "_BAD_MSG",
        "_KEY_SERIALIZATION",
        "_VALUE_SERIALIZATION",
    }
)
# Failover and session limits are outages too, though psycopg files them under InternalError.
_DATABASE_OUTAGES = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    psycopg.errors.ReadOnlySqlTransaction,
    psycopg.errors.IdleInTransactionSessionTimeout,
)
# What no retry and no dead letter can fix: the process must stop and say so.
FATAL_CODES = frozenset(
    {
        "_FATAL",
        "_FENCED",
        "PRODUCER_FENCED",
        "FENCED_INSTANCE_ID",
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        "TOPIC_AUTHORIZATION_FAILED",
        "GROUP_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
    }
)


def is_fatal(exc: BaseException) -> bool:
    """Misconfigured or fenced: a missing table or privilege, a producer another process fenced."""
    if isinstance(exc, ConfigError | psycopg.ProgrammingError):
        return True
    if isinstance(exc, DatabaseError) and isinstance(exc.__cause__, psycopg.ProgrammingError):
        return True
    if isinstance(exc, KafkaError):
        return exc.code in FATAL_CODES
    try:
        import confluent_kafka
    except ImportError:  # pragma: no cover - every process that can reach here has it
        return False
    if isinstance(exc, confluent_kafka.KafkaException) and isinstance(
        exc.args[0] if exc.args else None, confluent_kafka.KafkaError
    ):
        err = exc.args[0]
        return bool(err.fatal()) or err.name() in FATAL_CODES
    return False


def is_outage(exc: BaseException) -> bool:
    """Would the same call succeed once the database or broker is back?"""
    if is_fatal(exc):
        return False
    if isinstance(exc, _DATABASE_OUTAGES):
        return True
    if isinstance(exc, DatabaseError):
        cause = exc.__cause__
        # A connection that cannot be made at all has no cause worth more than that.
        return cause is None or isinstance(cause, _DATABASE_OUTAGES)
    if isinstance(exc, KafkaError):
        return exc.code not in RECORD_ERROR_CODES
    if isinstance(exc, TimeoutError):
        return True
    try:
        import confluent_kafka
    except ImportError:  # pragma: no cover - every process that can reach here has it
        return False
    if isinstance(exc, confluent_kafka.KafkaException):
        err = exc.args[0] if exc.args else None
        name = err.name() if isinstance(err, confluent_kafka.KafkaError) else ""
        return name not in RECORD_ERROR_CODES
    return False


class Outage:
    """One dependency's health as one process sees it (shared by all its tasks)."""

    def __init__(
        self,
        name: str,
        *,
        base_s: float = 0.2,
        max_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        logger: Any = None,
    ) -> None:
        self.name, self._base_s, self._max_s, self._clock = name, base_s, max_s, clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._log = logger or structlog.get_logger("outage")
        self._failures = 0
        self._down_since: float | None = None
        self.outages = 0  # how many times it went down (for stats and tests)

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, exc: BaseException) -> float:
        """Record a failed call; returns the seconds to wait before the next try."""
        self._failures += 1
        if self._down_since is None:
            self._down_since = self._clock()
            self.outages += 1
            self._log.warning(f"{self.name}_unavailable", error=_short(exc), retrying=True)
        ceiling = min(self._max_s, self._base_s * 2.0 ** min(self._failures - 1, 20))
        # Equal jitter: never hammer at zero delay, never wait in lock-step with peers.
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def ok(self) -> None:
        """Record a successful call; logs the recovery once."""
        if self._down_since is not None:
            self._log.warning(
                f"{self.name}_recovered",
                down_s=round(self._clock() - self._down_since, 3),
                attempts=self._failures,
            )
        self._down_since = None
        self._failures = 0


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."
