"""The router's spans: one ``process <requests topic>`` CONSUMER span per request record of a batch.

A batch is routed and committed as a whole, but each request is its own trace: every record's span
has the context its headers carry as parent (the SDK's ``send`` span), and every record the router
writes for that request (channel messages, events, its dead letter) carries that span's context, found
through ``BatchPlan.origins``; a deferred message keeps that context's ``traceparent`` in its row,
and its release carries it. The spans last from the batch's start to its commit; a batch that fails
ends them with an error, and its retry (whole, or narrowed down) makes new ones in the same traces.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Self

import structlog
from opentelemetry import trace
from opentelemetry.trace import Span

from consumers.router.batch import Parsed, Rejected
from notify_core.records import Record
from notify_core.tracing import mark_error, process_span, trace_headers

TraceHeaders = list[tuple[str, bytes]]


def _where(record: Record) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


class RecordSpans:
    """The spans of one batch's records; ``with`` ends them all (marked as errors if it raised)."""

    def __init__(self, records: Sequence[Record], *, group: str) -> None:
        self._spans: dict[tuple[str, int, int], Span] = {
            _where(r): process_span(r.topic, r.partition, r.offset, r.headers, group=group) for r in records
        }
        self._headers: dict[tuple[str, int, int], TraceHeaders] = {}
        self._ids: dict[tuple[str, int, int], str] = {}

    def parsed(self, items: Sequence[Parsed | Rejected]) -> None:
        """Names each decoded request's span with its notification id."""
        for item in items:
            if isinstance(item, Parsed):
                where = _where(item.record)
                self._ids[where] = notification_id = str(item.request.notification_id)
                span = self._spans[where]
                if span.is_recording():
                    span.set_attribute("notify.notification_id", notification_id)

    def headers(self, record: Record) -> TraceHeaders:
        """The trace headers of what the router writes for ``record`` (one ``traceparent`` per record,
        made once however many outputs it has)."""
        where = _where(record)
        found = self._headers.get(where)
        if found is None:
            found = self._headers[where] = trace_headers(self._spans[where])
        return found

    def traceparent(self, record: Record) -> str | None:
        """The ``traceparent`` of ``headers(record)``: what a deferred message keeps until its release."""
        return next((value.decode() for key, value in self.headers(record) if key == "traceparent"), None)

    @contextmanager
    def current(self, record: Record) -> Iterator[Span]:
        """``record``'s span as the current one, its notification id bound for log lines meanwhile."""
        where = _where(record)
        ids = {"notification_id": self._ids[where]} if where in self._ids else {}
        span = self._spans[where]
        with (
            trace.use_span(span, record_exception=False, set_status_on_exception=False),
            structlog.contextvars.bound_contextvars(**ids),
        ):
            yield span

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for span in self._spans.values():
            if exc is not None:
                mark_error(span, exc)
            span.end()
