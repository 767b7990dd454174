"""The SMS adapter against the SNS sandbox on loopback: real boto3 over HTTP to moto, no mocks.

Needs no Kafka. moto keeps SNS state per process, so every test publishes to numbers of its own and
reads moto's bookkeeping for those numbers only. The sandbox's recorder sees every HTTP Publish, so a
count there is the number of attempts: it proves that botocore's own retries are off.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import itertools
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_asyncio
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from consumers.delivery.outcome import Outcome, Status
from consumers.delivery.sms import SENDER_ID_ATTRIBUTE, SMS_TYPE_ATTRIBUTE, SmsAdapter
from notify_core.settings import Settings
from sandboxes.sns import STALL, SnsSandbox

pytestmark = pytest.mark.integration

P, R, S = Status.PERMANENT, Status.RETRY, Status.SENT
_numbers = itertools.count(int(time.time() * 1000) % 10_000_000)
MakeAdapter = Callable[..., SmsAdapter]


def new_number() -> str:
    """A fresh E.164 number per call (moto's state outlives a test)."""
    return f"+1555{next(_numbers) % 10_000_000:07d}"


def message(target: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "delivery_id": "d-1",
        "target": target,
        "sms_text": "Your code is 123456",
        "category": "security",
        "expires_at": None,
    }
    return base | extra


@pytest.fixture(scope="module")
def module_sandbox() -> Iterator[SnsSandbox]:
    with SnsSandbox.run_in_thread(stall_s=2.0) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(module_sandbox: SnsSandbox) -> Iterator[SnsSandbox]:
    module_sandbox.faults.clear()
    module_sandbox.recorder.clear()
    yield module_sandbox
    module_sandbox.faults.clear()


@pytest_asyncio.fixture
async def make_adapter(sandbox: SnsSandbox) -> AsyncIterator[MakeAdapter]:
    adapters: list[SmsAdapter] = []

    def make(*, endpoint: str | None = None, **kwargs: Any) -> SmsAdapter:
        settings = Settings().model_copy(update={"sns_endpoint": endpoint or sandbox.endpoint})
        adapter = SmsAdapter.from_settings(settings, **kwargs)
        adapters.append(adapter)
        return adapter

    yield make
    for adapter in adapters:
        await adapter.close()


def moto_sms_to(sandbox: SnsSandbox, *numbers: str) -> list[dict[str, Any]]:
    return [sms for sms in sandbox.moto_sms() if sms["phone_number"] in numbers]


@pytest.mark.asyncio
async def test_sent_with_message_id_and_attributes(sandbox: SnsSandbox, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter()
    otp, promo = new_number(), new_number()

    sent = await adapter.send(message(otp))
    marketing = await adapter.send(message(promo, category="marketing", sms_text="50% off today"))

    assert (sent.status, marketing.status) == (S, S)
    assert sent.provider_message_id
    assert marketing.provider_message_id
    first, second = sandbox.recorder.all()
    assert (first.target, first.answered, first.payload["message_id"]) == (
        otp,
        "ok",
        sent.provider_message_id,
    )
    assert first.payload["message"] == "Your code is 123456"
    assert first.payload["attributes"] == {SMS_TYPE_ATTRIBUTE: "Transactional", SENDER_ID_ATTRIBUTE: "NOTIFY"}
    assert first.payload["data_types"] == {SMS_TYPE_ATTRIBUTE: "String", SENDER_ID_ATTRIBUTE: "String"}
    assert (second.target, second.payload["attributes"][SMS_TYPE_ATTRIBUTE]) == (promo, "Promotional")
    # moto's own bookkeeping agrees, message for message.
    assert sorted((m["message_id"], m["phone_number"]) for m in moto_sms_to(sandbox, otp, promo)) == sorted(
        [(sent.provider_message_id, otp), (marketing.provider_message_id, promo)]
    )


# (injected fault, expected status, reason, deactivate_target)
INJECTED: list[tuple[str, Status, str, bool]] = [
    ("Throttling", R, "Throttling", False),
    ("Throttled", R, "Throttled", False),
    ("KMSThrottling", R, "KMSThrottling", False),
    ("InternalError", R, "InternalError", False),
    ("ServiceUnavailable", R, "ServiceUnavailable", False),
    ("InvalidParameter", P, "InvalidParameter", True),
    ("ParameterValueInvalid", P, "ParameterValueInvalid", True),
    ("InvalidParameter: Invalid parameter: Message too long", P, "InvalidParameter", False),
    ("OptedOut", P, "OptedOut", True),
    ("AuthorizationError", P, "AuthorizationError", False),
    ("InvalidClientTokenId", P, "InvalidClientTokenId", False),
    ("SignatureDoesNotMatch", P, "SignatureDoesNotMatch", False),
    ("ExpiredToken", P, "ExpiredToken", False),
]


@pytest.mark.parametrize(("fault", "status", "reason", "deactivate"), INJECTED)
@pytest.mark.asyncio
async def test_injected_error_gives_its_outcome(
    sandbox: SnsSandbox, make_adapter: MakeAdapter, fault: str, status: Status, reason: str, deactivate: bool
) -> None:
    number = new_number()
    sandbox.faults.add(fault, target=number)

    outcome = await make_adapter().send(message(number))

    assert (outcome.status, outcome.reason, outcome.deactivate_target) == (status, reason, deactivate)
    assert outcome.detail is not None
    assert number not in outcome.detail  # SNS echoes bad numbers; the adapter never passes them on
    assert [r.answered for r in sandbox.recorder.all()] == [reason]  # one attempt: no botocore retries
    assert moto_sms_to(sandbox, number) == []


@pytest.mark.asyncio
async def test_throttling_for_three_calls_then_heals(sandbox: SnsSandbox, make_adapter: MakeAdapter) -> None:
    number, other = new_number(), new_number()
    sandbox.faults.add("Throttling", target=number, times=3)
    adapter = make_adapter()

    outcomes = [await adapter.send(message(number)) for _ in range(5)]
    bystander = await adapter.send(message(other))

    assert [o.status for o in outcomes] == [R, R, R, S, S]
    assert bystander.status is S
    assert [r.answered for r in sandbox.recorder.all()] == ["Throttling"] * 3 + ["ok"] * 3
    assert len(moto_sms_to(sandbox, number)) == 2


@pytest.mark.asyncio
async def test_invalid_number_is_permanent(sandbox: SnsSandbox, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter()
    outcomes = [await adapter.send(message(bad)) for bad in ("12ab", "+0123456789", "+1" + "2" * 20)]

    for outcome in outcomes:  # moto's own E.164 check, answered as SNS would
        assert (outcome.status, outcome.reason, outcome.deactivate_target) == (P, "InvalidParameter", True)
    assert [r.answered for r in sandbox.recorder.all()] == ["InvalidParameter"] * 3


@pytest.mark.asyncio
async def test_concurrent_sends_share_one_bounded_pool(
    sandbox: SnsSandbox, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(max_workers=4)
    numbers = [new_number() for _ in range(24)]

    outcomes = await asyncio.wait_for(asyncio.gather(*(adapter.send(message(n)) for n in numbers)), 10)

    assert [o.status for o in outcomes] == [S] * 24
    assert len({o.provider_message_id for o in outcomes}) == 24
    assert sorted(r.target for r in sandbox.recorder.delivered()) == sorted(numbers)


@pytest.mark.asyncio
async def test_expired_message_never_reaches_sns(sandbox: SnsSandbox, make_adapter: MakeAdapter) -> None:
    expired = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    outcome = await make_adapter().send(message(new_number(), expires_at=expired))

    assert outcome == Outcome.permanent("expired", detail="expires_at passed before the send")
    assert sandbox.recorder.all() == []


@pytest.mark.asyncio
async def test_read_timeout_is_a_retry(sandbox: SnsSandbox, make_adapter: MakeAdapter) -> None:
    number = new_number()
    sandbox.faults.add(STALL, target=number, times=1)
    adapter = make_adapter(read_timeout_s=0.3)

    stalled = await adapter.send(message(number))
    healed = await adapter.send(message(number))

    # The stalled request would end in a 500 InternalError: "timeout" means the client gave up first.
    assert (stalled.status, stalled.reason) == (R, "timeout")
    assert healed.status is S
    assert [r.answered for r in sandbox.recorder.all()] == [STALL, "ok"]


@pytest.mark.asyncio
async def test_unreachable_endpoint_is_a_retry(make_adapter: MakeAdapter) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = make_adapter(endpoint=f"http://127.0.0.1:{port}", connect_timeout_s=0.5)

    outcome = await adapter.send(message(new_number()))

    assert (outcome.status, outcome.reason) == (R, "connection_error")


def _signed_publish(endpoint: str, phone: str) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of a SigV4-signed AWS Query ``Publish``, as botocore would sign it."""
    body = urlencode({"Action": "Publish", "Version": "2010-03-31", "PhoneNumber": phone, "Message": "hi"})
    request = AWSRequest(
        method="POST",
        url=f"{endpoint}/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials("testing", "testing"), "sns", "us-east-1").add_auth(request)
    return "/", body.encode(), {k: str(v) for k, v in request.headers.items()}


def test_connections_stay_alive_across_publishes(sandbox: SnsSandbox) -> None:
    """Like SNS, the sandbox keeps a connection open: five Publishes travel on one TCP connection.

    moto's own werkzeug server answered each request with ``Connection: close``, so every send paid for
    a new connection (and the sandbox for a new thread), which made SMS the slowest chain end to end.
    """
    host, port = "127.0.0.1", sandbox.port
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        sockets = set()
        for _ in range(5):
            path, body, headers = _signed_publish(sandbox.endpoint, new_number())
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            assert response.status == 200, answer
            assert b"<MessageId>" in answer
            assert not response.will_close
            sockets.add(id(connection.sock))
        assert len(sockets) == 1
    finally:
        connection.close()
    assert [r.answered for r in sandbox.recorder.all()] == ["ok"] * 5
