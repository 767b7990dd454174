"""A SERVER span per HTTP request, named ``<method> <route>`` (``POST /v1/notifications``).

A notification sent through the API starts its trace here (or continues the caller's, when the
request carries a W3C ``traceparent``): the SDK's ``send`` span made by the handler is its child,
and the router and the workers carry the context on from the record. The span names the route's
template, never the path itself (tracking paths hold signed tokens).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from opentelemetry import propagate
from opentelemetry.trace import Span, SpanKind

from notify_core.tracing import TRACER, current, mark_error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def tracing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else None
    name = f"{request.method} {route}" if route else request.method
    span = TRACER.start_span(name, context=propagate.extract(request.headers), kind=SpanKind.SERVER)
    if span.is_recording():
        span.set_attributes({"http.request.method": request.method, "url.scheme": request.scheme})
        if route:
            span.set_attribute("http.route", route)
    with current(span):
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # a redirect raised as an exception (the click endpoint)
            _status(span, exc.status)
            raise
        _status(span, response.status)
        return response


def _status(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:  # a server span's error is the server's (HTTP convention): 4xx are the caller's
        mark_error(span, str(status))
