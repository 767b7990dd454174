"""Starting and stopping our own detached server processes, and knowing which ones are ours.

A process is ours when its pid file names it and its command line still contains the marker we
started it with (the cache path): a stale pid file, or a pid reused by someone else, is never
signalled.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from notify_core.exceptions import StackError


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def our_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and still ours; cleans a stale file."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if marker in cmdline(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


_DETACHED: list[subprocess.Popen[bytes]] = []


@atexit.register
def _forget_detached() -> None:
    # A server we started outlives this process on purpose (it is stopped by pid file); reap the
    # ones already stopped and tell Popen the others are not ours to wait for, so exit is quiet.
    for process in _DETACHED:
        if process.poll() is None:
            process.returncode = 0


def spawn(
    args: list[str], log_file: Path, pid_file: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start detached (own session: a Ctrl-C in the terminal does not reach it), output to a file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    pid_file.write_text(f"{process.pid}\n")
    # Detached servers outlive this call on purpose: keep a reference so that collecting the Popen
    # while the server runs is no ResourceWarning (warnings are errors in the test suite).
    _DETACHED.append(process)
    return process


def stop_pid(pid: int, timeout_s: float = 30.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout_s``. True when it was stopped gently."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return False


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def apt_install(package: str, what: str) -> None:
    """Debian's ``package`` with apt (as root only; otherwise a ``StackError`` saying what to run)."""
    if os.geteuid() != 0:
        raise StackError(
            f"{what} is not installed: run `sudo apt-get install -y --no-install-recommends {package}`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", package]):
        done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise StackError(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
