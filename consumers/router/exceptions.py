"""Errors of the router.

::

    NotifyError (notify_core)
    └── RouterError
        ├── RenderError        a template that cannot be rendered for this request (``code`` says why)
        └── RenderInterrupted  a render given up because the router is stopping (not the request's fault)
"""

from __future__ import annotations

from notify_core.exceptions import NotifyError


class RouterError(NotifyError):
    """Root of the router's own errors."""


class RenderError(RouterError):
    """``code``: missing_param, template_syntax, template_security, template_error, template_limit,
    push_too_large, sms_too_long, empty_content, bad_subject."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RenderInterrupted(RouterError):
    """``Renderer.interrupt()`` was called (shutdown): the batch is abandoned, never dead-lettered.

    Deliberately not a ``RenderError``: nothing is wrong with the request or its template.
    """
