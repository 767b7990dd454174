"""Where a process's metrics are served and how Prometheus finds them.

``MetricsEndpoint`` serves one ``Metrics`` registry at ``/metrics`` on ``metrics_host:metrics_port``
(port 0: a free one, so two of a process can share a host) from prometheus_client's own HTTP server
thread, so a busy event loop never delays a scrape. ``register_target`` writes a Prometheus
``file_sd`` target file under ``<cache_dir>/monitoring/targets`` (or ``metrics_targets_dir``) naming
the address, the job and the instance; the local Prometheus (``notify stack up --with-monitoring``)
watches that folder, so a process is scraped from its first second and dropped when it exits and
removes its file.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import start_http_server

from notify_core.instruments import Instruments
from notify_core.metrics import Metrics
from notify_core.settings import Settings

log = structlog.get_logger("metrics")


def targets_dir(settings: Settings) -> Path:
    """``settings.metrics_targets_dir``, or ``<cache_dir>/monitoring/targets`` (the local Prometheus's)."""
    return settings.metrics_targets_dir or settings.monitoring_dir() / "targets"


class TargetFile:
    """One file_sd target of this process: written on creation, removed by ``remove``."""

    def __init__(
        self, settings: Settings, job: str, instance: str, port: int, *, path: str, host: str | None = None
    ) -> None:
        folder = targets_dir(settings)
        folder.mkdir(parents=True, exist_ok=True)
        prune_dead_targets(folder)
        self.path = folder / f"{job}-{instance}-{os.getpid()}.json"
        labels = {"job": job, "notify_instance": instance, "__metrics_path__": path}
        # ``host``: where the endpoint listens when that is not metrics_host (the API's own port).
        address = _host(settings.metrics_host if host is None else host)
        entry: list[dict[str, Any]] = [{"targets": [f"{address}:{port}"], "labels": labels}]
        # Written aside and renamed, so Prometheus never reads half a file.
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps(entry), "utf-8")
        scratch.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def prune_dead_targets(folder: Path) -> list[Path]:
    """Remove target files left by processes that are gone (SIGKILLed, crashed): their name ends in
    the writer's pid. Otherwise Prometheus would keep scraping a dead port, or whatever took it."""
    removed = []
    for path in folder.glob("*-*.json"):
        pid = path.stem.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - the address to scrape, not one we bind
        host = "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class MetricsEndpoint:
    """``/metrics`` for one process, registered for the local Prometheus; ``close`` undoes both."""

    def __init__(self, metrics: Metrics, settings: Settings, *, job: str, instance: str) -> None:
        self.metrics = metrics
        self._server, self._thread = start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=metrics.registry
        )
        self.port: int = self._server.server_address[1]
        try:
            self.target = TargetFile(settings, job, instance, self.port, path="/metrics")
        except BaseException:
            self._server.shutdown()
            self._server.server_close()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def close(self) -> None:
        self.target.remove()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(metrics: Metrics, settings: Settings, *, job: str, instance: str) -> MetricsEndpoint | None:
    """Serve ``metrics`` when ``settings.metrics_enabled``; None when metrics are off."""
    if not settings.metrics_enabled:
        return None
    return MetricsEndpoint(metrics, settings, job=job, instance=instance)


@contextlib.contextmanager
def served_instruments(settings: Settings, *, job: str, instance: str) -> Iterator[Instruments]:
    """A process's ``Instruments`` (``job`` is also its service name), served at ``/metrics`` and
    registered for Prometheus while the block runs; no-ops and no endpoint when metrics are off."""
    instruments = Instruments.from_settings(settings, job)
    endpoint = serve_metrics(instruments.metrics, settings, job=job, instance=instance)
    if endpoint is not None:
        log.info("metrics_served", url=endpoint.url, job=job, instance=instance)
    try:
        yield instruments
    finally:
        if endpoint is not None:
            endpoint.close()
        instruments.metrics.shutdown()


def free_port() -> int:
    """A port nothing listens on right now (for tests and the demo that must name one up front)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
