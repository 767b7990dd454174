"""Every error the API answers with, as an RFC 9457 problem document (``application/problem+json``).

::

    Problem                       status, a type slug, a title; optional detail, errors and headers
    ├── BadRequest (400)          not JSON, not UTF-8, not an object, a bad form
    ├── Unauthorized (401)        no key, an unknown or revoked key
    ├── Forbidden (403)           a key without the scope
    ├── NotFound (404)            an unknown route, user, device or notification
    ├── Gone (410)                an expired tracking link
    ├── TooLarge (413)            a body over the limit
    ├── Unprocessable (422)       fields that break the contract, each named by its JSON pointer
    ├── TooManyRequests (429)     over the key's rate, with Retry-After
    └── Unavailable (503)         the broker or the database did not answer in time, with Retry-After

Handlers raise these; ``problem_middleware`` turns them (and aiohttp's own 404/405/413) into the
response in one place. Anything else is a bug: logged, and answered 500 without its text.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

PROBLEM_TYPE = "application/problem+json"
TYPE_BASE = "https://notify.example.com/problems/"
_log = structlog.get_logger("notify.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Problem(Exception):
    status = 500
    slug = "internal"
    title = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[dict[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        slug: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        if slug is not None:
            self.slug = slug

    def document(self, instance: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "instance": instance,
        }
        if self.detail:
            doc["detail"] = self.detail
        if self.errors:
            doc["errors"] = self.errors
        doc.update(self.extra)
        return doc


class BadRequest(Problem):
    status, slug, title = 400, "bad-request", "The request could not be read"


class Unauthorized(Problem):
    status, slug, title = 401, "unauthorized", "A valid API key is required"


class Forbidden(Problem):
    status, slug, title = 403, "forbidden", "The API key may not do this"


class NotFound(Problem):
    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(Problem):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class Gone(Problem):
    status, slug, title = 410, "gone", "No longer valid"


class TooLarge(Problem):
    status, slug, title = 413, "too-large", "The request body is too large"


class UnsupportedMediaType(Problem):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class Unprocessable(Problem):
    status, slug, title = 422, "invalid", "The request breaks the contract"


class TooManyRequests(Problem):
    status, slug, title = 429, "rate-limited", "Too many requests"


class Unavailable(Problem):
    status, slug, title = 503, "unavailable", "A backing service did not answer in time"


def field_error(pointer: str, detail: str) -> dict[str, str]:
    """One entry of a problem's ``errors``: the JSON pointer of the bad field and what is wrong."""
    return {"pointer": pointer, "detail": detail}


def pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON pointer from path parts (``~`` and ``/`` escaped)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def problem_response(problem: Problem, instance: str) -> web.Response:
    # ASCII escapes: a field name quoted back can hold a lone surrogate, which UTF-8 cannot encode.
    body = json.dumps(problem.document(instance), ensure_ascii=True)
    response = web.Response(text=body, status=problem.status, content_type=PROBLEM_TYPE)
    response.headers.update(problem.headers)
    return response


_FROM_AIOHTTP: dict[int, type[Problem]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: TooLarge,
    415: UnsupportedMediaType,
}


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns every error into a problem document; the only place an error becomes a response."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem, request.path)
    except (HttpProcessingError, web.RequestPayloadError):  # a body aiohttp cannot decode (bad gzip)
        return problem_response(BadRequest("the body could not be read (bad encoding)"), request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and other successes raised as exceptions pass through
        kind = _FROM_AIOHTTP.get(exc.status)
        if kind is None:
            kind = type("Other", (Problem,), {"status": exc.status, "slug": "http", "title": exc.reason})
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        detail = exc.text if exc.status == 413 else None
        return problem_response(kind(detail, headers=headers), request.path)
    except Exception:
        # The route's template, never the path: tracking paths carry signed (readable) tokens.
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        _log.exception("api_internal_error", route=route, method=request.method)
        return problem_response(Problem(), request.path)
