"""Each channel's sandbox in a process of its own, for benchmarks that must not share its GIL.

``sandbox_process(channel, workdir)`` starts ``python -m sandboxes.serve`` (see ``sandboxes.serve``)
in ``workdir/<channel>``, waits for its ``ready.json`` and yields a ``SandboxProcess``: ``env`` points
a ``notify worker run`` subprocess at it (as ``tests.pipeline.sandboxes`` does), ``make_adapter()``
builds an in-process adapter against it (as ``sandboxes.local.local_provider`` does, same pool
sizes), and ``receipts()`` reads back what the sandbox received (flushed by the child every ~0.2 s,
so read it again after a short wait when a count must be complete). On exit the child gets SIGTERM,
writes its last receipts and is waited for.

Fault injection does not cross the process boundary: these sandboxes always answer success (a
benchmark measures the happy path). Tests that inject faults use the in-thread sandboxes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumers.delivery.worker import Adapter
from notify_core.settings import Settings
from notify_core.topics import Channel
from sandboxes.local import SANDBOX_SECRET
from sandboxes.serve import READY_FILE, RECEIPTS_FILE

PROVIDERS: dict[Channel, str] = {
    Channel.IOS: "apns",
    Channel.ANDROID: "fcm",
    Channel.SMS: "sns",
    Channel.EMAIL: "smtp",
}
# The adapters' pools, as local_provider sizes them; bare-client baselines use the same.
APNS_MAX_CONNECTIONS = 4
FCM_MAX_CONNECTIONS = 32
SMS_MAX_WORKERS = 32
SMTP_POOL_SIZE = 8
EMAIL_SENDER = "Notify <no-reply@example.com>"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
_ROOT = Path(__file__).resolve().parent.parent  # the child imports sandboxes from here


@dataclass(frozen=True)
class Receipt:
    target: str
    at: float  # time.time() when the sandbox received it
    answered: str  # "ok" or the injected error
    marker: float | None  # the t=<float> found in the payload


@dataclass
class SandboxProcess:
    """A running ``sandboxes.serve`` child and what its ``ready.json`` said."""

    channel: Channel
    provider: str  # "apns" | "fcm" | "sns" | "smtp"
    pid: int
    env: dict[str, str]  # NOTIFY_* settings pointing a `notify worker run` subprocess at it
    workdir: Path
    ready: dict[str, Any]
    settings: Settings | None = None
    _offset: int = field(default=0, repr=False)
    _count: int = field(default=0, repr=False)

    @property
    def receipts_path(self) -> Path:
        return self.workdir / RECEIPTS_FILE

    def make_adapter(self) -> Adapter:
        """An in-process adapter pointed at this sandbox, sized as ``local_provider``'s."""
        r = self.ready
        if self.channel is Channel.IOS:
            from consumers.delivery.apns import ApnsAdapter

            return ApnsAdapter(
                endpoint=r["endpoint"],
                key_pem=r["key_pem"],
                key_id=r["key_id"],
                team_id=r["team_id"],
                topic=r["topic"],
                ca_file=r["ca_path"],
                max_connections=APNS_MAX_CONNECTIONS,
            )
        if self.channel is Channel.ANDROID:
            from consumers.delivery.fcm import AccessToken, FcmAdapter

            return FcmAdapter(
                endpoint=r["endpoint"],
                project_id=r["project_id"],
                token=AccessToken.from_file(r["credentials_file"]),
                max_connections=FCM_MAX_CONNECTIONS,
            )
        if self.channel is Channel.SMS:
            from consumers.delivery.sms import SmsAdapter

            return SmsAdapter(
                endpoint_url=r["endpoint"],
                region="us-east-1",
                access_key_id="testing",
                secret_access_key=SANDBOX_SECRET,
                sender_id="NOTIFY",
                max_workers=SMS_MAX_WORKERS,
            )
        from consumers.delivery.email import EmailAdapter
        from notify_core.tracking import TrackingSigner

        if self.settings is None:
            base_url = "https://example.com"
            signer = TrackingSigner(tracking_secrets=[SANDBOX_SECRET], unsubscribe_secrets=[SANDBOX_SECRET])
        else:
            base_url, signer = self.settings.public_base_url, TrackingSigner.from_settings(self.settings)
        return EmailAdapter(
            host=r["host"],
            port=int(r["port"]),
            sender=EMAIL_SENDER,
            public_base_url=base_url,
            signer=signer,
            start_tls=True,
            ca_file=r["ca_path"],
            pool_size=SMTP_POOL_SIZE,
        )

    def receipts(self) -> list[Receipt]:
        """Every receipt flushed so far (a partial last line, still being written, is left out)."""
        try:
            text = self.receipts_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out: list[Receipt] = []
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                break
            try:
                d = json.loads(line)
            except ValueError:
                continue
            marker = d.get("marker")
            out.append(
                Receipt(
                    str(d["target"]),
                    float(d["at"]),
                    str(d["answered"]),
                    None if marker is None else float(marker),
                )
            )
        return out

    def count(self) -> int:
        """How many receipts are flushed so far: counts only the newly written complete lines."""
        try:
            with self.receipts_path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return 0
        complete = chunk.rfind(b"\n") + 1
        self._count += chunk.count(b"\n", 0, complete)
        self._offset += complete
        return self._count


def _env(channel: Channel, ready: Mapping[str, Any], sms_max_per_second: float | None) -> dict[str, str]:
    if channel is Channel.IOS:
        return {
            "NOTIFY_APNS_ENDPOINT": str(ready["endpoint"]),
            "NOTIFY_APNS_CA_FILE": str(ready["ca_path"]),
            "NOTIFY_APNS_KEY": str(ready["key_pem"]),
            "NOTIFY_APNS_KEY_ID": str(ready["key_id"]),
            "NOTIFY_APNS_TEAM_ID": str(ready["team_id"]),
            "NOTIFY_APNS_TOPIC": str(ready["topic"]),
        }
    if channel is Channel.ANDROID:
        return {
            "NOTIFY_FCM_ENDPOINT": str(ready["endpoint"]),
            "NOTIFY_FCM_CREDENTIALS_FILE": str(ready["credentials_file"]),
            "NOTIFY_FCM_PROJECT_ID": str(ready["project_id"]),
        }
    if channel is Channel.SMS:
        env = {"NOTIFY_SNS_ENDPOINT": str(ready["endpoint"])}
        if sms_max_per_second is not None:
            env["NOTIFY_SMS_MAX_PER_SECOND"] = str(sms_max_per_second)
        return env
    return {
        "NOTIFY_SMTP_HOST": str(ready["host"]),
        "NOTIFY_SMTP_PORT": str(ready["port"]),
        "NOTIFY_SMTP_START_TLS": "true",
        "NOTIFY_SMTP_CA_FILE": str(ready["ca_path"]),
    }


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _wait_ready(
    popen: subprocess.Popen[bytes], ready_file: Path, log: Path, channel: Channel
) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready_file.exists():
            ready: dict[str, Any] = json.loads(ready_file.read_text())
            return ready
        if popen.poll() is not None:
            raise RuntimeError(
                f"{channel.value} sandbox process exited with {popen.returncode} before it was ready:\n"
                + _log_tail(log)
            )
        time.sleep(0.05)
    raise RuntimeError(
        f"{channel.value} sandbox process not ready in {START_TIMEOUT_S} s:\n" + _log_tail(log)
    )


def _stop(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=5)


@contextmanager
def sandbox_process(
    channel: Channel,
    workdir: Path,
    settings: Settings | None = None,
    *,
    sms_max_per_second: float | None = None,
) -> Iterator[SandboxProcess]:
    """Start ``channel``'s sandbox in a child process under ``workdir/<channel>``; stop it on exit.

    ``settings`` only changes how ``make_adapter()``'s e-mail adapter signs its links (as in
    ``local_provider``). ``sms_max_per_second`` adds ``NOTIFY_SMS_MAX_PER_SECOND`` to ``env``.
    """
    box_dir = workdir / channel.value
    box_dir.mkdir(parents=True, exist_ok=True)
    for stale in (READY_FILE, RECEIPTS_FILE):
        (box_dir / stale).unlink(missing_ok=True)
    log = box_dir / "serve.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
    }
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "sandboxes.serve", "--channel", channel.value, "--workdir", str(box_dir)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        ready = _wait_ready(popen, box_dir / READY_FILE, log, channel)
        yield SandboxProcess(
            channel=channel,
            provider=PROVIDERS[channel],
            pid=popen.pid,
            env=_env(channel, ready, sms_max_per_second),
            workdir=box_dir,
            ready=ready,
            settings=settings,
        )
    finally:
        _stop(popen)


@contextmanager
def sandbox_processes(
    workdir: Path,
    channels: Iterable[Channel] = tuple(Channel),
    settings: Settings | None = None,
    *,
    sms_max_per_second: float | None = None,
) -> Iterator[dict[Channel, SandboxProcess]]:
    """One sandbox process per channel (started one after another), all stopped on exit."""
    with ExitStack() as stack:
        yield {
            channel: stack.enter_context(
                sandbox_process(channel, workdir, settings, sms_max_per_second=sms_max_per_second)
            )
            for channel in channels
        }


def worker_env(boxes: Mapping[Channel, SandboxProcess]) -> dict[str, str]:
    """The merged ``env`` of every sandbox: enough for workers of all their channels."""
    merged: dict[str, str] = {}
    for box in boxes.values():
        merged.update(box.env)
    return merged
