"""Errors raised by the shared package.

::

    NotifyError                      root of everything we raise on purpose
    ├── ConfigError                  settings that cannot work
    ├── DecodeError                  bytes that are not a record we can read
    ├── InvalidRequestError          a notification request that breaks the contract
    ├── SchemaError                  a schema file that cannot be loaded
    ├── KafkaError                   a broker operation failed (keeps librdkafka's error code)
    │   └── DeliveryError            a produced message was not acknowledged in time
    ├── DatabaseError                PostgreSQL could not be reached or refused an operation
    ├── InvalidUserData              user data that breaks a rule (bad E.164, unknown time zone, ...)
    └── StackError                   the local stack could not be started or stopped

Foreign errors are translated once, at the boundary, with ``raise ... from exc``.
"""

from __future__ import annotations


class NotifyError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(NotifyError):
    """Settings that cannot work together."""


class DecodeError(NotifyError):
    """Bytes that are not a record we can read (garbage, truncated, unknown schema)."""


class InvalidRequestError(NotifyError, ValueError):
    """A request that breaks the contract.

    ``problems`` lists ``(field path, message)`` for every bad field; ``locations`` the same fields as
    path parts (``("params", "name")``, ``()`` for the request as a whole), for JSON pointers.
    """

    def __init__(
        self,
        problems: list[tuple[str, str]],
        *,
        index: int | None = None,
        locations: list[tuple[int | str, ...]] | None = None,
    ) -> None:
        self.problems = problems
        self.index = index
        self.locations = locations if locations is not None else [() for _ in problems]
        where = "notification request" if index is None else f"notification request #{index}"
        details = "; ".join(f"{path}: {message}" for path, message in problems)
        super().__init__(f"invalid {where}: {details}")


class SchemaError(NotifyError):
    """A schema file in ``schemas/`` that is missing or invalid."""


class KafkaError(NotifyError):
    """A broker operation failed; ``code`` is librdkafka's error name when there is one."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class DeliveryError(KafkaError):
    """A produced message was not acknowledged by the broker."""


class DatabaseError(NotifyError):
    """PostgreSQL could not be reached, or refused an operation."""


class InvalidUserData(NotifyError, ValueError):
    """User data that breaks a rule: a bad phone number, an unknown time zone, a changed template version."""


class StackError(NotifyError):
    """The local stack (Kafka, PostgreSQL) could not be started or stopped."""
