"""The router process: consume requests, route them, write everything in one Kafka transaction.

A thin loop around ``batch.plan_batch``. For each batch: decode and validate (bad records are
dead-lettered, never fatal), read what routing needs from PostgreSQL (cached), plan, write the
state rows (dedupe marks, cap counters, deferred messages, outcomes) in one database transaction, then
produce the channel messages, the events and the consumed offsets in one Kafka transaction.

Deferred messages (quiet hours, ``send_at``) wait in ``router_deferred``; every second the loop
releases those that are due, in their own Kafka transaction, so a user's late message never holds
up anyone else's.

Nothing a request holds stops the router: an exception while planning one request dead-letters it
(``plan_batch``'s total catch), and one raised by the batch as a whole (the database refusing a
value, say) is narrowed down by halving the batch until the one record is found and dead-lettered
as ``internal_error``. PostgreSQL and broker outages are waited out, backing off with jitter and
logging once per state change; the batch is then read again. The router exits only for what it
cannot survive: fenced by a newer instance with its transactional id, or misconfigured.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import confluent_kafka
import psycopg
import structlog

from consumers.router.batch import Lookups, Parsed, Rejected, parse_records, plan_batch
from consumers.router.exceptions import RenderInterrupted, RouterError
from consumers.router.metrics import RouterMetrics
from consumers.router.policy import cap_key
from consumers.router.positions import rewind, seek, seek_after
from consumers.router.render import Renderer
from consumers.router.spans import RecordSpans, TraceHeaders
from consumers.router.state import RouterState
from consumers.router.txn import (
    TXN_TIMEOUT_S,
    Produced,
    ProducerReplaced,
    Stopped,
    Transactions,
    fatal_check,
)
from notify_core.burst import BurstStop
from notify_core.codec import REQUEST, default_codec
from notify_core.events import Failure
from notify_core.exceptions import ConfigError, NotifyError
from notify_core.fencing import RebuildBudget
from notify_core.instruments import Instruments
from notify_core.kafka_clients import consume_ready, fatal_error, make_consumer, translate
from notify_core.outage import Outage, is_fatal, is_outage
from notify_core.records import Record
from notify_core.settings import Settings
from notify_core.stats import LATENCY_SAMPLES
from notify_core.topics import Channel, topic_names
from notify_core.tracking import TrackingSigner
from notify_core.userdata.changes import ChangeListener
from notify_core.userdata.repository import UserDataRepository

log = structlog.get_logger("router")
T = TypeVar("T")
RELEASE_EVERY_S = 1.0
RELEASE_BATCH = 500


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RouterStats:
    batches: int = 0
    records: int = 0
    released: int = 0
    aborted: int = 0
    internal_errors: int = 0  # records dead-lettered because handling them raised
    decisions: Counter[str] = field(default_factory=Counter)
    # Wall time of the latest committed batches: bounded, the router runs for weeks.
    batch_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    first_batch_at: float | None = None  # time.monotonic() when the first batch started
    last_batch_at: float | None = None  # ... and when the last one committed


EMPTY_LOOKUPS = Lookups(seen={}, contexts={}, categories={}, templates={}, cap_usage={})
# Below librdkafka's default message.max.bytes (1,000,000) and the broker's max.message.bytes.
MAX_OUTPUT_BYTES = 900_000


class OutputTooLarge(RouterError):
    """A request rendered into a record the broker would refuse: it is dead-lettered alone."""


def _fatal_error(exc: BaseException) -> Exception:
    """What the router stops with: our own errors as they are, a database refusal explained."""
    if isinstance(exc, NotifyError):
        return exc
    return ConfigError(
        f"the database refused the router's statements ({type(exc).__name__}: {exc});"
        " is the schema migrated (notify db migrate) and the role allowed?"
    )


class Router:
    """One router process. ``run(stop_when_idle=True)`` is the burst mode tests use."""

    def __init__(
        self,
        settings: Settings,
        connect: Callable[[], psycopg.Connection[Any]],
        repository: UserDataRepository,
        *,
        clock: Callable[[], datetime] = utc_now,
        instruments: Instruments | None = None,
    ) -> None:
        self._settings = settings
        self._names = topic_names(settings)
        self._metrics = RouterMetrics(instruments or Instruments.disabled(), self._names)
        self._codec = default_codec()
        self._repo = repository
        self._connect = connect
        self._conn: psycopg.Connection[Any] | None = None
        self._clock = clock
        self._renderer = Renderer(max_sms_segments=settings.max_sms_segments)
        self._tracking = TrackingSigner.from_settings(settings) if settings.tracking_enabled else None
        self._stopping = False
        self.database = Outage("database")
        self.broker = Outage("broker")
        self.stats = RouterStats()
        self._txn: Transactions
        self._rebuilds = RebuildBudget()

    def stop(self, *_: object) -> None:
        self._stopping = True
        self._renderer.interrupt()  # a render under way gives up now, not at its time limit

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(
        self, *, stop_when_idle: bool = False, idle_s: float = 3.0, max_runtime_s: float | None = None
    ) -> RouterStats:
        settings = self._settings
        identity = f"{settings.router_group}-{settings.router_instance_id}"
        # One identity for both: a restarted router fences its predecessor's transaction and, as a
        # static group member, takes its partitions straight back instead of waiting out a session.
        consumer = make_consumer(settings, settings.router_group, instance_id=identity)
        # Preference and contact changes made anywhere drop our cached context of that user.
        changes = ChangeListener(settings, on_change=self._repo.invalidate_user)
        self._txn = Transactions(
            settings, identity, broker=self.broker, stopping=lambda: self._stopping, pause=self._pause
        )
        started = time.monotonic()
        burst = BurstStop(idle_s, started)
        last_release = 0.0
        last_prune = time.monotonic()  # not at start-up: a burst run in a test prunes nothing
        try:
            self._txn.start()
            changes.start()  # before the first poll: nothing is cached yet, every later change is seen
            consumer.subscribe([self._names.requests])
            while not self._stopping:
                messages = consume_ready(consumer, settings.router_batch_size, 0.2)
                if any(self._fatal(m) for m in messages):
                    consumer = self._rebuild(consumer, identity)
                    continue
                records = [Record.from_message(m) for m in messages if self._usable(m)]
                if records:
                    self._metrics.consumed(len(records))
                    self._handle(records, consumer)
                    burst.activity(time.monotonic(), consumed=True)
                if time.monotonic() - last_release >= RELEASE_EVERY_S:
                    if self._release_due():
                        burst.activity(time.monotonic())
                    last_release = time.monotonic()
                if time.monotonic() - last_prune >= settings.prune_every_s:
                    self._prune()
                    last_prune = time.monotonic()
                now = time.monotonic()
                if (
                    stop_when_idle
                    and burst.idle(now)
                    and burst.should_stop(now, has_partitions=bool(consumer.assignment()))
                ):
                    break
                if max_runtime_s is not None and now - started > max_runtime_s:
                    break
        except Stopped:
            pass  # asked to stop while waiting for the broker: nothing committed is lost
        finally:
            changes.stop()
            consumer.close()
            self._drop_connection()
        log.info(
            "router_stopped",
            batches=self.stats.batches,
            records=self.stats.records,
            released=self.stats.released,
            aborted=self.stats.aborted,
            internal_errors=self.stats.internal_errors,
        )
        return self.stats

    @staticmethod
    def _fatal(msg: confluent_kafka.Message) -> bool:
        failed = fatal_error(msg, "router consume")
        if failed is not None:
            log.error("router_consumer_failed", error=str(failed))
        return failed is not None

    def _rebuild(self, consumer: confluent_kafka.Consumer, identity: str) -> confluent_kafka.Consumer:
        """A fatally failed consumer (fenced by its own rejoin after an outage) is replaced; what
        it had read but not committed is read again by the new one."""
        self._rebuilds.spend(time.monotonic(), f"router consumer {identity}")
        with contextlib.suppress(Exception):
            consumer.close()
        fresh = make_consumer(self._settings, self._settings.router_group, instance_id=identity)
        fresh.subscribe([self._names.requests])
        log.warning("router_consumer_rebuilt", instance=identity)
        return fresh

    def _usable(self, msg: confluent_kafka.Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.code() != confluent_kafka.KafkaError._PARTITION_EOF:
            log.warning("consume_error", error=translate(err, "router consume").args[0])
        return False

    # --- one batch, whatever happens ----------------------------------------------------------
    def _handle(
        self, records: Sequence[Record], consumer: confluent_kafka.Consumer, *, reposition: bool = False
    ) -> bool:
        """Route ``records``, or dead-letter the ones that cannot be; False: read them again later.

        ``reposition``: the consumer was moved back (an abort, a narrowing-down), so once these are
        committed it is moved past them, or they would be read and routed a second time.
        """
        try:
            with RecordSpans(records, group=self._settings.router_group) as spans:
                self._process(records, consumer, spans)
        except RenderInterrupted:
            # Stopping mid-render: nothing was committed, the batch is read again after restart.
            log.warning("router_batch_interrupted", records=len(records))
            return False
        except ProducerReplaced:
            self.stats.aborted += 1
            self._rewind_to_committed(consumer)  # the new producer fenced the open transaction
            return False
        except confluent_kafka.KafkaException as exc:
            self._abort(consumer, exc)
            if is_outage(exc):
                return False
            # The broker refused one of our records (too large, say): find it, dead-letter it.
            return self._narrow(records, consumer, exc)
        except Stopped:
            raise
        except Exception as exc:
            if is_fatal(exc):
                raise _fatal_error(exc) from exc
            if is_outage(exc):
                self._wait_for_database(exc, consumer, records)
                return False
            return self._narrow(records, consumer, exc)
        self.database.ok()
        if reposition:
            seek_after(consumer, records)
        return True

    def _narrow(self, records: Sequence[Record], consumer: confluent_kafka.Consumer, exc: Exception) -> bool:
        """Halve the batch until the record that raised is alone; it is then dead-lettered."""
        if len(records) == 1:
            with RecordSpans(records, group=self._settings.router_group) as spans, spans.current(records[0]):
                return self._dead_letter_alone(records[0], consumer, exc, spans)
        log.warning("router_batch_narrowing", records=len(records), error_type=type(exc).__name__)
        middle = len(records) // 2
        first, rest = records[:middle], records[middle:]
        if self._handle(first, consumer, reposition=True) and self._handle(rest, consumer, reposition=True):
            return True
        # Some of the batch may be committed by now, some not: read on from what is committed.
        self._rewind_to_committed(consumer)
        return False

    def _dead_letter_alone(
        self, record: Record, consumer: confluent_kafka.Consumer, error: Exception, spans: RecordSpans
    ) -> bool:
        """The one record that made its batch fail, dead-lettered as internal_error in a transaction."""
        self.stats.internal_errors += 1
        log.error(
            "request_internal_error",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error_type=type(error).__name__,
            error=str(error)[:500],
        )
        kind = "output_too_large" if isinstance(error, OutputTooLarge) else "internal_error"
        failure = Failure(kind, f"{type(error).__name__}: {error}"[:2000])
        plan = plan_batch(
            [Rejected(record, failure)],
            EMPTY_LOOKUPS,
            names=self._names,
            renderer=self._renderer,
            now=self._clock(),
        )
        outputs = [(o.topic, o.key, self._codec.encode(o.schema, o.record)) for o in plan.outputs]
        try:
            self._commit(consumer, outputs, [record], traces=[spans.headers(record)] * len(outputs))
        except ProducerReplaced:
            self._rewind_to_committed(consumer)
            return False
        except confluent_kafka.KafkaException as exc:
            # A dead letter is bounded, so this is the broker, not the letter: try again later.
            self._abort(consumer, exc)
            return False
        self._metrics.decided([Rejected(record, failure)], plan)
        seek_after(consumer, [record])
        return True

    def _process(
        self, records: Sequence[Record], consumer: confluent_kafka.Consumer, spans: RecordSpans
    ) -> None:
        began = time.monotonic()
        now = self._clock()
        items = parse_records(records, lambda data: self._codec.decode(data, REQUEST))
        spans.parsed(items)
        parsed = [i for i in items if isinstance(i, Parsed)]
        conn = self._connection()
        state = self._state(conn)
        with conn.transaction():
            lookups = self._lookups(parsed, state, now)
            plan = plan_batch(
                items,
                lookups,
                names=self._names,
                renderer=self._renderer,
                now=now,
                fallback_locale=self._settings.fallback_locale,
                tracking=self._tracking,
            )
            immediate: list[Produced] = []
            traces: list[TraceHeaders] = []  # each immediate output's: its request's span context
            deferred = []
            for out, origin in zip(plan.outputs, plan.origins, strict=True):
                value = self._codec.encode(out.schema, out.record)
                if len(value) > MAX_OUTPUT_BYTES:
                    # Checked before anything is written: the broker would refuse it, and a deferred
                    # one would block every release behind it.
                    raise OutputTooLarge(
                        f"{out.schema} for {out.topic} is {len(value)} bytes, over {MAX_OUTPUT_BYTES}"
                    )
                if out.deliver_at is None:
                    immediate.append((out.topic, out.key, value))
                    traces.append(spans.headers(origin))
                else:
                    trace = spans.traceparent(origin)  # kept with the row: the release carries it
                    deferred.append(
                        (out.record["delivery_id"], out.deliver_at, out.topic, out.key, value, trace)
                    )
            state.record(plan.seen_rows, plan.cap_rows, deferred, now, outcome_rows=plan.outcome_rows)
        # The database commits first: if the Kafka commit below fails, the batch is replayed and
        # every state write above is keyed to be a no-op the second time.
        self._commit(consumer, immediate, records, traces=traces)
        self._metrics.decided(items, plan)
        finished = time.monotonic()
        self.stats.batches += 1
        self.stats.records += len(records)
        self.stats.decisions.update(plan.counts)
        self.stats.batch_seconds.append(finished - began)
        self.stats.first_batch_at = self.stats.first_batch_at or began
        self.stats.last_batch_at = finished

    def _lookups(self, parsed: list[Parsed], state: RouterState, now: datetime) -> Lookups:
        users = sorted({p.request.user_id for p in parsed})
        categories = {c: self._repo.get_category(c) for c in {p.request.category for p in parsed}}
        template_ids = {p.request.template_id for p in parsed}
        # Usage matters only where a cap applies: most categories have none, and then no query runs.
        capped = [p for p in parsed if categories[p.request.category].daily_caps]
        own_cap_keys = [cap_key(str(p.request.notification_id), c) for p in capped for c in Channel]
        pairs = sorted({(p.request.user_id, p.request.category) for p in capped})
        return Lookups(
            seen=state.seen([k for p in parsed for k in p.keys], now),
            contexts=self._repo.get_contexts(users),
            categories=categories,
            templates={t: self._repo.get_templates(t) for t in template_ids},
            cap_usage=state.cap_usage(pairs, own_cap_keys, now),
        )

    # --- Kafka ----------------------------------------------------------------------------------
    def _commit(
        self,
        consumer: confluent_kafka.Consumer,
        outputs: Sequence[Produced],
        records: Sequence[Record],
        *,
        traces: Sequence[TraceHeaders] = (),
    ) -> None:
        next_offsets: dict[tuple[str, int], int] = {}
        for record in records:
            where = (record.topic, record.partition)
            next_offsets[where] = max(next_offsets.get(where, 0), record.offset + 1)
        offsets = [confluent_kafka.TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        self._txn.commit(outputs, offsets, consumer.consumer_group_metadata(), traces=traces)
        self._metrics.produced(topic for topic, _, _ in outputs)

    def _abort(self, consumer: confluent_kafka.Consumer, exc: confluent_kafka.KafkaException) -> None:
        err = exc.args[0]
        self.stats.aborted += 1
        log.warning("router_batch_aborted", code=err.name(), error=err.str())
        self._txn.abort(exc)
        self._rewind_to_committed(consumer)

    def _rewind_to_committed(self, consumer: confluent_kafka.Consumer) -> None:
        """Consume again from the last committed offsets: the aborted batch is replayed."""
        assignment = consumer.assignment()
        while True:
            try:
                committed = consumer.committed(assignment, timeout=TXN_TIMEOUT_S)
                break
            except confluent_kafka.KafkaException as exc:
                fatal_check(exc)
                self._pause(self.broker.failed(exc))
                if self._stopping:
                    raise Stopped("stopping while the broker is away") from exc
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else confluent_kafka.OFFSET_BEGINNING
            seek(consumer, tp.topic, tp.partition, offset)

    # --- PostgreSQL -----------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._drop_connection()
            self._conn = self._connect()
        return self._conn

    def _state(self, conn: psycopg.Connection[Any]) -> RouterState:
        s = self._settings  # outcomes live as long as the delivery log rows the status shows beside them
        kept = timedelta(seconds=max(s.dedupe_window_s, s.delivery_log_retention_s))
        return RouterState(conn, dedupe_window=timedelta(seconds=s.dedupe_window_s), outcome_retention=kept)

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def _wait_for_database(
        self, exc: Exception, consumer: confluent_kafka.Consumer, records: Sequence[Record]
    ) -> None:
        """PostgreSQL is away: nothing was produced for this batch; read it again after a pause."""
        self._drop_connection()
        rewind(consumer, records)
        self._pause(self.database.failed(exc))

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _prune(self) -> None:
        """Bounded deletes of state past its retention; an outage just skips this round."""
        try:
            conn = self._connection()
            state = self._state(conn)
            with conn.transaction():
                removed = state.prune(
                    self._clock(),
                    released_retention=timedelta(seconds=self._settings.deferred_retention_s),
                    limit=self._settings.prune_batch,
                )
        except Exception as exc:
            if not is_outage(exc):
                log.error("router_prune_failed", error=f"{type(exc).__name__}: {exc}"[:500])
                return  # housekeeping: it must not stop the router
            self._drop_connection()
            self.database.failed(exc)
            return
        if removed:
            log.info("router_state_pruned", rows=removed)

    # --- deferred messages ----------------------------------------------------------------------
    def _release_due(self) -> int:
        try:
            released = self._release()
        except ProducerReplaced:
            return 0  # the rows stay unreleased (their database transaction rolled back): next tick
        except confluent_kafka.KafkaException as exc:
            self.stats.aborted += 1
            log.warning("router_release_aborted", code=exc.args[0].name(), error=exc.args[0].str())
            self._txn.abort(exc)
            return 0
        except Stopped:
            raise
        except Exception as exc:
            if is_fatal(exc):
                raise _fatal_error(exc) from exc
            if not is_outage(exc):
                raise
            self._drop_connection()
            self.database.failed(exc)  # logged once; the next tick tries again
            return 0
        self.database.ok()
        return released

    def _release(self) -> int:
        now = self._clock()
        conn = self._connection()
        state = self._state(conn)
        with conn.transaction():
            due = state.due(now, RELEASE_BATCH)
            if not due:
                return 0
            # Kafka commits before the rows are marked: a crash in between re-releases them, and the
            # channel workers' delivery log (keyed by delivery_id) keeps the user from a second copy.
            self._txn.commit(
                [(m.topic, m.key, m.value) for m in due],
                traces=[[("traceparent", m.traceparent.encode())] if m.traceparent else [] for m in due],
            )
            self._metrics.produced(m.topic for m in due)
            state.mark_released([m.delivery_id for m in due], now)
        self.stats.released += len(due)
        return len(due)
