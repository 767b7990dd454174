"""The router's transactional producer, and what it takes to keep one working through a broker outage.

Every blocking transactional call (init, send offsets, commit, abort) is retried while librdkafka
says it is retriable (or, for an abort, whatever the error, short of fatal), backing off with
jitter through the shared ``Outage`` (logged once per state change).

librdkafka can also fail to return at all: ``send_offsets_to_transaction`` may block past its own
timeout once the group coordinator went away and came back (librdkafka issues #5456 and #5511,
seen here after a 20 s broker restart). Each such call therefore runs on a short-lived daemon
thread with a deadline of its own; when it passes, the stuck producer is abandoned and a new one
with the same ``transactional.id`` is initialised, which fences the old one and aborts its open
transaction. The caller gets ``ProducerReplaced`` and reads its batch again.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import confluent_kafka
import structlog

from consumers.router.exceptions import RouterError
from notify_core.codec import CONTENT_TYPE_HEADERS
from notify_core.kafka_clients import make_producer, translate
from notify_core.outage import Outage
from notify_core.settings import Settings

log = structlog.get_logger("router")
T = TypeVar("T")
# Each blocking call's own timeout: a retriable timeout is simply tried again, so it can be short.
TXN_TIMEOUT_S = 15.0
# Past librdkafka's own timeout, a call that has not returned is stuck, not slow.
DEADLINE_S = TXN_TIMEOUT_S + 10.0
Produced = tuple[str, bytes | None, bytes]  # topic, key, value
TraceHeaders = Sequence[tuple[str, bytes]]  # an output's traceparent (notify_core.tracing)


class Stopped(RouterError):
    """The router was asked to stop while waiting for the broker."""


class ProducerReplaced(RouterError):
    """The producer was stuck and has been replaced: the open transaction is gone, read it again."""


class StuckCall(RouterError):
    """A librdkafka call did not return within its deadline."""


def call_with_deadline(call: Callable[[], T], deadline_s: float) -> T:
    """``call()`` on a daemon thread; ``StuckCall`` if it has not returned after ``deadline_s``."""
    outcome: list[Any] = []
    done = threading.Event()

    def target() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller's thread as it is
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=target, name="notify-router-txn", daemon=True).start()
    if not done.wait(deadline_s):
        raise StuckCall(f"librdkafka call still blocked after {deadline_s:g}s")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


class Transactions:
    def __init__(
        self,
        settings: Settings,
        transactional_id: str,
        *,
        broker: Outage,
        stopping: Callable[[], bool],
        pause: Callable[[float], None],
        deadline_s: float = DEADLINE_S,
    ) -> None:
        self._settings, self._id, self._broker = settings, transactional_id, broker
        # The router's own wait (cut short by a stop request) and its stop flag.
        self._stopping, self._pause, self._deadline_s = stopping, pause, deadline_s
        self._producer = make_producer(settings, transactional_id=transactional_id)
        # Stuck producers are kept, not destroyed: destroying one would block on its stuck thread.
        self._abandoned: list[confluent_kafka.Producer] = []
        self.replaced = 0

    def start(self) -> None:
        """Initialise the producer (fencing any predecessor); a stuck init gets a fresh producer."""
        while True:
            try:
                self._call(lambda p: p.init_transactions(TXN_TIMEOUT_S), retry_all=True)
                return
            except StuckCall:
                self._swap()

    def commit(
        self,
        outputs: Sequence[Produced],
        offsets: Sequence[confluent_kafka.TopicPartition] = (),
        group: Any = None,
        *,
        traces: Sequence[TraceHeaders] = (),
    ) -> None:
        """``outputs`` (and, with ``group``, the consumed ``offsets``) in one transaction; ``traces[i]``
        (when given) are the trace headers of ``outputs[i]``."""
        producer = self._producer
        producer.begin_transaction()
        for index, (topic, key, value) in enumerate(outputs):
            headers = [*CONTENT_TYPE_HEADERS, *traces[index]] if index < len(traces) else CONTENT_TYPE_HEADERS
            while True:
                try:
                    producer.produce(topic, value=value, key=key, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)
        if group is not None:
            self.until_ok(lambda p: p.send_offsets_to_transaction(list(offsets), group, TXN_TIMEOUT_S))
        self.until_ok(lambda p: p.commit_transaction(TXN_TIMEOUT_S))

    def abort(self, exc: confluent_kafka.KafkaException) -> None:
        """After a failed commit: abort (fatal errors are raised, the rest retried until it works)."""
        fatal_check(exc)
        # A stuck abort replaces the producer, whose init_transactions aborts the transaction for us.
        with contextlib.suppress(ProducerReplaced):
            self.until_ok(lambda p: p.abort_transaction(TXN_TIMEOUT_S), retry_all=True)

    def until_ok(self, call: Callable[[confluent_kafka.Producer], T], *, retry_all: bool = False) -> T:
        """``call(producer)`` inside a transaction, retried while the broker is away; a stuck call
        replaces the producer and raises ``ProducerReplaced`` (the transaction is gone)."""
        try:
            return self._call(call, retry_all=retry_all)
        except StuckCall as exc:
            self._swap()
            self.start()
            raise ProducerReplaced(str(exc)) from exc

    def _call(self, call: Callable[[confluent_kafka.Producer], T], *, retry_all: bool) -> T:
        """Retried on retriable errors, or on any non-fatal one when ``retry_all`` (an abort must
        happen, whatever it takes); ``StuckCall`` when librdkafka does not return."""
        while True:
            try:
                result = call_with_deadline(functools.partial(call, self._producer), self._deadline_s)
            except confluent_kafka.KafkaException as exc:
                err = exc.args[0]
                fatal_check(exc)
                if not (retry_all or err.retriable()):
                    raise
                self._pause(self._broker.failed(exc))
                if self._stopping():
                    raise Stopped("stopping while the broker is away") from exc
                continue
            self._broker.ok()
            return result

    def _swap(self) -> None:
        log.warning("router_producer_stuck", transactional_id=self._id, replaced=self.replaced + 1)
        self._abandoned.append(self._producer)
        self._producer = make_producer(self._settings, transactional_id=self._id)
        self.replaced += 1


def fatal_check(exc: confluent_kafka.KafkaException) -> None:
    err = exc.args[0]
    if err.fatal():
        raise translate(
            err, "router transaction (fatal: another router took over this transactional id; restart)"
        ) from exc
