"""The base install is the SDK: importing it needs nothing beyond the base dependencies, and a command
that needs an extra says which one to install instead of failing with an ImportError.

tests/integration/test_wheel.py proves the same on a real wheel in fresh virtualenvs; these are the
fast checks in the development environment, where every extra is installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from notify_cli import main as cli

# What a service that only publishes runs: the SDK, a client, a request validated.
SDK_SCRIPT = """
import json, sys
# structlog (a base dependency) imports rich, and with it pygments and attrs, whenever rich is
# installed (the dev extra brings it): those are structlog's optional imports, not the SDK's.
import structlog
before = set(sys.modules)  # what site loaded (.pth hooks) and structlog, not the SDK
from notify_core.settings import Settings
from producer import InvalidRequestError, NotificationClient, NotificationRequest
NotificationRequest.parse({"user_id": "u", "template_id": "t", "service": "s", "category": "c"})
NotificationClient(Settings(kafka_bootstrap="127.0.0.1:1")).close()  # logs the refused connection
print("modules:", json.dumps(sorted({name.partition(".")[0] for name in set(sys.modules) - before})))
"""


def base_closure() -> set[str]:
    """The distributions the base install brings: our requirements without an extra, recursively."""
    seen: set[str] = set()
    todo = [cli.DISTRIBUTION]
    while todo:
        name = todo.pop()
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            dist = metadata.distribution(requirement.name).metadata["Name"].lower().replace("_", "-")
            if dist not in seen:
                seen.add(dist)
                todo.append(dist)
    return seen


def test_importing_the_sdk_loads_only_base_dependencies() -> None:
    """Every third-party module the SDK path loads belongs to a base dependency (none of psycopg,
    jinja2, aiohttp, boto3, moto, flask...)."""
    out = subprocess.run(
        [sys.executable, "-c", SDK_SCRIPT], capture_output=True, text=True, check=True, timeout=60
    )
    [line] = [line for line in out.stdout.splitlines() if line.startswith("modules: ")]
    loaded: list[str] = json.loads(line.removeprefix("modules: "))
    owners = metadata.packages_distributions()
    allowed = base_closure() | {cli.DISTRIBUTION}
    foreign = {
        module: owners[module]
        for module in loaded
        if module in owners and not {d.lower().replace("_", "-") for d in owners[module]} & allowed
    }
    assert foreign == {}, f"the SDK imports modules outside the base install: {foreign}"
    assert "psycopg" not in loaded


@pytest.fixture
def without(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Distributions to pretend are not installed, as an SDK-only install would have it."""
    hidden: set[str] = set()
    real = metadata.distribution

    def distribution(name: str) -> metadata.Distribution:
        if name in hidden:
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", distribution)  # what notify_cli.main asks
    return hidden


def test_a_server_command_without_the_server_extra_names_it(
    without: set[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`notify router run` without [server] exits 1 saying what to pip install, whatever its options."""
    without.update({"psycopg", "jinja2"})
    assert cli.main(["router", "run", "--burst"]) == 1
    err = capsys.readouterr().err
    assert "`notify router` needs the server extra (psycopg, jinja2 not installed)" in err
    assert "pip install 'notify-platform[server]'" in err


def test_dev_includes_server(without: set[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A dev-only command counts what [server] needs too, since [dev] includes it."""
    without.update({"psycopg", "moto"})
    assert cli.main(["demo"]) == 1
    assert "needs the dev extra (psycopg, moto not installed): pip install 'notify-platform[dev]'" in (
        capsys.readouterr().err
    )


def test_missing_commands_are_still_listed(without: set[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`notify --help` lists every command, marking the ones an extra would bring."""
    without.add("psycopg")
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "router              (needs notify-platform[server])" in out
    assert "send                publish one notification request" in out


def test_everything_installed_means_no_stub(capsys: pytest.CaptureFixture[str]) -> None:
    """In the development install every command is the real one, and bad arguments are still refused."""
    assert cli.missing_for("server") == []
    assert cli.missing_for("dev") == []
    with pytest.raises(SystemExit) as exc:
        cli.main(["router", "run", "--no-such-option"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err
