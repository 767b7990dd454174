"""The dev unsubscribe and tracking secrets stay on loopback: a pure check, and the e-mail worker refusing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from pydantic import SecretStr

from notify_cli.main import main
from notify_core.exceptions import ConfigError
from notify_core.settings import DEV_TRACKING_SECRET, DEV_UNSUBSCRIBE_SECRET, Settings, is_loopback_url


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


PUBLIC = "https://notify.example.com"
OWN = SecretStr("a-real-secret-of-our-own")


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({}, "NOTIFY_UNSUBSCRIBE_SECRET"),
        ({"unsubscribe_secret": OWN}, "NOTIFY_TRACKING_SECRET"),
        ({"tracking_secret": OWN}, "NOTIFY_UNSUBSCRIBE_SECRET"),
        (
            {
                "unsubscribe_secret": OWN,
                "tracking_secret": OWN,
                "unsubscribe_previous_secrets": [SecretStr(DEV_UNSUBSCRIBE_SECRET)],
            },
            "NOTIFY_UNSUBSCRIBE_PREVIOUS_SECRETS",
        ),
        (
            {
                "unsubscribe_secret": OWN,
                "tracking_secret": OWN,
                "tracking_previous_secrets": [SecretStr("old-own"), SecretStr(DEV_TRACKING_SECRET)],
            },
            "NOTIFY_TRACKING_PREVIOUS_SECRETS",
        ),
    ],
)
def test_a_dev_secret_with_a_public_url_is_refused_naming_the_setting(
    overrides: dict[str, Any], setting: str
) -> None:
    """Either dev secret, current or still accepted as previous, is refused off loopback."""
    settings = Settings(public_base_url=PUBLIC, **overrides)
    with pytest.raises(ConfigError, match=f"^{setting} ") as refused:
        settings.check_for_production()
    assert "NOTIFY_PUBLIC_BASE_URL" in str(refused.value)
    for dev in (DEV_UNSUBSCRIBE_SECRET, DEV_TRACKING_SECRET):
        assert dev not in str(refused.value)  # names the setting, not the value


@pytest.mark.parametrize(
    "settings",
    [
        Settings(),  # the defaults: dev secrets, loopback URL
        Settings(public_base_url="http://localhost:8080"),
        Settings(
            public_base_url=PUBLIC,
            unsubscribe_secret=OWN,
            tracking_secret=OWN,
            tracking_previous_secrets=[SecretStr("an-older-one-of-our-own")],
        ),
    ],
)
def test_dev_secrets_on_loopback_or_own_secrets_anywhere_are_fine(settings: Settings) -> None:
    settings.check_for_production()


@pytest.fixture
def unreachable_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Nothing may be opened before the check: point Kafka and PostgreSQL at closed ports.
    monkeypatch.setenv("NOTIFY_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("NOTIFY_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("NOTIFY_PUBLIC_BASE_URL", PUBLIC)
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
    assert err.startswith("error: NOTIFY_UNSUBSCRIBE_SECRET holds the built-in development value")
    assert "NOTIFY_PUBLIC_BASE_URL" in err
    assert "Traceback" not in err


def test_dev_secrets_are_refused_when_the_api_listens_beyond_loopback() -> None:
    """Links on loopback, but the API listening on every interface (0.0.0.0 or ::): the development
    secrets would let anyone who can reach it forge unsubscribe links, so they are refused."""
    for host in ("0.0.0.0", "::", "10.0.0.5"):  # noqa: S104 - the very values being refused
        with pytest.raises(ConfigError, match="NOTIFY_API_HOST"):
            Settings(api_host=host).check_for_production()
    Settings(api_host="127.0.0.1").check_for_production()
    Settings(api_host="::1").check_for_production()
