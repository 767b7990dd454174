"""The Python SDK services use to publish notification requests."""

from producer.client import NotificationClient, SendResult
from producer.exceptions import InvalidRequestError
from producer.models import NotificationRequest

__all__ = ["InvalidRequestError", "NotificationClient", "NotificationRequest", "SendResult"]
