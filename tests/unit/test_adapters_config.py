from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from consumers.delivery.adapters import build_adapter
from notify_core.exceptions import ConfigError
from notify_core.settings import Settings
from notify_core.topics import Channel


@pytest.mark.parametrize(
    ("channel", "update", "message"),
    [
        (Channel.IOS, {"apns_key": None}, "NOTIFY_APNS_KEY"),
        (Channel.IOS, {"apns_key": SecretStr("not a key")}, "PEM"),
        (Channel.ANDROID, {"fcm_credentials_file": None}, "NOTIFY_FCM_CREDENTIALS_FILE"),
        (Channel.ANDROID, {"fcm_credentials_file": Path("/nonexistent/sa.json")}, "No such file"),
    ],
)
def test_a_missing_or_broken_credential_is_a_config_error(
    channel: Channel, update: dict[str, object], message: str
) -> None:
    settings = Settings().model_copy(update=update)
    with pytest.raises(ConfigError, match=message):
        build_adapter(channel, settings)
