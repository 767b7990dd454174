"""Bare clients of each channel's library against a sandbox process: the ceiling a worker is held to.

Each sends ``count`` messages to a ``SandboxProcess`` with the library the channel's adapter uses,
at the adapter's concurrency and pool size, with none of the worker (no Kafka, delivery log, events,
classification or retries), and returns the seconds from the first send to the last answer. A send
that is not accepted raises: a baseline that failed is no baseline.

- iOS: ``aioapns.APNs`` with the adapter's key, CA and connection count (only its endpoint changed,
  as ``ApnsAdapter`` changes it: a protocol class naming host and port).
- Android: one aiohttp session POSTing FCM v1 ``messages:send`` with one OAuth token.
- SMS: boto3 ``sns.publish`` from a thread pool the size of the adapter's.
- E-mail: aiosmtplib connections (STARTTLS, the sandbox CA), as many as the adapter's pool, each
  sending its share with ``sendmail``: the same rendered messages the worker sends (multipart text
  and HTML), built before the clock starts.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from email.utils import parseaddr
from typing import Any

import aiohttp
import boto3  # type: ignore[import-untyped]
from aioapns import APNs, NotificationRequest, PushType
from aioapns.connection import APNsProductionClientProtocol
from aiosmtplib import SMTP
from botocore.config import Config  # type: ignore[import-untyped]

from consumers.delivery.email_message import build_message
from consumers.delivery.fcm import AccessToken
from notify_core.topics import Channel
from sandboxes.local import SANDBOX_SECRET
from sandboxes.messages import channel_message
from sandboxes.process import (
    APNS_MAX_CONNECTIONS,
    EMAIL_SENDER,
    FCM_MAX_CONNECTIONS,
    SMS_MAX_WORKERS,
    SMTP_POOL_SIZE,
    SandboxProcess,
)

BareClient = Callable[[SandboxProcess, int, int], Coroutine[Any, Any, float]]


async def _fan_out(count: int, concurrency: int, send: Callable[[int], Awaitable[None]]) -> float:
    """Run ``send(0..count-1)`` from ``concurrency`` tasks; the seconds it took."""
    counter = iter(range(count))

    async def lane() -> None:
        for i in counter:  # a shared iterator: each index is taken once
            await send(i)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(max(1, min(concurrency, count)))))
    return time.perf_counter() - started


def _failed(channel: Channel, what: object) -> RuntimeError:
    return RuntimeError(f"bare {channel.value} client: a send was not accepted: {what}")


async def bare_apns(box: SandboxProcess, count: int, concurrency: int) -> float:
    r = box.ready
    context = ssl.create_default_context(cafile=r["ca_path"])
    context.set_alpn_protocols(["h2"])
    client = APNs(
        key=r["key_pem"],
        key_id=r["key_id"],
        team_id=r["team_id"],
        topic=r["topic"],
        max_connections=APNS_MAX_CONNECTIONS,
        ssl_context=context,
    )
    # aioapns has no endpoint setting: the protocol class names the host (as ApnsAdapter does it).
    client.pool.protocol_class = type(
        "SandboxEndpoint",
        (APNsProductionClientProtocol,),
        {"APNS_SERVER": "127.0.0.1", "APNS_PORT": int(r["port"])},
    )

    async def send(i: int) -> None:
        request = NotificationRequest(
            device_token=f"{i:064x}",
            message={"aps": {"alert": {"title": "Hello", "body": "Hello there"}}},
            push_type=PushType.ALERT,
        )
        result = await client.send_notification(request)
        if not result.is_successful:
            raise _failed(Channel.IOS, result.description)

    try:
        return await _fan_out(count, concurrency, send)
    finally:
        client.pool.close()


async def bare_fcm(box: SandboxProcess, count: int, concurrency: int) -> float:
    r = box.ready
    url = f"{r['endpoint']}/v1/projects/{r['project_id']}/messages:send"
    token = AccessToken.from_file(r["credentials_file"])
    try:
        headers = {"Authorization": f"Bearer {await token.get()}"}  # obtained once, before the clock
    finally:
        await token.close()
    connector = aiohttp.TCPConnector(limit=FCM_MAX_CONNECTIONS, limit_per_host=FCM_MAX_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def send(i: int) -> None:
            body: dict[str, Any] = {
                "message": {
                    "token": f"fcm-token-{i:012d}",
                    "notification": {"title": "Hello", "body": "Hello there"},
                    "data": {"k": "v"},
                    "android": {"priority": "high"},
                }
            }
            async with session.post(url, json=body) as response:
                await response.read()
                if response.status != 200:
                    raise _failed(Channel.ANDROID, response.status)

        return await _fan_out(count, concurrency, send)


async def bare_sns(box: SandboxProcess, count: int, concurrency: int) -> float:
    return await asyncio.to_thread(_bare_sns, box, count)


def _bare_sns(box: SandboxProcess, count: int) -> float:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key=SANDBOX_SECRET, region_name="us-east-1"
    )
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=SMS_MAX_WORKERS
    )
    client: Any = session.client("sns", endpoint_url=box.ready["endpoint"], config=config)

    def publish(i: int) -> None:
        response = client.publish(PhoneNumber=f"+1555{i:07d}", Message="Hello there")
        if "MessageId" not in response:
            raise _failed(Channel.SMS, response)

    try:
        with ThreadPoolExecutor(max_workers=SMS_MAX_WORKERS, thread_name_prefix="bare-sns") as pool:
            started = time.perf_counter()
            list(pool.map(publish, range(count)))
            return time.perf_counter() - started
    finally:
        client.close()


async def bare_smtp(box: SandboxProcess, count: int, concurrency: int) -> float:
    r = box.ready
    context = ssl.create_default_context(cafile=r["ca_path"])
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # The very bytes the worker sends for the bench's messages (multipart, same headers), rendered
    # before the clock: the ceiling is aiosmtplib carrying them, and the sandbox parsing them.
    envelope_from = parseaddr(EMAIL_SENDER)[1]
    recipients = [f"user-{i}@example.com" for i in range(count)]
    mails = [
        build_message(
            channel_message(Channel.EMAIL, recipient),
            sender=EMAIL_SENDER,
            unsubscribe_url=None,
            domain=envelope_from.rpartition("@")[2],
        ).data
        for recipient in recipients
    ]

    async def connection(lane: int) -> None:
        smtp = SMTP(
            hostname=r["host"],
            port=int(r["port"]),
            start_tls=True,
            tls_context=context,
            local_hostname="bench.example.com",
        )
        await smtp.connect()
        try:
            for i in range(lane, count, SMTP_POOL_SIZE):
                errors, _ = await smtp.sendmail(envelope_from, [recipients[i]], mails[i])
                if errors:
                    raise _failed(Channel.EMAIL, errors)
        finally:
            await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(connection(lane) for lane in range(min(SMTP_POOL_SIZE, max(count, 1)))))
    return time.perf_counter() - started


BARE_CLIENTS: dict[Channel, BareClient] = {
    Channel.IOS: bare_apns,
    Channel.ANDROID: bare_fcm,
    Channel.SMS: bare_sns,
    Channel.EMAIL: bare_smtp,
}
# The concurrency each bare client is run at, for the report: the worker's in-flight limit where the
# library multiplexes (HTTP/2, aiohttp), the adapter's pool where it is one send per connection/thread.
POOL_SIZES: dict[Channel, int | None] = {
    Channel.IOS: None,
    Channel.ANDROID: None,
    Channel.SMS: SMS_MAX_WORKERS,
    Channel.EMAIL: SMTP_POOL_SIZE,
}


def concurrency_for(channel: Channel, max_in_flight: int) -> int:
    pool = POOL_SIZES[channel]
    return pool if pool is not None else max_in_flight
