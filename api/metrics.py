"""The API's own instruments. Labels are bounded: the route's template (never the raw path, which
holds user and notification ids), the method and the status code."""

from __future__ import annotations

from notify_core.metrics import Metrics


class ApiMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        meter = metrics.meter("notify.api")
        self.requests = meter.create_counter(
            "http.server.requests", unit="{request}", description="HTTP requests answered"
        )
        self.duration = meter.create_histogram(
            "http.server.request.duration", unit="s", description="Time to answer an HTTP request"
        )
        self.accepted = meter.create_counter(
            "notify.api.notifications.accepted",
            unit="{notification}",
            description="Notifications acknowledged by the broker",
        )
        self.events = meter.create_counter(
            "notify.api.events.produced", unit="{event}", description="Tracking events produced"
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels: dict[str, str | int] = {
            "http.request.method": method,
            "http.route": route,
            "http.response.status_code": status,
        }
        self.requests.add(1, labels)
        self.duration.record(seconds, labels)
