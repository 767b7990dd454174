"""From due buffers to committed offsets, for the partitions the sink holds (Kafka and store I/O).

``Flusher`` keeps, per assigned partition: whether it is recovered yet (``flush.recover`` runs
before anything of it is written), the flush taken from the batcher and not yet committed, and
whether it is paused. A flush is: recover if needed, wait for the partition's dead letters to be
acknowledged, write (``flush.write``: manifest, then files), commit the offset after it
synchronously. Any step failing for an outage (``StoreUnavailable``, a broker error, an
unacknowledged letter) leaves the offset uncommitted, pauses the partition, and every other one
holding a due buffer, so no buffer grows while the output is away, and the *same* flush is tried
again after a jittered backoff (``notify_core.outage``, logged once per outage); a partition resumes
once its own flush succeeds. One ``step`` flushes for at most ``STEP_BUDGET_S``, so the consumer
keeps polling however slow the output is. Misconfiguration and fencing are not retried: they stop the sink.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import confluent_kafka
import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]  # pyarrow ships no type information
import structlog

from analytics_sink import flush
from analytics_sink.batcher import Batcher, FlushUnit, Reason, Where
from analytics_sink.dead_letters import DeadLetters
from analytics_sink.exceptions import NotSettled, SinkError, StoreUnavailable
from analytics_sink.store import Store
from notify_core.outage import Outage, is_fatal

log = structlog.get_logger("sink")
KAFKA_TIMEOUT_S = 10.0
# How long one ``step`` may flush before it returns to the consume loop (the rest flush on the next
# step). The consumer must poll within max.poll.interval.ms (300 s by default) or it is thrown out
# of the group; with S3 retrying PUTs, flushing every due partition in one go could take longer.
STEP_BUDGET_S = 30.0


@dataclass
class SinkStats:
    records: int = 0  # consumed (each offset once)
    rows: int = 0  # landed in committed files
    dead_letters: int = 0  # acknowledged on the events DLQ
    files: int = 0
    flushes: Counter[str] = field(default_factory=Counter)  # committed flushes by reason: rows, age, final
    failed_attempts: int = 0  # flush or recovery attempts that were retried
    recovered_files: int = 0  # files listed by uncommitted manifests, deleted on assignment
    dropped: int = 0  # buffered records dropped on revocation (their new owner reads them again)


@dataclass(frozen=True)
class _Held:
    """A flush taken from the batcher: retried as it is until committed (or its partition revoked)."""

    unit: FlushUnit
    plan: flush.FlushPlan


class Flusher:
    def __init__(
        self,
        store: Store,
        batcher: Batcher,
        dead_letters: DeadLetters,
        *,
        schema: pa.Schema,
        schema_version: int,
        stats: SinkStats,
        clock: Callable[[], float] = time.monotonic,
        output: Outage | None = None,
        broker: Outage | None = None,
    ) -> None:
        self._store, self._batcher, self._dlq = store, batcher, dead_letters
        self._schema, self._version, self.stats, self._clock = schema, schema_version, stats, clock
        self.owned: set[Where] = set()  # assigned to this consumer now
        self._held: dict[Where, _Held] = {}
        self._unrecovered: set[Where] = set()
        self._paused: set[Where] = set()
        self._retry_at = 0.0
        self.output = output if output is not None else Outage("sink_output")
        self.broker = broker if broker is not None else Outage("broker")

    # --- the assignment (called from rebalance callbacks, inside consume) --------------------------
    def assigned(self, wheres: Iterable[Where]) -> None:
        """Newly ours: recovered by the next ``step``, before anything of them is written."""
        for where in wheres:
            self.owned.add(where)
            self._unrecovered.add(where)
            self._paused.discard(where)

    def forget(self, wheres: Iterable[Where]) -> None:
        """No longer ours: buffers, held flushes and pending letters dropped (read again by the new
        owner, from the committed offset)."""
        gone = set(wheres)
        dropped = self._batcher.revoke(gone)
        for where in gone:
            self.owned.discard(where)
            held = self._held.pop(where, None)
            dropped += 0 if held is None else held.unit.records
            self._unrecovered.discard(where)
            self._paused.discard(where)
        self._dlq.forget(gone)
        self.stats.dropped += dropped
        if gone:
            log.info("sink_partitions_revoked", partitions=sorted(p for _, p in gone), dropped=dropped)

    def known(self) -> list[Where]:
        """Every partition with state here (for a consumer rebuild: all of it is forgotten)."""
        return sorted(
            {*self.owned, *self._batcher.buffered(), *self._held, *self._unrecovered, *self._paused}
        )

    def unflushed(self) -> int:
        """Records consumed and not yet committed."""
        return len(self._batcher) + sum(h.unit.records for h in self._held.values())

    # --- the work ----------------------------------------------------------------------------------
    def step(self, consumer: confluent_kafka.Consumer, *, final: bool = False) -> bool:
        """Unless backing off: recover new partitions, retry held flushes, flush what is due (with
        ``final``: everything buffered), for at most ``STEP_BUDGET_S`` (the rest waits for the next
        step, so the loop goes back to ``consume``). True when nothing is left waiting for a retry.

        While a flush fails (backing off, or a retry failed), or when the budget ran out, every
        partition holding a due buffer is paused too, so a slow or absent output stops consumption
        instead of filling memory; each resumes once its own flush succeeds."""
        if self._clock() < self._retry_at:
            self._hold_back(consumer, final)
            return False
        ok = self._work(consumer, final, self._clock() + STEP_BUDGET_S)
        if not ok or self._due(final):  # failed, or out of time: the due ones wait, unread
            self._hold_back(consumer, final)
        return ok

    def _work(self, consumer: confluent_kafka.Consumer, final: bool, deadline: float) -> bool:
        """One step's flushes; False at the first failure. Past ``deadline`` it stops after the
        attempt under way (at least one per step, so any budget makes progress) and says True."""
        for where in sorted(self._unrecovered):
            if not self._attempt(consumer, where, self._recover):
                return False
            if self._clock() >= deadline:
                return True
        for where in list(self._held):
            if not self._attempt(consumer, where, self._flush):
                return False
            if self._clock() >= deadline:
                return True
        while due := self._due(final):
            for where, reason in due.items():
                unit = self._batcher.take(where, reason)
                if unit is None:
                    continue
                plan = flush.plan(unit, self._schema, schema_version=self._version)
                self._held[where] = _Held(unit, plan)
                if not self._attempt(consumer, where, self._flush):
                    return False
                if self._clock() >= deadline:
                    return True
        return True

    def _hold_back(self, consumer: confluent_kafka.Consumer, final: bool) -> None:
        """Pause every partition with a due buffer (or a held flush): nothing more of it is read
        while flushes fail. ``_attempt`` resumes each once its flush succeeds."""
        for where in {*self._due(final), *self._held}:
            if where in self.owned:
                self._pause(consumer, where)

    def _due(self, final: bool) -> dict[Where, Reason]:
        if final:
            return dict.fromkeys(self._batcher.buffered(), "final")
        return self._batcher.due()

    def _attempt(
        self,
        consumer: confluent_kafka.Consumer,
        where: Where,
        action: Callable[[confluent_kafka.Consumer, Where], None],
    ) -> bool:
        try:
            action(consumer, where)
        except Exception as exc:
            self._failed(consumer, where, exc)
            return False
        self._resume(consumer, where)
        return True

    def _recover(self, consumer: confluent_kafka.Consumer, where: Where) -> None:
        topic, partition = where
        [tp] = consumer.committed([confluent_kafka.TopicPartition(topic, partition)], timeout=KAFKA_TIMEOUT_S)
        if tp.error is not None:
            raise confluent_kafka.KafkaException(tp.error)
        committed = tp.offset if tp.offset >= 0 else None
        self.broker.ok()
        deleted = flush.recover(self._store, topic, partition, committed)
        self.output.ok()
        self._unrecovered.discard(where)
        if deleted:
            self.stats.recovered_files += len(deleted)
            log.warning(
                "sink_uncommitted_flush_removed",
                topic=topic,
                partition=partition,
                committed=committed,
                files=len(deleted),
            )

    def _flush(self, consumer: confluent_kafka.Consumer, where: Where) -> None:
        held = self._held[where]
        if where in self._unrecovered:
            self._recover(consumer, where)
        if not self._dlq.settled(where, KAFKA_TIMEOUT_S):
            raise NotSettled(f"dead letters of {where[0]}[{where[1]}] are not acknowledged yet")
        flush.write(self._store, held.plan)
        self.output.ok()
        tp = confluent_kafka.TopicPartition(where[0], where[1], held.unit.last + 1)
        for result in consumer.commit(offsets=[tp], asynchronous=False) or []:
            if result.error is not None:
                raise confluent_kafka.KafkaException(result.error)
        self.broker.ok()
        del self._held[where]
        unit = held.unit
        self.stats.rows += unit.rows
        self.stats.files += len(held.plan.files)
        self.stats.flushes[unit.reason] += 1
        log.info(
            "sink_flushed",
            topic=unit.topic,
            partition=unit.partition,
            first=unit.first,
            last=unit.last,
            rows=unit.rows,
            files=len(held.plan.files),
            reason=unit.reason,
        )

    def _failed(self, consumer: confluent_kafka.Consumer, where: Where, exc: Exception) -> None:
        """An outage (the output, the broker): pause the partition and try again after a backoff.
        Anything else (misconfigured, fenced, a bug) stops the sink."""
        if is_fatal(exc):
            raise exc
        if not isinstance(exc, StoreUnavailable | NotSettled | confluent_kafka.KafkaException):
            raise SinkError(f"flushing {where[0]}[{where[1]}]: {type(exc).__name__}: {exc}") from exc
        outage = self.output if isinstance(exc, StoreUnavailable) else self.broker
        self._retry_at = self._clock() + outage.failed(exc)
        self.stats.failed_attempts += 1
        self._pause(consumer, where)

    def _pause(self, consumer: confluent_kafka.Consumer, where: Where) -> None:
        """No more records of ``where`` until its flush succeeds. librdkafka drops what it fetched
        ahead; the seek says exactly where reading resumes: right after the last record buffered."""
        if where in self._paused:
            return
        with contextlib.suppress(confluent_kafka.KafkaException):
            consumer.pause([confluent_kafka.TopicPartition(*where)])
            self._paused.add(where)
            resume_at = self._batcher.next_offset(where)
            if resume_at is not None:
                consumer.seek(confluent_kafka.TopicPartition(where[0], where[1], resume_at))

    def _resume(self, consumer: confluent_kafka.Consumer, where: Where) -> None:
        if where in self._paused:
            with contextlib.suppress(confluent_kafka.KafkaException):
                consumer.resume([confluent_kafka.TopicPartition(*where)])
            self._paused.discard(where)
