"""The pipeline as separate ``notify`` processes for ``notify bench e2e``: routers and channel workers.

``Fleet`` starts ``notify router run`` and ``notify worker run --channel C`` subprocesses (each with
its own log file) pointed at one scratch topic prefix and database schema and at the sandboxes'
``NOTIFY_*`` settings, waits until every consumer group is stable with the wanted number of members,
and stops them with SIGTERM (SIGKILL after a grace period). Each process has an instance id of its
own: routers ``r<i>``, workers ``<channel>-<i>``; a restarted one gets its predecessor's id back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from notify_core.db.connect import schema_url
from notify_core.kafka_clients import make_admin
from notify_core.settings import Settings
from notify_core.topics import Channel, worker_group
from notify_core.userdata.models import Template
from notify_core.userdata.repository import UserDataRepository

STOP_TIMEOUT_S = 30.0
CHANNELS = (Channel.IOS, Channel.ANDROID, Channel.SMS, Channel.EMAIL)
UNPACED_SMS_PER_S = 100_000  # the SMS worker's pacing is not what an end-to-end run measures


def process_env(settings: Settings, schema: str) -> dict[str, str]:
    """What every subprocess needs to use ``settings``' broker, topic prefix, groups and ``schema``."""
    return {
        "NOTIFY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "NOTIFY_TOPIC_PREFIX": settings.topic_prefix,
        "NOTIFY_DATABASE_URL": schema_url(settings, schema),
        "NOTIFY_ROUTER_GROUP": settings.router_group,
        "NOTIFY_WORKER_GROUP_PREFIX": settings.worker_group_prefix,
        "NOTIFY_SMS_MAX_PER_SECOND": str(UNPACED_SMS_PER_S),
    }


class Member:
    """One ``notify`` subprocess with its output in ``log``."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "notify_cli", *args],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def terminate(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
            return -signal.SIGKILL


class Fleet:
    """Routers and one or more workers per channel, all stopped by ``stop`` (call it in ``finally``)."""

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str],
        logs: Path,
        channels: tuple[Channel, ...] = tuple(Channel),
    ) -> None:
        self.settings, self.env, self.logs, self.channels = settings, dict(env), logs, channels
        self.members: dict[str, Member] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def groups(self) -> list[str]:
        return [self.settings.router_group, *(worker_group(self.settings, c) for c in self.channels)]

    def _start(self, name: str, args: list[str], env: Mapping[str, str]) -> None:
        if name not in self.members or not self.members[name].alive():
            self.members[name] = Member(name, args, {**self.env, **env}, self.logs / f"{name}.log")

    def scale(self, size: int) -> None:
        """Have ``size`` routers and ``size`` workers per channel running (starting the missing ones)."""
        for i in range(size):
            self._start(f"router-{i}", ["router", "run"], {"NOTIFY_ROUTER_INSTANCE_ID": f"r{i}"})
            for channel in self.channels:
                self._start(
                    f"worker-{channel.value}-{i}",
                    ["worker", "run", "--channel", channel.value],
                    {"NOTIFY_WORKER_INSTANCE_ID": f"{channel.value}-{i}"},
                )

    def pids(self) -> dict[str, int]:
        return {name: m.pid for name, m in self.members.items() if m.alive()}

    def check_alive(self) -> None:
        for member in self.members.values():
            if not member.alive():
                raise RuntimeError(f"{member.name} exited with {member.popen.returncode}:\n{member.tail()}")

    def wait_stable(self, size: int, timeout_s: float = 90.0) -> float:
        """Until every group is stable with ``size`` members that all hold partitions; seconds waited."""
        admin = make_admin(self.settings)
        began = time.monotonic()
        pending = self.groups()
        while pending:
            self.check_alive()
            if time.monotonic() - began > timeout_s:
                raise RuntimeError(f"groups {pending} did not settle with {size} members in {timeout_s:g} s")
            described = admin.describe_consumer_groups(pending, request_timeout=10)
            settled = []
            for group, future in described.items():
                found = future.result()
                state = str(found.state).rsplit(".", 1)[-1]
                members = list(found.members)
                if (
                    state == "STABLE"
                    and len(members) == size
                    and all(m.assignment is not None and m.assignment.topic_partitions for m in members)
                ):
                    settled.append(group)
            pending = [g for g in pending if g not in settled]
            if pending:
                time.sleep(0.3)
        return time.monotonic() - began

    def stop(self) -> dict[str, int]:
        """SIGTERM to every member at once, then wait for each; their exit codes."""
        for member in self.members.values():
            member.terminate()
        codes = {name: member.wait() for name, member in self.members.items()}
        self.members.clear()
        return codes


def seed(repo: UserDataRepository, users: int) -> None:
    """Template ``e2e`` with ``t={{ t }}`` in every text, and users with one target per channel."""
    for channel in CHANNELS:
        text = "Sent at t={{ t }}"
        repo.put_template(
            Template(
                "e2e", channel, "en", 1, title=text, body=text, sms_text=text, email_subject=text,
                email_text=text, email_html=f"<p>{text}</p>",
            )
        )  # fmt: skip
    for u in range(users):
        user = f"user-{u}"
        repo.upsert_user(user, "en", "UTC")
        repo.add_device(user, "ios", f"{u:064x}", "app")
        repo.add_device(user, "android", f"fcm-token-{u:012d}", "app")
        repo.add_phone(user, f"+1202{200 + u // 10_000:03d}{u % 10_000:04d}")
        repo.add_email(user, f"user-{u}@example.com")
