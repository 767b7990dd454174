"""A PostgreSQL cluster of our own in the cache folder, from Debian's package, on 127.0.0.1.

Installs ``postgresql`` with apt when no server binaries are found. PostgreSQL refuses to run as
root, so when we are root its commands run as the ``postgres`` user (``runuser``) and the cluster's
folder is handed to it. Authentication is ``trust`` on loopback only: a developer/CI database.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path

import psycopg

from notify_core.exceptions import StackError
from notify_core.settings import Settings
from notify_core.stack.processes import apt_install, port_open, tail

HOST = "127.0.0.1"
ROLE = "notify"
DATABASE = "notify"


def _root(settings: Settings) -> Path:
    return settings.cache_dir / "postgres"


def find_bindir() -> Path | None:
    """The newest installed server's bin folder."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]), reverse=True
    )
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("postgres")
    return Path(found).parent if found else None


def install() -> str:
    apt_install("postgresql", "PostgreSQL server")
    return "postgres: installed Debian's postgresql package"


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _run(args: list[str], what: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(_as_owner(args), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StackError(f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


def answering(settings: Settings) -> bool:
    try:
        with psycopg.connect(settings.database_url.get_secret_value(), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def running(settings: Settings, bindir: Path) -> bool:
    data = _root(settings) / "data"
    if not (data / "PG_VERSION").exists():
        return False
    done = subprocess.run(
        _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "status"]), capture_output=True, check=False
    )
    return done.returncode == 0


def start(settings: Settings) -> list[str]:
    lines: list[str] = []
    address = f"{HOST}:{settings.postgres_port}"
    bindir = find_bindir()
    if bindir is None:
        lines.append(install())
        bindir = find_bindir()
        if bindir is None:
            raise StackError("postgresql was installed but no server binaries were found")
    if running(settings, bindir):
        return [f"postgres: already running on {address}"]
    if port_open(HOST, settings.postgres_port):
        if answering(settings):
            return [f"postgres: something else already answers on {address}; using it, not starting ours"]
        raise StackError(f"port {address} is taken by something that is not our PostgreSQL")
    root = _root(settings)
    data, run_dir, log = root / "data", root / "run", root / "postgres.log"
    root.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(run_dir, "postgres")
    if not (data / "PG_VERSION").exists():
        _run(
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", ROLE, "-E", "UTF8", "--locale=C"],
            "initdb",
        )
        lines.append(f"postgres: created a cluster in {data}")
    started = time.monotonic()
    options = f"-p {settings.postgres_port} -k {run_dir} -c listen_addresses={HOST}"
    try:
        _run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                str(int(settings.stack_start_timeout_s)),
                "start",
            ],
            "pg_ctl start",
        )
    except StackError as exc:
        raise StackError(f"{exc}\nLast log lines:\n{tail(log)}") from exc
    _ensure_database(settings)
    lines.append(f"postgres: started on {address} in {time.monotonic() - started:.1f}s")
    return lines


def _ensure_database(settings: Settings) -> None:
    admin_url = f"host={HOST} port={settings.postgres_port} user={ROLE} dbname=postgres connect_timeout=10"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchone() is None:
            conn.execute(f'create database "{DATABASE}" owner "{ROLE}"')


def stop(settings: Settings) -> list[str]:
    bindir = find_bindir()
    if bindir is None or not running(settings, bindir):
        return ["postgres: not started by us, nothing to stop"]
    _run(
        [str(bindir / "pg_ctl"), "-D", str(_root(settings) / "data"), "-m", "fast", "-w", "stop"],
        "pg_ctl stop",
    )
    return ["postgres: stopped"]


def status(settings: Settings) -> str:
    bindir = find_bindir()
    address = f"{HOST}:{settings.postgres_port}"
    if bindir is not None and running(settings, bindir):
        state = "answering" if answering(settings) else "NOT answering"
        return f"postgres  ours, {address}, {state}"
    if answering(settings):
        return f"postgres  not ours, {address}, answering"
    return f"postgres  stopped ({address})"
