"""The sink's dead letters: records of the analytics topic that do not decode, on ``<prefix>.events.dlq``.

A dead letter (``notify_core.events.dead_letter``: the original bytes, the reason) is produced as
soon as its record is read, so the sink never stalls on it; but the record's offset may be committed
only once the broker has acknowledged the letter, or a crash would lose it. So ``settled(where)``,
called before a partition's offsets are committed, waits for the letters of that partition and
produces a failed one again; it says False while any is unacknowledged, and the flush is then tried
again later, like a failed write. A crash before the commit produces the letter again on replay: a
dead letter is delivered at least once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import confluent_kafka
import structlog

from notify_core.codec import CONTENT_TYPE_HEADERS, DEAD_LETTER, default_codec
from notify_core.events import Failure, dead_letter
from notify_core.records import Record

log = structlog.get_logger("sink")
Where = tuple[str, int]
STAGE = "sink"


class DeadLetters:
    def __init__(
        self,
        producer: confluent_kafka.Producer,
        topic: str,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._producer, self.topic, self._clock = producer, topic, clock
        self._codec = default_codec()
        # Per source partition: offset -> (key, letter bytes) until the broker acknowledged it.
        self._pending: dict[Where, dict[int, tuple[bytes, bytes]]] = {}
        self._failed: dict[Where, set[int]] = {}
        self.sent = 0

    def send(self, record: Record, failure: Failure) -> None:
        """Dead-letter ``record`` (not waiting for the broker: see ``settled``)."""
        letter = dead_letter(record, failure, stage=STAGE, failed_at=self._clock())
        value = self._codec.encode(DEAD_LETTER, letter)
        key: bytes = letter["key"] or b""
        where = (record.topic, record.partition)
        self._pending.setdefault(where, {})[record.offset] = (key, value)
        log.warning(
            "event_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error_type=failure.error_type,
            error=failure.message[:300],
        )
        self._produce(where, record.offset)

    def settled(self, where: Where, timeout_s: float) -> bool:
        """True once every letter of ``where`` is acknowledged; a failed one is produced again."""
        if not self._pending.get(where):
            return True
        self._producer.flush(timeout_s)
        for offset in sorted(self._failed.pop(where, set())):
            if offset in self._pending.get(where, {}):
                self._produce(where, offset)
        return not self._pending.get(where)

    def forget(self, wheres: Iterable[Where]) -> None:
        """Partitions that moved: their new owner reads those records again and dead-letters them."""
        for where in wheres:
            self._pending.pop(where, None)
            self._failed.pop(where, None)

    def poll(self) -> None:
        """Serve delivery reports (call from the loop now and then)."""
        self._producer.poll(0)

    def _produce(self, where: Where, offset: int) -> None:
        key, value = self._pending[where][offset]

        def report(err: confluent_kafka.KafkaError | None, _msg: confluent_kafka.Message) -> None:
            if err is None:
                if self._pending.get(where, {}).pop(offset, None) is not None:
                    self.sent += 1
            else:
                log.warning("dead_letter_not_acknowledged", error=err.str(), code=err.name())
                self._failed.setdefault(where, set()).add(offset)

        while True:
            try:
                self._producer.produce(
                    self.topic, value=value, key=key, headers=CONTENT_TYPE_HEADERS, on_delivery=report
                )
                return
            except BufferError:  # the local queue is full: serve reports until there is room
                self._producer.poll(0.1)
