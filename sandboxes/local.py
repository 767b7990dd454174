"""Each channel's sandbox started on 127.0.0.1 with an adapter pointed at it: for the demo and benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from consumers.delivery.worker import Adapter
from notify_core.settings import Settings
from notify_core.topics import Channel
from sandboxes.faults import FaultPlan, Recorder

SANDBOX_SECRET = "testing"  # noqa: S105 - moto accepts any key, unsubscribe links go nowhere: no credential


@dataclass(frozen=True)
class LocalProvider:
    name: str  # the provider name events carry
    make_adapter: Callable[[], Adapter]
    faults: FaultPlan
    recorder: Recorder


@contextmanager
def local_provider(
    channel: Channel, workdir: Path, settings: Settings | None = None
) -> Iterator[LocalProvider]:
    """Start ``channel``'s sandbox on 127.0.0.1; stop it on exit.

    With ``settings``, the e-mail adapter signs its unsubscribe links as a real worker would (its
    secrets, under its ``public_base_url``: an API serving those settings accepts them); without,
    under a throwaway secret at example.com.
    """
    if channel is Channel.IOS:
        from consumers.delivery.apns import ApnsAdapter
        from sandboxes.apns import ApnsSandbox
        from sandboxes.tls import generate_es256_key

        key = generate_es256_key()
        with ApnsSandbox.run_in_thread(
            public_key_pem=key.public_pem, key_id="KEYID12345", team_id="TEAM123456", cert_dir=workdir
        ) as box:

            def apns() -> Adapter:
                return ApnsAdapter(
                    endpoint=f"https://127.0.0.1:{box.port}",
                    key_pem=key.private_pem,
                    key_id="KEYID12345",
                    team_id="TEAM123456",
                    topic="com.example.notify",
                    ca_file=box.ca_path,
                )

            yield LocalProvider("apns", apns, box.sandbox.faults, box.sandbox.recorder)
    elif channel is Channel.SMS:
        from consumers.delivery.sms import SmsAdapter
        from sandboxes.sns import SnsSandbox

        with SnsSandbox.run_in_thread(port=0) as sns:

            def sms() -> Adapter:
                return SmsAdapter(
                    endpoint_url=sns.endpoint,
                    region="us-east-1",
                    access_key_id="testing",
                    secret_access_key=SANDBOX_SECRET,
                    sender_id="NOTIFY",
                    max_workers=32,
                )

            yield LocalProvider("sns", sms, sns.faults, sns.recorder)
    elif channel is Channel.ANDROID:
        from consumers.delivery.fcm import AccessToken, FcmAdapter
        from sandboxes.fcm import FcmSandbox

        with FcmSandbox.run_in_thread() as fcm:
            account = fcm.create_service_account(workdir)

            def android() -> Adapter:
                token = AccessToken.from_file(account.path)
                return FcmAdapter(endpoint=fcm.endpoint, project_id="notify-sandbox", token=token)

            yield LocalProvider("fcm", android, fcm.faults, fcm.recorder)
    else:
        from consumers.delivery.email import EmailAdapter
        from notify_core.tracking import TrackingSigner
        from sandboxes.smtp import SmtpSandbox

        if settings is None:
            base_url = "https://example.com"
            signer = TrackingSigner(tracking_secrets=[SANDBOX_SECRET], unsubscribe_secrets=[SANDBOX_SECRET])
        else:
            base_url, signer = settings.public_base_url, TrackingSigner.from_settings(settings)
        with SmtpSandbox.run_in_thread(cert_dir=workdir, require_starttls=True) as smtp:

            def email() -> Adapter:
                return EmailAdapter(
                    host="127.0.0.1",
                    port=smtp.port,
                    sender="Notify <no-reply@example.com>",
                    public_base_url=base_url,
                    signer=signer,
                    start_tls=True,
                    ca_file=smtp.ca_path,
                    pool_size=8,
                )

            yield LocalProvider("smtp", email, smtp.faults, smtp.recorder)
