"""The provider adapter for each channel, from settings: sandbox and real service are one setting apart."""

from __future__ import annotations

from consumers.delivery.worker import Adapter
from notify_core.exceptions import ConfigError
from notify_core.settings import Settings
from notify_core.topics import Channel


def build_adapter(channel: Channel, settings: Settings) -> tuple[Adapter, str]:
    """(adapter, provider name for events); a missing or broken credential is a ``ConfigError``."""
    try:
        return _build(channel, settings)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"cannot set up the {channel.value} provider: {exc}") from exc


def _build(channel: Channel, settings: Settings) -> tuple[Adapter, str]:
    # Imports lazily: a worker loads only its own provider's client.
    if channel is Channel.IOS:
        from consumers.delivery.apns import ApnsAdapter

        return ApnsAdapter.from_settings(settings), "apns"
    if channel is Channel.ANDROID:
        from consumers.delivery.fcm import FcmAdapter

        return FcmAdapter.from_settings(settings), "fcm"
    if channel is Channel.SMS:
        from consumers.delivery.sms import SmsAdapter

        return SmsAdapter.from_settings(settings), "sns"
    from consumers.delivery.email import EmailAdapter

    return EmailAdapter.from_settings(settings), "smtp"
