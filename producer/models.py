"""The request model services build; it lives in ``notify_core`` because the router validates with it too."""

from notify_core.request_model import NotificationRequest

__all__ = ["NotificationRequest"]
