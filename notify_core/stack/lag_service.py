"""The stack's lag exporter: ``notify lag --serve`` running detached beside our Prometheus.

``notify stack up --with-monitoring`` starts it on ``NOTIFY_LAG_EXPORTER_PORT`` (9308), so the lag
alerts and the dashboard have their figures; it registers itself for Prometheus like any process
(``notify_core.metrics_server``) and is stopped by ``notify stack down``. Ours is the pid in
``lag-exporter.pid`` whose command line carries the marker below.
"""

from __future__ import annotations

import sys
import time

from notify_core.exceptions import StackError
from notify_core.settings import Settings
from notify_core.stack.processes import our_pid, port_open, spawn, stop_pid, tail

HOST = "127.0.0.1"
MARKER = "notify_cli lag --serve"
START_TIMEOUT_S = 30.0


def start(settings: Settings) -> list[str]:
    root = settings.monitoring_dir()
    pid_file, log = root / "lag-exporter.pid", root / "lag-exporter.log"
    port = settings.lag_exporter_port
    address = f"http://{HOST}:{port}/metrics"
    pid = our_pid(pid_file, MARKER)
    if pid is not None:
        return [f"lag exporter: already running at {address} (pid {pid})"]
    if port_open(HOST, port):
        raise StackError(f"port {HOST}:{port} is taken: stop what holds it or set NOTIFY_LAG_EXPORTER_PORT")
    process = spawn([sys.executable, "-m", "notify_cli", "lag", "--serve", str(port)], log, pid_file)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_open(HOST, port):
        if process.poll() is not None or time.monotonic() > deadline:
            pid_file.unlink(missing_ok=True)
            raise StackError(f"the lag exporter did not start. Last log lines:\n{tail(log)}")
        time.sleep(0.1)
    return [f"lag exporter: started at {address} (pid {process.pid})"]


def stop(settings: Settings) -> list[str]:
    pid_file = settings.monitoring_dir() / "lag-exporter.pid"
    pid = our_pid(pid_file, MARKER)
    if pid is None:
        return []
    stop_pid(pid, timeout_s=15)
    pid_file.unlink(missing_ok=True)
    return [f"lag exporter: stopped (pid {pid})"]
