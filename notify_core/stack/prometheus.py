"""A Prometheus server of our own, from Debian's package, on 127.0.0.1: the SRE view of the stack.

Installs ``prometheus`` with apt when ``/usr/bin/promtool`` is missing (the same package gives the
server and ``promtool``, which the alert-rule tests run). The server scrapes every metrics endpoint
that registered itself in ``metrics_server.targets_dir`` (``<monitoring_dir>/targets``), loads
``monitoring/alerts.yml``, keeps its data in ``<monitoring_dir>/prometheus-data`` and runs detached
like the broker: ours is the pid in ``prometheus.pid`` whose command line names our config file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from notify_core.exceptions import StackError
from notify_core.metrics_server import targets_dir
from notify_core.settings import Settings
from notify_core.stack.processes import apt_install, our_pid, port_open, spawn, stop_pid, tail

HOST = "127.0.0.1"
PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
ALERTS = Path(__file__).resolve().parents[2] / "monitoring" / "alerts.yml"
# Local history only: a developer's or CI machine, not the production TSDB.
RETENTION = "7d"


@dataclass(frozen=True)
class PrometheusPaths:
    root: Path
    config: Path
    data: Path
    targets: Path
    log: Path
    pid: Path

    @classmethod
    def of(cls, settings: Settings) -> PrometheusPaths:
        root = settings.monitoring_dir()
        return cls(
            root=root,
            config=root / "prometheus.yml",
            data=root / "prometheus-data",
            # Where every process registers its endpoint (metrics_targets_dir, or root / "targets").
            targets=targets_dir(settings),
            log=root / "prometheus.log",
            pid=root / "prometheus.pid",
        )


def url(settings: Settings) -> str:
    return f"http://{HOST}:{settings.prometheus_port}"


def install() -> str | None:
    """Debian's ``prometheus`` package when promtool is missing; None when it is already there."""
    if PROMTOOL.exists():
        return None
    apt_install("prometheus", "Prometheus")
    # The package enables a system service on :9090. Under systemd it would hold our port and scrape
    # nothing of ours, so it is switched off; without systemd (containers) it never started.
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(["systemctl", "disable", "--now", "prometheus"], capture_output=True, check=False)
    return f"prometheus: installed Debian's prometheus package ({version()})"


def version() -> str:
    done = subprocess.run([str(PROMETHEUS), "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()
    return first[0] if first else "unknown version"


def _duration(seconds: float) -> str:
    # Prometheus durations take no fractions ("1.5s" is refused): whole seconds, else milliseconds.
    millis = max(1, round(seconds * 1000))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def config(settings: Settings, *, interval_s: float) -> dict[str, Any]:
    """prometheus.yml as data (written as JSON, which is YAML): file_sd targets, our alert rules."""
    paths = PrometheusPaths.of(settings)
    every = _duration(interval_s)
    return {
        "global": {
            "scrape_interval": every,
            "evaluation_interval": every,
            # A scrape may not outlast its interval; 10 s is Prometheus's own ceiling by default.
            "scrape_timeout": _duration(min(interval_s, 10.0)),
        },
        "rule_files": [str(ALERTS)] if ALERTS.exists() else [],
        "scrape_configs": [
            {
                # Each target file sets its own `job` (notify-router, notify-worker-ios, ...).
                "job_name": "notify",
                # Files are re-read every second (Prometheus applies target changes every 5 s), so a
                # process is scraped a few seconds after it registers and dropped as fast.
                "file_sd_configs": [{"files": [str(paths.targets / "*.json")], "refresh_interval": "1s"}],
            },
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": [f"{HOST}:{settings.prometheus_port}"]}],
            },
        ],
    }


def ready(settings: Settings, timeout_s: float = 2.0) -> bool:
    try:
        # A loopback URL we build ourselves, never one from input.
        with urllib.request.urlopen(f"{url(settings)}/-/ready", timeout=timeout_s) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _reload(settings: Settings) -> None:
    # Our loopback URL, never one from input.
    request = urllib.request.Request(f"{url(settings)}/-/reload", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        answer.read()


def start(settings: Settings, *, interval_s: float = 5.0) -> list[str]:
    """Start ours (or reload it with a fresh config when it already runs); refuse a foreign one."""
    lines = [line for line in [install()] if line]
    paths = PrometheusPaths.of(settings)
    for folder in (paths.root, paths.targets, paths.data):
        folder.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(json.dumps(config(settings, interval_s=interval_s), indent=2) + "\n")
    if not ALERTS.exists():
        lines.append(f"prometheus: no alert rules at {ALERTS} (not a checkout); scraping only")
    pid = our_pid(paths.pid, str(paths.config))
    if pid is not None and ready(settings):
        _reload(settings)
        return [*lines, f"prometheus: already running at {url(settings)} (pid {pid}); config reloaded"]
    if pid is None and port_open(HOST, settings.prometheus_port):
        raise StackError(
            f"port {HOST}:{settings.prometheus_port} is taken by something that is not our Prometheus "
            "(it would not scrape our targets): stop it or set NOTIFY_PROMETHEUS_PORT"
        )
    started = time.monotonic()
    process = spawn(
        [
            str(PROMETHEUS),
            f"--config.file={paths.config}",
            f"--storage.tsdb.path={paths.data}",
            f"--storage.tsdb.retention.time={RETENTION}",
            f"--web.listen-address={HOST}:{settings.prometheus_port}",
            # POST /-/reload: a second `stack up --with-monitoring` applies a new config in place.
            "--web.enable-lifecycle",
        ],
        paths.log,
        paths.pid,
    )
    deadline = started + settings.stack_start_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            paths.pid.unlink(missing_ok=True)
            raise StackError(
                f"Prometheus exited with {process.returncode} while starting. "
                f"Last log lines:\n{tail(paths.log)}"
            )
        if ready(settings, timeout_s=1.0):
            took = time.monotonic() - started
            return [*lines, f"prometheus: started at {url(settings)} (pid {process.pid}) in {took:.1f}s"]
        time.sleep(0.2)
    stop_pid(process.pid, timeout_s=10)
    paths.pid.unlink(missing_ok=True)
    raise StackError(
        f"Prometheus was not ready at {url(settings)} within {settings.stack_start_timeout_s:g}s. "
        f"Last log lines:\n{tail(paths.log)}"
    )


def stop(settings: Settings) -> list[str]:
    paths = PrometheusPaths.of(settings)
    pid = our_pid(paths.pid, str(paths.config))
    if pid is None:
        return ["prometheus: not started by us, nothing to stop"]
    gentle = stop_pid(pid, timeout_s=30)
    paths.pid.unlink(missing_ok=True)
    return [f"prometheus: stopped (pid {pid}){'' if gentle else ' with SIGKILL after 30s'}"]


def status(settings: Settings) -> str:
    paths = PrometheusPaths.of(settings)
    pid = our_pid(paths.pid, str(paths.config))
    if pid is not None:
        state = "ready" if ready(settings) else "NOT ready"
        targets = len(list(paths.targets.glob("*.json")))
        return f"prometheus ours, pid {pid}, {url(settings)}, {state}, {targets} registered targets"
    if port_open(HOST, settings.prometheus_port):
        return f"prometheus not ours, {HOST}:{settings.prometheus_port} is taken"
    return f"prometheus stopped ({url(settings)}; `notify stack up --with-monitoring` starts it)"
