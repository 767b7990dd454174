"""One batch of requests in, every record the router writes out: pure, given the lookups.

The Kafka loop (``app.py``) decodes records, fetches what this module needs in bulk (dedupe marks,
user contexts, categories, templates, cap usage), calls ``plan_batch``, and then writes the plan:
state rows to PostgreSQL, records to Kafka, in one transaction each. Nothing here does I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consumers.router.exceptions import RenderError, RenderInterrupted
from consumers.router.locales import pick_template
from consumers.router.outcome import OutcomeRow, outcome_of
from consumers.router.policy import (
    Decision,
    RouteRequest,
    cap_key,
    dedupe_keys,
    is_duplicate,
    route,
)
from consumers.router.render import Renderer
from consumers.router.tracking import with_tracking
from notify_core.codec import CHANNEL_MESSAGE, DEAD_LETTER, EVENT
from notify_core.events import Failure, dead_letter, event
from notify_core.exceptions import DecodeError, InvalidRequestError
from notify_core.records import Record
from notify_core.request_model import NotificationRequest
from notify_core.topics import Channel, TopicNames
from notify_core.tracking import TrackingSigner
from notify_core.userdata.models import Category, Template, UserContext


@dataclass(frozen=True)
class Parsed:
    """A request that decoded and validated."""

    record: Record
    request: NotificationRequest

    @property
    def position(self) -> tuple[int, int]:
        return (self.record.partition, self.record.offset)

    @property
    def keys(self) -> list[str]:
        r = self.request
        return dedupe_keys(str(r.notification_id), r.service, r.idempotency_key)


@dataclass(frozen=True)
class Rejected:
    record: Record
    failure: Failure


@dataclass(frozen=True)
class Output:
    topic: str
    key: bytes
    schema: str
    record: dict[str, Any]
    deliver_at: datetime | None = None  # set: hold in the deferred store until then


@dataclass(frozen=True)
class Lookups:
    seen: Mapping[str, tuple[int, int]]
    contexts: Mapping[str, UserContext]
    categories: Mapping[str, Category]
    templates: Mapping[str, Sequence[Template]]
    # (user_id, category, channel) -> notifications routed in the cap window, not counting this batch's own
    cap_usage: Mapping[tuple[str, str, Channel], int]


@dataclass
class BatchPlan:
    outputs: list[Output] = field(default_factory=list)
    seen_rows: list[tuple[str, int, int]] = field(default_factory=list)
    cap_rows: list[tuple[str, str, str, str]] = field(
        default_factory=list
    )  # cap key, user, channel, category
    # One per request that parsed, for the status endpoint; undecodable records have no id to file under.
    outcome_rows: list[OutcomeRow] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # origins[i]: the request record outputs[i] was planned for (its trace context goes with it).
    origins: list[Record] = field(default_factory=list)

    def _own(self, record: Record) -> None:
        """The outputs added since the last call are ``record``'s."""
        self.origins.extend([record] * (len(self.outputs) - len(self.origins)))


def route_request(request: NotificationRequest) -> RouteRequest:
    return RouteRequest(
        notification_id=str(request.notification_id),
        user_id=request.user_id,
        category=request.category,
        priority=request.priority.upper(),
        channels=tuple(request.channels),
        send_at=request.send_at,
        expires_at=request.expires_at,
    )


def plan_batch(
    items: Sequence[Parsed | Rejected],
    lookups: Lookups,
    *,
    names: TopicNames,
    renderer: Renderer,
    now: datetime,
    fallback_locale: str = "en",
    tracking: TrackingSigner | None = None,
) -> BatchPlan:
    """Every output and state row for a batch, in input order; ``tracking`` signs engagement links."""
    plan = BatchPlan()
    seen = dict(lookups.seen)
    usage: dict[tuple[str, str, Channel], int] = defaultdict(int, lookups.cap_usage)
    emit = _Emitter(plan, names, now, lookups.contexts)
    for item in items:
        if isinstance(item, Rejected):
            emit.reject(item.record, item.failure, None)
            plan._own(item.record)
            continue
        mark = _Mark.of(plan)
        try:
            _plan_one(item, lookups, plan, seen, usage, emit, renderer, now, fallback_locale, tracking)
        except RenderError as exc:
            mark.undo(plan, seen)
            emit.reject(item.record, Failure(exc.code, str(exc)), item.request)
        except RenderInterrupted:
            raise  # shutting down: the batch is abandoned whole, and replayed after restart
        except Exception as exc:  # the total catch: one request never stops the router
            mark.undo(plan, seen)
            failure = Failure("internal_error", f"{type(exc).__name__}: {exc}"[:2000])
            emit.reject(item.record, failure, item.request)
        # Summed up from the events this request emitted, whichever path it took above.
        events = [o.record for o in plan.outputs[mark.outputs :] if o.schema == EVENT]
        plan.outcome_rows.append(outcome_of(item.request, item.position, events))
        plan._own(item.record)
    return plan


@dataclass(frozen=True)
class _Mark:
    """How far the plan had got before one request: undone when that request fails half-way."""

    outputs: int
    seen_rows: int
    cap_rows: int
    outcome_rows: int
    counts: dict[str, int]

    @classmethod
    def of(cls, plan: BatchPlan) -> _Mark:
        return cls(
            len(plan.outputs),
            len(plan.seen_rows),
            len(plan.cap_rows),
            len(plan.outcome_rows),
            dict(plan.counts),
        )

    def undo(self, plan: BatchPlan, seen: dict[str, tuple[int, int]]) -> None:
        for key, _, _ in plan.seen_rows[self.seen_rows :]:
            seen.pop(key, None)
        del plan.outputs[self.outputs :], plan.seen_rows[self.seen_rows :], plan.cap_rows[self.cap_rows :]
        del plan.outcome_rows[self.outcome_rows :]
        plan.counts.clear()
        plan.counts.update(self.counts)


def _plan_one(
    item: Parsed,
    lookups: Lookups,
    plan: BatchPlan,
    seen: dict[str, tuple[int, int]],
    usage: dict[tuple[str, str, Channel], int],
    emit: _Emitter,
    renderer: Renderer,
    now: datetime,
    fallback_locale: str,
    tracking: TrackingSigner | None = None,
) -> None:
    req = item.request
    if is_duplicate(item.keys, seen, item.position):
        emit.suppressed(req, None, "duplicate")
        return
    for key in item.keys:
        if key not in seen:
            seen[key] = item.position
            plan.seen_rows.append((key, *item.position))
    category = lookups.categories.get(req.category) or Category(req.category)
    routing = route_request(req)
    user_usage = {c: usage[(req.user_id, req.category, c)] for c in Channel}
    decision = route(routing, lookups.contexts.get(req.user_id), category, now, user_usage)
    if decision.dropped is not None:
        emit.suppressed(req, None, decision.dropped)
        return
    messages = _messages(item, decision, lookups, renderer, fallback_locale, emit, tracking)
    for suppression in decision.suppressed:
        emit.suppressed(req, suppression.channel, suppression.reason)
    routed_channels = {m.record["channel"] for m in messages}
    for channel in Channel:
        if channel.value.upper() in routed_channels:
            usage[(req.user_id, req.category, channel)] += 1
            plan.cap_rows.append(
                (cap_key(routing.notification_id, channel), req.user_id, channel.value, req.category)
            )
    for message in messages:
        plan.outputs.append(message)
        emit.routed(req, message)


def _messages(
    item: Parsed,
    decision: Decision,
    lookups: Lookups,
    renderer: Renderer,
    fallback_locale: str,
    emit: _Emitter,
    tracking: TrackingSigner | None = None,
) -> list[Output]:
    req = item.request
    context = lookups.contexts[req.user_id]
    locale = req.locale or context.user.locale
    templates = lookups.templates.get(req.template_id, ())
    outputs: list[Output] = []
    rendered_by_channel: dict[Channel, Any] = {}
    for target in decision.targets:
        channel = target.channel
        if channel not in rendered_by_channel:
            template = pick_template(templates, channel, locale, fallback_locale)
            if template is None:
                rendered_by_channel[channel] = None
                emit.suppressed(req, channel, "no_template")
            else:
                rendered_by_channel[channel] = (template, renderer.render(template, req.params))
        chosen = rendered_by_channel[channel]
        if chosen is None:
            continue
        template, content = chosen
        record = {
            "delivery_id": target.delivery_id,
            "notification_id": str(req.notification_id),
            "service": req.service,
            "user_id": req.user_id,
            "channel": channel.value.upper(),
            "category": req.category,
            "priority": req.priority.upper(),
            "target": target.address,
            "target_ref": target.target_ref,
            "locale": template.locale,
            "template_id": template.template_id,
            "template_version": template.version,
            "title": content.title,
            "body": content.body,
            "data": dict(content.data),
            "sms_text": content.sms_text,
            "email_subject": content.email_subject,
            "email_html": content.email_html,
            "email_text": content.email_text,
            "attempt": 0,
            "not_before": None,
            "expires_at": req.expires_at,
            "created_at": emit.now,
            "requested_at": req.created_at,  # the worker's request-to-provider latency starts here
        }
        if tracking is not None:  # per target: one render serves several deliveries, each its own tokens
            record = with_tracking(
                record,
                channel,
                tracking,
                max_push_bytes=renderer.max_push_bytes,
                max_html_chars=renderer.max_output_chars,
            )
        outputs.append(
            Output(
                emit.names.channel(channel), req.user_id.encode(), CHANNEL_MESSAGE, record, target.deliver_at
            )
        )
    return outputs


class _Emitter:
    """Appends events and dead letters to the plan, and counts decisions.

    Every event carries the request's ``template_id`` and ``created_at`` (as ``requested_at``); ROUTED
    the locale its template was rendered in, SUPPRESSED the one it would have been (``_asked_locale``).
    """

    def __init__(
        self, plan: BatchPlan, names: TopicNames, now: datetime, contexts: Mapping[str, UserContext]
    ) -> None:
        self.plan, self.names, self.now, self.contexts = plan, names, now, contexts

    def _event(self, req: NotificationRequest, kind: str, **fields: Any) -> None:
        nid = str(req.notification_id)
        fields.setdefault("template_id", req.template_id)  # ROUTED names the template it rendered
        record = event(
            kind,
            occurred_at=self.now,
            notification_id=nid,
            user_id=req.user_id,
            service=req.service,
            category=req.category,
            requested_at=req.created_at,
            **fields,
        )
        self.plan.outputs.append(Output(self.names.events, nid.encode(), EVENT, record))

    def suppressed(self, req: NotificationRequest, channel: Channel | None, reason: str) -> None:
        self.plan.counts[f"suppressed:{reason}"] += 1
        self._event(req, "SUPPRESSED", channel=channel, reason=reason, locale=self._asked_locale(req))

    def routed(self, req: NotificationRequest, message: Output) -> None:
        self.plan.counts["routed"] += 1
        attributes = {"deliver_at": message.deliver_at.isoformat()} if message.deliver_at else {}
        self._event(
            req,
            "ROUTED",
            delivery_id=message.record["delivery_id"],
            channel=Channel(message.record["channel"].lower()),
            attributes=attributes,
            template_id=message.record["template_id"],
            locale=message.record["locale"],
        )

    def reject(self, record: Record, failure: Failure, req: NotificationRequest | None) -> None:
        self.plan.counts[f"rejected:{failure.error_type}"] += 1
        letter = dead_letter(record, failure, stage="router", failed_at=self.now)
        # The letter's own bounded key: the original may be too large for the letter to be produced.
        self.plan.outputs.append(Output(self.names.requests_dlq, letter["key"] or b"", DEAD_LETTER, letter))
        if req is not None:
            self._event(
                req,
                "SUPPRESSED",
                reason="invalid",
                attributes={"error_type": failure.error_type},
                locale=self._asked_locale(req),
            )

    def _asked_locale(self, req: NotificationRequest) -> str | None:
        """The locale ``req`` is rendered in before any fallback (as ``_messages`` asks for it): its
        own override, else its user's; ``None`` when the user is unknown."""
        context = self.contexts.get(req.user_id)
        return req.locale or (context.user.locale if context is not None else None)


def parse_records(
    records: Sequence[Record], decode: Callable[[bytes], dict[str, Any]]
) -> list[Parsed | Rejected]:
    """Decode and validate; a bad record becomes ``Rejected`` with the reason, never an exception."""
    items: list[Parsed | Rejected] = []
    for record in records:
        try:
            data = decode(record.value or b"")
        except DecodeError as exc:
            items.append(Rejected(record, Failure("decode_error", str(exc))))
            continue
        try:
            items.append(Parsed(record, NotificationRequest.from_avro(data)))
        except InvalidRequestError as exc:
            items.append(Rejected(record, Failure("invalid_request", str(exc))))
    return items
