"""The distribution installs like a library: a wheel built from this tree, installed into fresh
virtualenvs outside it, works with no source tree on ``sys.path``.

The base install is the SDK alone: it publishes and decodes with the schemas the wheel carries, and
brings no server or sandbox library. ``[server]`` adds the processes and the database commands, with
the migrations the wheel carries. Wheels come from a wheelhouse in the cache folder, filled from the
package index the first time (and whenever constraints.txt asks for something it lacks), so a warm run
installs offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from notify_core.codec import SCHEMA_DIR
from notify_core.db.connect import connect, schema_url
from notify_core.db.migrate import MIGRATIONS
from notify_core.settings import Settings

# One worker for the module under pytest-xdist: its wheel and virtualenvs are module fixtures,
# built once there rather than once on each worker that would get one of its tests.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("wheel")]

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints.txt"
# Neither the SDK nor its base dependencies may bring these.
NOT_IN_THE_SDK = ("moto", "flask", "aiosmtpd", "h2", "psycopg", "jinja2")
# What is not part of a build: virtualenvs, caches, earlier builds.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".cache", "__pycache__", "*.egg-info", "build", "dist", ".mypy_cache",
    ".ruff_cache", ".pytest_cache", ".hypothesis", "bench-results",
)  # fmt: skip

# Run inside the SDK virtualenv: send one request, read it back, decode it with the installed codec.
SEND_AND_DECODE = """
import importlib.util, json, sys
import notify_core.codec, producer
from notify_core.codec import REQUEST, default_codec
from notify_core.records import read_records
from notify_core.settings import Settings
from notify_core.topics import topic_names
from producer import NotificationClient, NotificationRequest

settings = Settings()
with NotificationClient(settings) as client:
    sent = client.send({"user_id": "wheel-user", "template_id": "welcome", "service": "signup",
                        "category": "account", "params": {"name": "Ada"}})
[record] = read_records(settings, topic_names(settings).requests, max_records=1, timeout_s=30)
decoded = NotificationRequest.from_avro(default_codec().decode(record.value, REQUEST))
print("result:", json.dumps({
    "sent": sent.notification_id,
    "decoded": str(decoded.notification_id),
    "user_id": decoded.user_id,
    "params": decoded.params,
    "key": record.key.decode(),
    "producer": producer.__file__,
    "schemas": str(notify_core.codec.SCHEMA_DIR),
    "sys_path": sys.path,
}))
"""
FIND_SPECS = f"""
import importlib.util, json
names = {NOT_IN_THE_SDK!r}
print("result:", json.dumps({{name: importlib.util.find_spec(name) is not None for name in names}}))
"""


def _tail(done: subprocess.CompletedProcess[str], chars: int = 3000) -> str:
    return f"--- stderr (tail) ---\n{done.stderr[-chars:]}\n--- stdout (tail) ---\n{done.stdout[-chars:]}"


def run(args: Sequence[str | Path], *, what: str, timeout: float = 300, **kwargs: Any) -> str:
    """Run a command and return its output; a failure fails the test with what it printed."""
    done: subprocess.CompletedProcess[str] = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs
    )
    if done.returncode != 0:
        pytest.fail(f"{what} failed (exit {done.returncode})\n{_tail(done)}", pytrace=False)
    return done.stdout


def pip(python: Path | str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """This environment's pip, acting on ``python``'s environment: the fresh virtualenvs are made
    without a pip of their own (``--python`` points this one at them), saving an ensurepip run each."""
    target = [] if Path(python) == Path(sys.executable) else ["--python", str(python)]
    return subprocess.run(
        [sys.executable, "-m", "pip", *target, "--disable-pip-version-check", "--no-input", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


class Wheelhouse:
    """A folder of wheels, filled from the index only with what an offline pip run lacked."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def pip(self, python: Path, *args: str | Path, what: str, fill: Sequence[str | Path]) -> None:
        """``pip <args>`` from the wheelhouse alone; if that fails, fill it with ``fill`` and retry."""
        offline = ("--no-index", "--find-links", self.folder)
        done = pip(python, *args, *offline)
        if done.returncode != 0:
            self._fill(fill)
            done = pip(python, *args, *offline)
        if done.returncode != 0:
            pytest.fail(f"{what} failed (exit {done.returncode})\n{_tail(done)}", pytrace=False)

    def _fill(self, requirements: Sequence[str | Path]) -> None:
        # Built aside and moved in file by file, so a concurrent run never sees half a wheel.
        incoming = self.folder / f".incoming-{uuid.uuid4().hex}"
        try:
            done = pip(sys.executable, "wheel", "-c", CONSTRAINTS, "-w", incoming, *requirements)
            if done.returncode != 0:
                pytest.fail(
                    f"filling the wheelhouse from the index failed (exit {done.returncode})\n{_tail(done)}",
                    pytrace=False,
                )
            for built in incoming.iterdir():
                if not built.name.startswith("notify_platform-"):  # ours is built fresh every run
                    os.replace(built, self.folder / built.name)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)


@pytest.fixture(scope="module")
def wheelhouse(base_settings: Settings) -> Wheelhouse:
    return Wheelhouse(base_settings.cache_dir / "wheelhouse")


@pytest.fixture(scope="module")
def wheel(wheelhouse: Wheelhouse, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built (with the build backend pyproject.toml pins) from a copy of this
    tree, so the build leaves nothing in the checkout."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    backend = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    wheelhouse.pip(
        Path(sys.executable),
        *("wheel", "--no-deps", "-w", work / "dist", source),
        what="building the wheel",
        fill=backend,
    )
    [built] = (work / "dist").glob("notify_platform-*.whl")
    return built


def fresh_venv(folder: Path) -> Path:
    """A new virtualenv (outside the source tree), with no pip in it (``pip`` installs into it from
    outside); returns its python."""
    run([sys.executable, "-m", "venv", "--without-pip", folder], what=f"python -m venv {folder}")
    return folder / "bin" / "python"


# pip byte-compiles every module it installs, two thirds of the [server] install's time (botocore,
# pyarrow, matplotlib, numpy); the child processes compile what they import, as any install does.
NO_COMPILE = "--no-compile"


@pytest.fixture(scope="module")
def sdk_venv(wheel: Path, wheelhouse: Wheelhouse, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and its base dependencies only."""
    python = fresh_venv(tmp_path_factory.mktemp("sdk") / "venv")
    wheelhouse.pip(
        python,
        *("install", NO_COMPILE, "-c", CONSTRAINTS, wheel),
        what="pip install <wheel> (base)",
        fill=[wheel],
    )
    return python


@pytest.fixture(scope="module")
def server_venv(wheel: Path, wheelhouse: Wheelhouse, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and its [server] extra."""
    python = fresh_venv(tmp_path_factory.mktemp("server") / "venv")
    wheelhouse.pip(
        python,
        *("install", NO_COMPILE, "-c", CONSTRAINTS, f"{wheel}[server]"),
        what="pip install <wheel>[server]",
        fill=[f"{wheel}[server]"],
    )
    return python


def child_env(**notify: str) -> dict[str, str]:
    """This process's environment for a child in another virtualenv: nothing of ours on its path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return env | notify


def result_of(output: str) -> Any:
    [line] = [line for line in output.splitlines() if line.startswith("result: ")]
    return json.loads(line.removeprefix("result: "))


def test_the_wheel_carries_the_schemas_and_the_migrations(wheel: Path) -> None:
    """Every schema file and every migration of the source tree is inside the wheel, as package data."""
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"schemas/{p.name}" for p in SCHEMA_DIR.glob("*.avsc")} <= names
    assert {f"notify_core/db/migrations/{p.name}" for p in MIGRATIONS.glob("*.sql")} <= names
    assert "schemas/__init__.py" in names


def test_the_installed_sdk_sends_and_decodes_a_request(
    sdk_venv: Path, settings: Settings, tmp_path: Path
) -> None:
    """With only the base install, NotificationClient publishes to the broker and the installed codec
    decodes the record back, using the schemas inside site-packages, not this tree's."""
    env = child_env(
        NOTIFY_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, NOTIFY_TOPIC_PREFIX=settings.topic_prefix
    )
    out = run([sdk_venv, "-c", SEND_AND_DECODE], what="the SDK script", env=env, cwd=tmp_path, timeout=120)
    got = result_of(out)
    assert got["decoded"] == got["sent"]
    assert (got["user_id"], got["key"], got["params"]) == ("wheel-user", "wheel-user", {"name": "Ada"})
    site = sdk_venv.parent.parent
    assert Path(got["producer"]).is_relative_to(site), got["producer"]
    assert Path(got["schemas"]).is_relative_to(site), got["schemas"]
    assert not [p for p in got["sys_path"] if p and Path(p).resolve().is_relative_to(ROOT)]


def test_the_base_install_brings_no_server_or_sandbox_library(sdk_venv: Path, tmp_path: Path) -> None:
    """None of moto, flask, aiosmtpd, h2, psycopg, jinja2 is importable after installing the SDK."""
    out = run([sdk_venv, "-c", FIND_SPECS], what="find_spec", env=child_env(), cwd=tmp_path, timeout=60)
    assert result_of(out) == dict.fromkeys(NOT_IN_THE_SDK, False)


@pytest.mark.parametrize("command", [["router", "run", "--burst"], ["db", "migrate"]])
def test_a_server_command_on_the_base_install_names_the_extra(
    sdk_venv: Path, tmp_path: Path, command: list[str]
) -> None:
    """`notify router run` (or `db migrate`) without [server] exits 1 saying what to pip install."""
    done = subprocess.run(
        [sdk_venv.parent / "notify", *command],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 1, _tail(done)
    assert f"`notify {command[0]}` needs the server extra" in done.stderr
    assert "pip install 'notify-platform[server]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def empty_schema(stack_settings: Settings) -> Iterator[str]:
    """A fresh PostgreSQL schema with nothing in it, dropped after."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with connect(stack_settings) as conn:
        conn.execute(f'create schema "{schema}"')
        conn.commit()
    yield schema
    with connect(stack_settings) as conn:
        conn.execute(f'drop schema "{schema}" cascade')
        conn.commit()


def test_the_server_install_migrates_an_empty_schema(
    server_venv: Path, stack_settings: Settings, empty_schema: str, tmp_path: Path
) -> None:
    """`notify db migrate` from the [server] install applies every migration the wheel carries."""
    env = child_env(NOTIFY_DATABASE_URL=schema_url(stack_settings, empty_schema))
    notify = server_venv.parent / "notify"
    out = run([notify, "db", "migrate"], what="notify db migrate", env=env, cwd=tmp_path, timeout=120)
    expected = sorted(p.stem for p in MIGRATIONS.glob("*.sql"))
    assert out.split() == [word for name in expected for word in ("applied", name)]
    with connect(stack_settings, schema=empty_schema) as conn:
        rows = conn.execute("select version, name from schema_migrations order by version").fetchall()
        tables = {
            name
            for (name,) in conn.execute(
                "select table_name from information_schema.tables where table_schema = %s", (empty_schema,)
            )
        }
    assert [f"{version:04d}_{name}" for version, name in rows] == expected
    assert {"users", "templates", "router_seen", "delivery_log"} <= tables
    again = run([notify, "db", "migrate"], what="notify db migrate (again)", env=env, cwd=tmp_path)
    assert again.strip() == "nothing to apply: the schema is up to date"
