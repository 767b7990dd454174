"""The one logging setup: structlog, JSON lines, personal data redacted.

``configure_logging`` is called once, at an entry point. ``redact`` is a pure structlog processor:
it masks values of keys that carry personal data (phone numbers, e-mail addresses, device tokens),
keeping only a short, non-reversible hint so support can still correlate lines.

Third-party libraries log through stdlib ``logging``, and some print personal data at DEBUG:
botocore prints every request's parameters, so an SNS ``Publish`` shows the phone number and the SMS
text (``'PhoneNumber': '+4420...', 'Message': '...'`` in a dict repr); HTTP/2 and HTTP client
logs show APNs device tokens in ``/3/device/<token>`` paths. ``redact_text`` is the pure function
that masks those in any text, and ``RedactFilter`` applies it to every record (message, exception
text, stack) that a root handler emits; ``configure_logging`` installs it on the root's handlers.

Every line is one JSON object, stdlib records too (rendered by structlog's ``ProcessorFormatter``).
``add_trace_ids`` puts the current span's ``trace_id`` and ``span_id`` on each line, and the workers
bind ``notification_id`` and ``delivery_id`` (structlog contextvars) while they handle a message, so
library lines logged meanwhile carry them as well. ``redact_rendered`` passes each finished line
through ``redact_text``: whatever a value held (an exception's text, a nested dict) is masked there.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import structlog
from opentelemetry import trace

SENSITIVE_KEYS = frozenset(
    {"phone", "phone_number", "email", "email_address", "token", "device_token", "target", "password"}
)


def mask(value: object) -> str:
    """A stable, non-reversible stand-in for a personal value."""
    digest = hashlib.sha256(str(value).encode()).hexdigest()[:10]
    return f"<redacted:{digest}>"


# Keys whose values are masked wherever a dict repr, JSON or a form body shows them: SNS Publish's
# PhoneNumber and Message (exact case: the API's names), and our sensitive keys plus credentials.
_SNS_KEYS = r"PhoneNumber|Message"
_OTHER_KEYS = "|".join(
    sorted({*SENSITIVE_KEYS, "authorization", "access_token", "refresh_token", "registration_token"})
)
_KEYS = rf"(?:{_SNS_KEYS}|(?i:{_OTHER_KEYS}))"
# Each pattern: head (kept) + value (masked) + tail (kept).
_KEYED = (
    # 'key': 'value', "key": "value", 'key': b'value': reprs and JSON, backslash escapes inside.
    re.compile(
        rf"""(?P<head>(?P<kq>['"]){_KEYS}(?P=kq)\s*:\s*b?(?P<q>['"]))"""
        r"(?P<value>(?:\\.|(?!(?P=q))[^\\])*)(?P<tail>(?P=q))",
        re.DOTALL,
    ),
    # key=value in a form body or a query string (SNS's wire format is a form).
    re.compile(rf"(?P<head>(?<![\w%.-]){_KEYS}=)(?P<value>[^&\s'\"]+)(?P<tail>)"),
    # Device tokens in provider URLs: APNs /3/device/<token>, FCM's instance-ID API /iid/info|v1/<token>
    # (FCM tokens contain ':').
    re.compile(r"(?P<head>/3/device/|/iid/(?:info|v1)/)(?P<value>[^/?#&\s'\"<>]+)(?P<tail>)"),
    # Our API keys, nfy_<key id>_<secret> (api/keys.py): the secret goes, the public key id stays. Any
    # run of its characters, so a key cut short in a log line loses what is left of its secret too.
    re.compile(r"(?P<head>(?<![A-Za-z0-9])nfy_[0-9a-f]{12}_)(?P<value>[A-Za-z0-9_-]+)(?P<tail>)"),
)
# user@example.com, also percent-encoded (user%40example.com); the last label starts with a letter, so
# user@127.0.0.1 in a database URL is left alone. Parts are bounded (RFC 5321's 64 and 63), so a long
# run of letters without an @ (a hex dump at DEBUG) costs linear time, not quadratic.
_EMAIL = re.compile(r"[\w.%+-]{1,64}(?:@|%40)(?:[\w-]{1,63}\.){1,8}[^\W\d_][\w-]{0,62}(?![\w-])")
# E.164-looking: + (or %2B) then 7 to 15 digits; single spaces or dashes between digits are allowed.
_PHONE = re.compile(r"(?<!\d)(?:\+|%2[Bb])[1-9](?:[ -]?\d){6,14}(?!\d)")
_MASKED = re.compile(r"<redacted:[0-9a-f]{10}>")


def _mask_value(match: re.Match[str]) -> str:
    if _MASKED.fullmatch(match.group("value")):  # masked already (a record seen by two handlers)
        return match.group(0)
    return f"{match.group('head')}{mask(match.group('value'))}{match.group('tail')}"


def redact_text(text: str) -> str:
    """``text`` with SNS PhoneNumber/Message values, other sensitive key/value pairs, device tokens in
    provider URLs, API keys' secrets, e-mail addresses and phone numbers replaced by ``mask`` of what
    they were."""
    for pattern in _KEYED:  # whole values first: a phone number inside an SMS text goes with the text
        text = pattern.sub(_mask_value, text)
    text = _EMAIL.sub(lambda m: mask(m.group(0)), text)
    return _PHONE.sub(lambda m: mask(m.group(0)), text)


class RedactFilter(logging.Filter):
    """Masks personal data (``redact_text``) in every record its handler emits, whoever logged it.

    It formats the message once and stores the result (args dropped), so every later handler and
    formatter sees the masked text; exception and stack text are formatted and masked here too.
    """

    _exceptions = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not make logging raise here
            message = f"{record.msg!s} (arguments dropped: they did not fit the format)"
        record.msg, record.args = redact_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exceptions.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Put a ``RedactFilter`` on each handler of ``logger`` (default: the root) that has none.

    A filter on a handler sees records propagated from every logger below (a logger's own filters do
    not). Handlers added later need this call again.
    """
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.addFilter(RedactFilter())


def redact(_logger: object, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in SENSITIVE_KEYS and event_dict[key] is not None:
            event_dict[key] = mask(event_dict[key])
    return event_dict


def redact_rendered(_logger: object, _method: str, line: Any) -> Any:
    """The last processor: ``redact_text`` over the rendered line, so personal data inside any value
    (an exception's text or traceback, an error string, a nested structure) is masked too."""
    return redact_text(line) if isinstance(line, str) else line


def add_trace_ids(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``trace_id`` and ``span_id`` (hex, as trace backends show them) of the current span, if any;
    values bound explicitly are kept."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written, not when logging was configured: a logger
    cached on first use must not keep writing to a stream that was swapped out and closed since
    (pytest's capture, a daemon's redirection)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Set up structlog (and route stdlib logging through the same level and rendering) once per
    process."""
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
    ]
    structlog.configure(
        processors=[*shared, redact, structlog.processors.format_exc_info, renderer, redact_rendered],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=True,
    )
    # Library records as JSON lines like ours, with the logger's name and the same bound fields.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
            redact_rendered,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # structlog's events are masked by ``redact``; this covers what libraries log (botocore at DEBUG).
    install_redaction()
