"""What the sink records, once per pass of its loop (never per record).

- ``notify.messages.consumed`` {process=sink, topic=events}: records each poll batch brought;
- ``notify.sink.rows`` and ``notify.sink.files``: rows and Parquet files of the flushes committed;
- ``notify.dead_letters`` {process=sink, reason=decode_error} and ``notify.messages.produced``
  {process=sink, topic=events.dlq}: dead letters the broker acknowledged.

The last three are the change in ``SinkStats`` and ``DeadLetters.sent`` since the previous pass, so
the flusher and the dead letters keep counting as they did and nothing here sits in their path.
"""

from __future__ import annotations

from analytics_sink.flusher import SinkStats
from notify_core.instruments import PROCESS, REASON, TOPIC, Instruments
from notify_core.topics import TopicNames


class SinkMetrics:
    def __init__(self, instruments: Instruments, names: TopicNames) -> None:
        self._instruments = instruments
        self._consumed = {PROCESS: "sink", TOPIC: names.base(names.events)}
        self._letters = {PROCESS: "sink", TOPIC: names.base(names.events_dlq)}
        self._letter_reason = {PROCESS: "sink", REASON: "decode_error"}  # the sink's only dead letter
        self._rows = self._files = self._sent = 0

    def consumed(self, count: int) -> None:
        if count:
            self._instruments.consumed.add(count, self._consumed)

    def progress(self, stats: SinkStats, letters_sent: int) -> None:
        """After a pass of the loop: whatever was committed or acknowledged since the last one."""
        if stats.rows != self._rows:
            self._instruments.sink_rows.add(stats.rows - self._rows)
            self._rows = stats.rows
        if stats.files != self._files:
            self._instruments.sink_files.add(stats.files - self._files)
            self._files = stats.files
        if letters_sent != self._sent:
            self._instruments.dead_letters.add(letters_sent - self._sent, self._letter_reason)
            self._instruments.produced.add(letters_sent - self._sent, self._letters)
            self._sent = letters_sent
