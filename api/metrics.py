"""The API's own instruments. Labels are bounded: the route's template (never the raw path, which
holds user and notification ids), the method and the status code."""

from __future__ import annotations

from notify_core.instruments import PROCESS, TOPIC, Instruments
from notify_core.metrics import Metrics
from notify_core.topics import TopicNames


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
        # And the pipeline's own instruments: what the API produced, named as every process names it.
        self.pipeline = Instruments(metrics)
        names = TopicNames()
        self._requests = {PROCESS: "api", TOPIC: names.base(names.requests)}
        self._events = {PROCESS: "api", TOPIC: names.base(names.events)}
        self._changes = {PROCESS: "api", TOPIC: names.base(names.user_changes)}

    def notifications_accepted(self, count: int) -> None:
        """``count`` notifications acknowledged by the broker on the requests topic."""
        self.accepted.add(count)
        self.pipeline.produced.add(count, self._requests)

    def event_produced(self, event_type: str) -> None:
        self.events.add(1, {"event_type": event_type})
        self.pipeline.produced.add(1, self._events)

    def change_published(self) -> None:
        """A preference or contact change on the user-changes topic."""
        self.pipeline.produced.add(1, self._changes)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels: dict[str, str | int] = {
            "http.request.method": method,
            "http.route": route,
            "http.response.status_code": status,
        }
        self.requests.add(1, labels)
        self.duration.record(seconds, labels)
