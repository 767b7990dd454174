"""What every log line carries and hides: ``add_trace_ids`` (the current span's ids), the message ids a
worker binds, ``redact_rendered`` over the finished line, and API keys masked by ``redact_text``."""

from __future__ import annotations

import json
from typing import Any

import structlog
from opentelemetry import trace

from notify_core.logs import add_trace_ids, mask, redact, redact_rendered, redact_text
from notify_core.tracing import PropagatingTracer, current, parent_from_headers

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = [("traceparent", f"00-{TRACE_ID}-b7ad6b7169203331-01".encode())]
API_KEY = "nfy_0123456789ab_" + "Zk3-_q" * 7 + "A"  # 12 hex, then 43 URL-safe characters


def test_trace_ids_come_from_the_current_span() -> None:
    """Inside a span: its trace id (32 hex) and span id (16 hex), as trace backends show them."""
    with current(
        PropagatingTracer().start_span("process t.ios", context=parent_from_headers(PARENT))
    ) as span:
        event = add_trace_ids(None, "info", {"event": "sent"})
    assert event["trace_id"] == TRACE_ID
    assert event["span_id"] == format(span.get_span_context().span_id, "016x")


def test_no_span_no_trace_ids_and_bound_ones_are_kept() -> None:
    assert add_trace_ids(None, "info", {"event": "started"}) == {"event": "started"}
    with trace.use_span(PropagatingTracer().start_span("x")):
        assert add_trace_ids(None, "info", {"trace_id": "mine"})["trace_id"] == "mine"


def test_a_line_carries_the_bound_message_ids_and_the_trace() -> None:
    """The processors as configured: contextvars (what a worker binds per delivery), then trace ids."""
    with (
        current(PropagatingTracer().start_span("process t.sms", context=parent_from_headers(PARENT))),
        structlog.contextvars.bound_contextvars(notification_id="n-1", delivery_id="d-1"),
    ):
        event: Any = structlog.contextvars.merge_contextvars(
            None, "info", {"event": "delivery_internal_error"}
        )
        event = add_trace_ids(None, "info", event)
    assert (event["notification_id"], event["delivery_id"], event["trace_id"]) == ("n-1", "d-1", TRACE_ID)


def test_the_rendered_line_is_redacted_whatever_value_held_the_data() -> None:
    """An exception's text, a nested dict and an error string are masked once rendered; keys that are
    masked already (``redact``) keep their one mask."""
    event = {
        "event": "delivery_internal_error",
        "target": "+12025550147",
        "error": "SMTPRecipientsRefused: 550 <ann@example.com> unknown",
        "context": {"to": "+12025550147", "auth": f"Bearer {API_KEY}"},
        "exception": 'Traceback...\nValueError: refused "bob@example.com"',
    }
    line = redact_rendered(None, "error", json.dumps(redact(None, "error", event)))
    for value in ("+12025550147", "ann@example.com", "bob@example.com", API_KEY, API_KEY[17:]):
        assert value not in line
    assert line.count(mask("+12025550147")) == 2
    assert mask("ann@example.com") in line
    assert json.loads(line)["event"] == "delivery_internal_error"


def test_api_keys_lose_their_secret_and_keep_their_public_id() -> None:
    """``nfy_<key id>_<secret>``: the key id (public, what ``notify keys list`` shows) stays for support;
    the secret, whole or cut short, is masked."""
    assert redact_text(f"Authorization: Bearer {API_KEY}") == (
        f"Authorization: Bearer nfy_0123456789ab_{mask(API_KEY[17:])}"
    )
    assert API_KEY[17:37] not in redact_text(f"key={API_KEY[:37]}…")
    assert redact_text(redact_text(API_KEY)) == redact_text(API_KEY)
    assert redact_text("nfy_notakey and nfy_0123456789ab") == "nfy_notakey and nfy_0123456789ab"
