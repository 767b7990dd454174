"""The router's durable state in PostgreSQL: dedupe marks, cap counters, deferred messages, outcomes.

Written inside one database transaction per batch, committed just before the batch's Kafka
transaction. Every write is keyed so that replaying a batch whose Kafka transaction aborted (the
router was killed, the broker refused the commit) changes nothing: ``router_seen`` remembers the
(partition, offset) that first saw a key, so a replay of the same record is recognised as itself;
cap rows and deferred rows are keyed by ids that are stable across replays. Outcome rows (what the
status endpoint reads) are keyed by notification id and remember their record's position, so a
replay rewrites its own row and a duplicate never touches the first request's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from consumers.router.outcome import OutcomeRow
from notify_core.topics import Channel


@dataclass(frozen=True)
class DueMessage:
    delivery_id: str
    topic: str
    key: bytes | None
    value: bytes
    traceparent: str | None = None  # the deferring request's trace context, carried on at release


class RouterState:
    """Bulk reads and writes of router state over one connection (the caller owns transactions)."""

    def __init__(
        self,
        conn: psycopg.Connection[tuple[object, ...]],
        *,
        dedupe_window: timedelta,
        cap_window: timedelta = timedelta(days=1),
        outcome_retention: timedelta | None = None,
    ) -> None:
        self._conn = conn
        self._dedupe_window = dedupe_window
        self._cap_window = cap_window
        # Outcomes are kept as long as the dedupe marks unless told otherwise: while a mark lives, a
        # re-sent request is suppressed as a duplicate of the outcome the status endpoint shows.
        self._outcome_retention = dedupe_window if outcome_retention is None else outcome_retention

    def seen(self, keys: Sequence[str], now: datetime) -> dict[str, tuple[int, int]]:
        if not keys:
            return {}
        rows = self._conn.execute(
            "select dedupe_key, source_partition, source_offset from router_seen"
            " where dedupe_key = any(%s) and seen_at > %s",
            (list(keys), now - self._dedupe_window),
        ).fetchall()
        return {str(k): (int(p), int(o)) for k, p, o in rows}  # type: ignore[call-overload]

    def cap_usage(
        self, pairs: Sequence[tuple[str, str]], exclude_keys: Sequence[str], now: datetime
    ) -> dict[tuple[str, str, Channel], int]:
        """Notifications routed per (user, category, channel) in the cap window, except ``exclude_keys``."""
        if not pairs:
            return {}
        users = [u for u, _ in pairs]
        categories = [c for _, c in pairs]
        rows = self._conn.execute(
            "select r.user_id, r.category, r.channel, count(*) from router_routed r"
            " join unnest(%s::text[], %s::text[]) as p(user_id, category)"
            "   on p.user_id = r.user_id and p.category = r.category"
            " where r.routed_at > %s and not (r.delivery_id = any(%s))"
            " group by 1, 2, 3",
            (users, categories, now - self._cap_window, list(exclude_keys)),
        ).fetchall()
        return {(str(u), str(c), Channel(str(ch))): int(n) for u, c, ch, n in rows}  # type: ignore[call-overload]

    def record(
        self,
        seen_rows: Sequence[tuple[str, int, int]],
        cap_rows: Sequence[tuple[str, str, str, str]],
        # delivery id, due at, topic, key, value, traceparent
        deferred_rows: Sequence[tuple[str, datetime, str, bytes | None, bytes, str | None]],
        now: datetime,
        outcome_rows: Sequence[OutcomeRow] = (),
    ) -> None:
        with self._conn.cursor() as cur:
            if seen_rows:
                # A key last seen before the window is new again: take it over, so a retry of the
                # reused request within the new window is caught. Within the window the first
                # sighting stays (that is how a replayed batch recognises itself).
                cur.executemany(
                    "insert into router_seen as s (dedupe_key, source_partition, source_offset, seen_at)"
                    " values (%s, %s, %s, %s) on conflict (dedupe_key) do update set"
                    " source_partition = excluded.source_partition, source_offset = excluded.source_offset,"
                    " seen_at = excluded.seen_at where s.seen_at <= %s",
                    [(k, p, o, now, now - self._dedupe_window) for k, p, o in seen_rows],
                )
            if cap_rows:
                # One statement for the batch (two rows a request): set-based, not a row at a time.
                columns = [list(column) for column in zip(*cap_rows, strict=True)]
                cur.execute(
                    "insert into router_routed (delivery_id, user_id, channel, category, routed_at)"
                    " select d, u, ch, ca, %s from unnest(%s::text[], %s::text[], %s::text[], %s::text[])"
                    " as t(d, u, ch, ca) on conflict (delivery_id) do nothing",
                    [now, *columns],
                )
            if deferred_rows:
                cur.executemany(
                    "insert into router_deferred"
                    " (delivery_id, due_at, topic, msg_key, msg_value, traceparent, created_at)"
                    " values (%s, %s, %s, %s, %s, %s, %s) on conflict (delivery_id) do nothing",
                    [(*row, now) for row in deferred_rows],
                )
            if outcome_rows:
                self._record_outcomes(cur, outcome_rows, now)

    def _record_outcomes(self, cur: psycopg.Cursor[Any], rows: Sequence[OutcomeRow], now: datetime) -> None:
        # Which decision a notification id shows, when a second one comes for it:
        # - the same record (partition, offset) decided again is a replay after its Kafka transaction
        #   aborted. Its new decision can legitimately differ (the clock moved past expires_at or into
        #   quiet hours, a preference changed), and it is the one whose records the retried Kafka
        #   transaction commits: it replaces the row. Replaying the same decision rewrites the same row.
        # - another record with the id is a re-send, planned as a duplicate: the first outcome stays.
        # - a rejected request never claimed its dedupe keys (the plan was undone), so a later copy
        #   (a dead letter replayed once the template is fixed) is the request's outcome now.
        # - past the dedupe window the id counts as new again (as in router_seen).
        cur.executemany(
            "insert into router_outcomes as o (notification_id, service, user_id, category, template_id,"
            " outcome, reason, channels, source_partition, source_offset, decided_at)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) on conflict (notification_id) do update set"
            " service = excluded.service, user_id = excluded.user_id, category = excluded.category,"
            " template_id = excluded.template_id, outcome = excluded.outcome, reason = excluded.reason,"
            " channels = excluded.channels, source_partition = excluded.source_partition,"
            " source_offset = excluded.source_offset, decided_at = excluded.decided_at"
            " where (o.source_partition, o.source_offset)"
            "   = (excluded.source_partition, excluded.source_offset)"
            " or o.outcome = 'rejected' or o.decided_at <= %s",
            [
                (
                    r.notification_id,
                    r.service,
                    r.user_id,
                    r.category,
                    r.template_id,
                    r.outcome,
                    r.reason,
                    Jsonb([c.to_json() for c in r.channels]),
                    r.source_partition,
                    r.source_offset,
                    now,
                    now - self._dedupe_window,
                )
                for r in rows
            ],
        )

    def due(self, now: datetime, limit: int) -> list[DueMessage]:
        """Deferred messages whose time has come, locked for this transaction (others skip them)."""
        rows = self._conn.execute(
            "select delivery_id, topic, msg_key, msg_value, traceparent from router_deferred"
            " where released_at is null and due_at <= %s order by due_at limit %s for update skip locked",
            (now, limit),
        ).fetchall()
        return [
            DueMessage(
                str(d),
                str(t),
                bytes(k) if k is not None else None,  # type: ignore[call-overload]
                bytes(v),  # type: ignore[call-overload]
                str(p) if p is not None else None,
            )
            for d, t, k, v, p in rows
        ]

    def mark_released(self, delivery_ids: Sequence[str], now: datetime) -> None:
        self._conn.execute(
            "update router_deferred set released_at = %s where delivery_id = any(%s)",
            (now, list(delivery_ids)),
        )

    def prune(self, now: datetime, *, released_retention: timedelta, limit: int) -> int:
        """Forget, at most ``limit`` rows a table at a time, dedupe marks and cap rows past their
        windows, deferred messages released longer ago than ``released_retention`` and outcomes
        past their retention (the dedupe window by default)."""
        removed = 0
        for table, column, cutoff, extra in (
            ("router_seen", "seen_at", now - self._dedupe_window, ""),
            ("router_routed", "routed_at", now - self._cap_window, ""),
            ("router_deferred", "released_at", now - released_retention, " and released_at is not null"),
            ("router_outcomes", "decided_at", now - self._outcome_retention, ""),
        ):
            cur = self._conn.execute(
                f"delete from {table} where ctid = any(array("  # noqa: S608 - names from this list only
                f"select ctid from {table} where {column} <= %s{extra} order by {column} limit %s))",
                (cutoff, limit),
            )
            removed += cur.rowcount or 0
        return removed
