"""Errors raised by the analytics sink.

::

    NotifyError (notify_core.exceptions)
    └── SinkError                    the sink cannot go on as configured
        ├── UnsupportedSchema        an Avro type the Parquet mapping does not cover
        ├── NotSettled               a dead letter not yet acknowledged: its offset waits (retried)
        └── StoreUnavailable         the output (directory or S3) refused or failed an operation;
                                     an outage: the same flush is tried again later

Foreign errors (``OSError``, botocore's) are translated once, in ``store.py``.
"""

from __future__ import annotations

from notify_core.exceptions import NotifyError


class SinkError(NotifyError):
    """The sink cannot go on as configured (a bad output location, a flush it could not finish)."""


class UnsupportedSchema(SinkError):
    """An Avro type that has no column mapping (a union of two non-null branches, say)."""


class StoreUnavailable(SinkError):
    """The output failed an operation; nothing is committed, and the same flush is tried again."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class NotSettled(SinkError):
    """A dead letter of the partition is not acknowledged yet: its offset cannot be committed."""
