"""The one logging setup: structlog, JSON lines, personal data redacted.

``configure_logging`` is called once, at an entry point. ``redact`` is a pure structlog processor:
it masks values of keys that carry personal data (phone numbers, e-mail addresses, device tokens),
keeping only a short, non-reversible hint so support can still correlate lines.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SENSITIVE_KEYS = frozenset(
    {"phone", "phone_number", "email", "email_address", "token", "device_token", "target", "password"}
)


def mask(value: object) -> str:
    """A stable, non-reversible stand-in for a personal value."""
    digest = hashlib.sha256(str(value).encode()).hexdigest()[:10]
    return f"<redacted:{digest}>"


def redact(_logger: object, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in SENSITIVE_KEYS and event_dict[key] is not None:
            event_dict[key] = mask(event_dict[key])
    return event_dict


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Set up structlog (and route stdlib logging through the same level) once per process."""
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
