"""Errors the SDK raises.

::

    NotifyError (notify_core)
    ├── InvalidRequestError        the request breaks the contract; nothing was sent
    └── KafkaError (notify_core)
        └── DeliveryError          the broker did not acknowledge in time; see ``code``
"""

from __future__ import annotations

from notify_core.exceptions import DeliveryError, InvalidRequestError

__all__ = ["DeliveryError", "InvalidRequestError"]
