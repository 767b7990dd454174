"""The whole pipeline as separate processes, for tests that stop servers or processes under it.

``sandboxes`` starts all four providers' sandboxes on 127.0.0.1 (in this process's threads) and
gives the environment a router or worker subprocess needs to reach them; ``Process`` runs
``notify router run`` or ``notify worker run`` in a subprocess with its own log file; ``seed``
creates users with one target per channel and the templates they are sent.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from notify_core.kafka_clients import make_admin
from notify_core.settings import Settings
from notify_core.topics import Channel
from notify_core.userdata.models import Template
from notify_core.userdata.repository import UserDataRepository
from sandboxes.apns import ApnsSandbox
from sandboxes.faults import FaultPlan, Recorder
from sandboxes.fcm import FcmSandbox
from sandboxes.smtp import SmtpSandbox
from sandboxes.sns import SnsSandbox
from sandboxes.tls import generate_es256_key

KEY_ID, TEAM_ID = "KEYID12345", "TEAM123456"


@dataclass(frozen=True)
class Sandboxes:
    env: dict[str, str]  # NOTIFY_* settings pointing every provider at its sandbox
    recorders: dict[Channel, Recorder]
    faults: dict[Channel, FaultPlan] = field(default_factory=dict)  # each sandbox's injected errors

    def delivered(self) -> Counter[str]:
        """Accepted sends per target, every channel together."""
        return Counter(r.target for rec in self.recorders.values() for r in rec.delivered())


@contextmanager
def sandboxes(workdir: Path) -> Iterator[Sandboxes]:
    key = generate_es256_key()
    with ExitStack() as stack:
        (workdir / "apns").mkdir(parents=True, exist_ok=True)
        (workdir / "smtp").mkdir(parents=True, exist_ok=True)
        apns = stack.enter_context(
            ApnsSandbox.run_in_thread(
                public_key_pem=key.public_pem, key_id=KEY_ID, team_id=TEAM_ID, cert_dir=workdir / "apns"
            )
        )
        fcm = stack.enter_context(FcmSandbox.run_in_thread())
        account = fcm.create_service_account(workdir)
        sns = stack.enter_context(SnsSandbox.run_in_thread(port=0))
        smtp = stack.enter_context(
            SmtpSandbox.run_in_thread(cert_dir=workdir / "smtp", require_starttls=True)
        )
        env = {
            "NOTIFY_APNS_ENDPOINT": f"https://127.0.0.1:{apns.port}",
            "NOTIFY_APNS_CA_FILE": str(apns.ca_path),
            "NOTIFY_APNS_KEY": key.private_pem,
            "NOTIFY_APNS_KEY_ID": KEY_ID,
            "NOTIFY_APNS_TEAM_ID": TEAM_ID,
            "NOTIFY_FCM_ENDPOINT": fcm.endpoint,
            "NOTIFY_FCM_CREDENTIALS_FILE": str(account.path),
            "NOTIFY_SNS_ENDPOINT": sns.endpoint,
            "NOTIFY_SMS_MAX_PER_SECOND": "200",
            "NOTIFY_SMTP_PORT": str(smtp.port),
            "NOTIFY_SMTP_START_TLS": "true",
            "NOTIFY_SMTP_CA_FILE": str(smtp.ca_path),
        }
        recorders = {
            Channel.IOS: apns.sandbox.recorder,
            Channel.ANDROID: fcm.recorder,
            Channel.SMS: sns.recorder,
            Channel.EMAIL: smtp.recorder,
        }
        faults = {
            Channel.IOS: apns.sandbox.faults,
            Channel.ANDROID: fcm.faults,
            Channel.SMS: sns.faults,
            Channel.EMAIL: smtp.faults,
        }
        yield Sandboxes(env, recorders, faults)


class Process:
    """One ``notify`` subprocess (router or worker) with its log in ``log``."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "notify_cli", *args],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, timeout_s: float = 60) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
            return -signal.SIGKILL


def wait_for_members(settings: Settings, group: str, count: int, timeout_s: float = 90) -> None:
    """Until ``group`` is stable with ``count`` members that all hold partitions (no sleeps)."""
    admin = make_admin(settings)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = admin.describe_consumer_groups([group])[group].result()
        members = list(described.members)
        state = str(described.state).rsplit(".", 1)[-1]
        if (
            state == "STABLE"
            and len(members) == count
            and all(m.assignment is not None and m.assignment.topic_partitions for m in members)
        ):
            return
        time.sleep(0.5)
    raise AssertionError(f"group {group} did not settle with {count} members in {timeout_s:g}s")


def router(env: dict[str, str], log: Path) -> Process:
    return Process(["router", "run"], env, log)


def worker(channel: Channel, env: dict[str, str], log: Path) -> Process:
    return Process(["worker", "run", "--channel", channel.value], env, log)


# Every user seeded in this process, with its targets: numbers are handed out in order, so no two
# users share one (a valid US number range: +1 202 200 0000 onwards).
_SEEDED: dict[str, dict[Channel, str]] = {}
_NUMBERS = itertools.count()


def targets(user_id: str) -> dict[Channel, str]:
    """The one device, number or address ``seed`` gave the user, per channel."""
    return _SEEDED[user_id]


def _new_targets(user_id: str) -> dict[Channel, str]:
    n = next(_NUMBERS)
    return {
        Channel.IOS: hashlib.sha256(user_id.encode()).hexdigest(),  # 64 hex characters, like APNs
        Channel.ANDROID: f"{user_id}-android",
        Channel.SMS: f"+1202{200 + n // 10_000:03d}{n % 10_000:04d}",
        Channel.EMAIL: f"{user_id}@example.com",
    }


def seed(repo: UserDataRepository, users: list[str], template_id: str = "hello") -> None:
    for channel in Channel:
        repo.put_template(
            Template(
                template_id,
                channel,
                "en",
                1,
                title="Hello {{ name }}",
                body="Hi {{ name }}",
                sms_text="Hi {{ name }}",
                email_subject="Hello {{ name }}",
                email_html="<p>Hi {{ name }}</p>",
                email_text="Hi {{ name }}",
            )
        )
    for user_id in users:
        mine = _SEEDED.setdefault(user_id, _new_targets(user_id))
        repo.upsert_user(user_id, "en", "UTC")
        repo.add_device(user_id, "ios", mine[Channel.IOS], "app")
        repo.add_device(user_id, "android", mine[Channel.ANDROID], "app")
        repo.add_phone(user_id, mine[Channel.SMS])
        repo.add_email(user_id, mine[Channel.EMAIL])
