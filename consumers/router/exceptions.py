"""Errors of the router.

::

    NotifyError (notify_core)
    └── RouterError
        └── RenderError        a template that cannot be rendered for this request (``code`` says why)
"""

from __future__ import annotations

from notify_core.exceptions import NotifyError


class RouterError(NotifyError):
    """Root of the router's own errors."""


class RenderError(RouterError):
    """``code``: missing_param, template_syntax, template_security, template_error, push_too_large,
    sms_too_long, empty_content, bad_subject."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
