"""One channel's sandbox in a process of its own: ``python -m sandboxes.serve --channel C --workdir D``.

The child starts the channel's sandbox on 127.0.0.1 (a free port), then writes ``D/ready.json``
(atomically: a temporary file renamed) with everything a client needs: the endpoint or port, the CA
path, for APNs the signing key PEM and its key and team ids, for FCM the service-account key file.
Every request the sandbox records is appended to ``D/receipts.jsonl`` as one JSON line
``{"target", "at", "answered", "marker"}``: ``at`` is the sandbox's wall-clock arrival time and
``marker`` the float of the first ``t=<digits>.<digits>`` in the recorded payload (or null). A
background thread writes them every ``FLUSH_INTERVAL_S``, never the request path. SIGTERM (or
SIGINT) stops the sandbox, writes what is left and exits 0. ``sandboxes.process`` is the parent side.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from notify_core.topics import Channel
from sandboxes.faults import Received, Recorder

READY_FILE = "ready.json"
RECEIPTS_FILE = "receipts.jsonl"
FLUSH_INTERVAL_S = 0.2
KEY_ID, TEAM_ID = "KEYID12345", "TEAM123456"
APNS_TOPIC = "com.example.notify"
FCM_PROJECT = "notify-sandbox"
MARKER = re.compile(r"t=(\d+\.\d+)")


def marker_of(payload: Any) -> float | None:
    """The float of the first ``t=<digits>.<digits>`` in ``payload`` as JSON, or None."""
    found = MARKER.search(json.dumps(payload, default=str))
    return float(found.group(1)) if found else None


class StreamingRecorder(Recorder):
    """A ``Recorder`` whose new items a flusher can take without copying the whole list."""

    def __init__(self) -> None:
        super().__init__()
        self._taken = 0

    def take_new(self) -> list[Received]:
        with self._lock:
            new = self._items[self._taken :]
            self._taken = len(self._items)
        return new


class ReceiptWriter:
    """Appends each recorded request to ``path`` as a JSON line, every ``interval_s``, from a thread."""

    def __init__(self, recorder: StreamingRecorder, path: Path, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self._recorder, self._interval_s = recorder, interval_s
        self._file = path.open("a", encoding="utf-8")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receipt-writer", daemon=True)
        self._thread.start()

    def flush(self) -> None:
        items = self._recorder.take_new()
        if not items:
            return
        lines = [
            json.dumps(
                {"target": r.target, "at": r.at, "answered": r.answered, "marker": marker_of(r.payload)}
            )
            + "\n"
            for r in items
        ]
        self._file.write("".join(lines))
        self._file.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.flush()  # whatever arrived after the thread's last pass
        self._file.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.flush()


def write_ready(workdir: Path, info: dict[str, Any]) -> None:
    tmp = workdir / (READY_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, workdir / READY_FILE)


@contextmanager
def serving(channel: Channel, workdir: Path, recorder: StreamingRecorder) -> Iterator[dict[str, Any]]:
    """Start ``channel``'s sandbox recording into ``recorder``; yield what ready.json carries."""
    certs = workdir / "certs"
    if channel is Channel.IOS:
        from sandboxes.apns import ApnsSandbox, SandboxThread
        from sandboxes.tls import generate_es256_key

        key = generate_es256_key()
        apns = ApnsSandbox(public_key_pem=key.public_pem, key_id=KEY_ID, team_id=TEAM_ID, cert_dir=certs)
        apns.recorder = recorder
        with SandboxThread(apns, "apns-sandbox") as box:
            yield {
                "endpoint": f"https://127.0.0.1:{box.port}",
                "port": box.port,
                "ca_path": str(box.ca_path),
                "key_pem": key.private_pem,
                "key_id": KEY_ID,
                "team_id": TEAM_ID,
                "topic": APNS_TOPIC,
            }
    elif channel is Channel.ANDROID:
        from sandboxes.fcm import FcmSandbox, FcmSandboxThread

        fcm = FcmSandbox(project_id=FCM_PROJECT)
        fcm.recorder = recorder
        with FcmSandboxThread(fcm, "fcm-sandbox") as thread:
            account = thread.create_service_account(workdir)
            yield {
                "endpoint": thread.endpoint,
                "port": fcm.port,
                "credentials_file": str(account.path),
                "project_id": FCM_PROJECT,
            }
    elif channel is Channel.SMS:
        from sandboxes.sns import SnsSandbox

        sns = SnsSandbox(port=0)
        sns.recorder = recorder  # before start(): the WSGI middleware takes it when the server starts
        sns.start()
        try:
            yield {"endpoint": sns.endpoint, "port": sns.port}
        finally:
            sns.stop()
    else:
        from sandboxes.smtp import SmtpSandbox

        smtp = SmtpSandbox(cert_dir=certs, require_starttls=True)
        smtp.recorder = recorder
        with smtp:
            yield {"host": "127.0.0.1", "port": smtp.port, "ca_path": str(smtp.ca_path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandboxes.serve", description=__doc__)
    parser.add_argument("--channel", required=True, choices=[c.value for c in Channel])
    parser.add_argument("--workdir", required=True, type=Path)
    args = parser.parse_args(argv)
    channel, workdir = Channel(args.channel), Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    handler: Callable[[int, FrameType | None], None] = on_signal
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    recorder = StreamingRecorder()
    writer = ReceiptWriter(recorder, workdir / RECEIPTS_FILE)
    try:
        with serving(channel, workdir, recorder) as info:
            write_ready(
                workdir, {"channel": channel.value, "pid": os.getpid(), "started_at": time.time(), **info}
            )
            print(f"{channel.value} sandbox ready: {info.get('endpoint') or info.get('port')}", flush=True)
            while not stop.wait(1.0):
                pass
    finally:
        writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
