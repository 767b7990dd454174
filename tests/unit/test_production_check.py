"""The dev unsubscribe secret stays on loopback: a pure check, and the e-mail worker refusing to start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from pydantic import SecretStr

from notify_cli.main import main
from notify_core.exceptions import ConfigError
from notify_core.settings import DEV_UNSUBSCRIBE_SECRET, Settings, is_loopback_url


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8080/unsubscribe", True),
        ("http://127.1.2.3/u", True),
        ("https://localhost/u", True),
        ("https://LOCALHOST:8443/u", True),
        ("http://[::1]:8080/u", True),
        ("https://example.com/unsubscribe", False),
        ("https://127.0.0.1.example.com/u", False),  # a public name that merely starts like loopback
        ("https://127.0.0.1@example.com/u", False),  # userinfo, not the host
        ("https://localhost.example.com/u", False),
        ("http://10.0.0.1/u", False),
        ("http://0.0.0.0/u", False),
        ("http://[::ffff:127.0.0.1]/u", False),  # strict: only what the rule names
        ("http://[::1/u", False),  # unparseable
        ("/unsubscribe", False),
        ("", False),
    ],
)
def test_loopback_urls(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_dev_secret_with_a_public_url_is_refused_naming_the_setting() -> None:
    settings = Settings(unsubscribe_base_url="https://notify.example.com/unsubscribe")
    with pytest.raises(ConfigError, match="NOTIFY_UNSUBSCRIBE_SECRET") as refused:
        settings.check_for_production()
    assert DEV_UNSUBSCRIBE_SECRET not in str(refused.value)  # names the setting, not the value


@pytest.mark.parametrize(
    "settings",
    [
        Settings(),  # the defaults: dev secret, loopback URL
        Settings(unsubscribe_base_url="http://localhost:8080/unsubscribe"),
        Settings(
            unsubscribe_base_url="https://notify.example.com/unsubscribe",
            unsubscribe_secret=SecretStr("a-real-secret-of-our-own"),
        ),
    ],
)
def test_dev_secret_on_loopback_or_own_secret_anywhere_is_fine(settings: Settings) -> None:
    settings.check_for_production()


@pytest.fixture
def unreachable_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Nothing may be opened before the check: point Kafka and PostgreSQL at closed ports.
    monkeypatch.setenv("NOTIFY_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("NOTIFY_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("NOTIFY_UNSUBSCRIBE_BASE_URL", "https://notify.example.com/unsubscribe")
    monkeypatch.delenv("NOTIFY_UNSUBSCRIBE_SECRET", raising=False)
    yield
    structlog.reset_defaults()  # main() configured structlog for the whole process


@pytest.mark.usefixtures("unreachable_stack")
def test_email_worker_refuses_to_start_with_a_clear_error_and_no_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["worker", "run", "--channel", "email", "--burst"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: NOTIFY_UNSUBSCRIBE_SECRET is the built-in development value")
    assert "NOTIFY_UNSUBSCRIBE_BASE_URL" in err
    assert "Traceback" not in err
