"""One request is one trace: the SDK's send, the router's process span, each worker attempt (the
first on the channel topic, the retry on its retry topic) and each provider call, linked parent to
child, on the real broker, database and APNs sandbox, with the router and the worker in this process.

Spans are read with the OpenTelemetry SDK's in-memory exporter, on the provider this module installs
(``recorded``). A process can install its global provider only once: the fixture installs one unless
an SDK provider is there already (then it adds its exporter to that one), and stops its exporter when
the module is done.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from consumers.delivery.apns import ApnsAdapter
from consumers.router.app import Router
from notify_core.codec import EVENT, default_codec
from notify_core.db.connect import connect, make_pool
from notify_core.records import read_records
from notify_core.settings import Settings
from notify_core.topics import Channel, topic_names
from notify_core.userdata.models import Template
from notify_core.userdata.repository import UserDataRepository
from producer import NotificationClient
from sandboxes.apns import ApnsSandbox
from sandboxes.tls import Es256Key, generate_es256_key
from tests.api_harness import ApiEnv, api_env
from tests.delivery_harness import delivery_env

pytestmark = pytest.mark.integration
__all__ = ["api_env"]
KEY_ID, TEAM_ID = "KEYID12345", "TEAM123456"


@pytest.fixture(scope="module")
def recorded() -> Iterator[InMemorySpanExporter]:
    """Every span this process finishes while the module runs, in memory."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if not isinstance(provider, TracerProvider):
        pytest.fail(f"another test installed a tracer provider that records nothing: {provider!r}")
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # later tests' spans are not kept


@pytest.fixture
def spans(recorded: InMemorySpanExporter) -> InMemorySpanExporter:
    recorded.clear()
    return recorded


@pytest_asyncio.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[tuple[ApnsSandbox, Es256Key]]:
    key = generate_es256_key()
    box = ApnsSandbox(public_key_pem=key.public_pem, key_id=KEY_ID, team_id=TEAM_ID, cert_dir=tmp_path)
    await box.start()
    yield box, key
    await box.stop()


def adapter(sandbox: ApnsSandbox, key: Es256Key) -> ApnsAdapter:
    return ApnsAdapter(
        endpoint=sandbox.endpoint,
        key_pem=key.private_pem,
        key_id=KEY_ID,
        team_id=TEAM_ID,
        topic="com.example.notify",
        ca_file=sandbox.ca_path,
        timeout_s=5,
    )


def route(settings: Settings, schema: str, repo: UserDataRepository) -> None:
    routed = settings.model_copy(update={"router_group": f"router-{uuid.uuid4().hex[:8]}"})
    router = Router(routed, lambda: connect(routed, schema=schema), repo)
    stats = router.run(stop_when_idle=True, idle_s=2.0, max_runtime_s=120)
    assert (stats.records, dict(stats.decisions)) == (2, {"routed": 2})


def one(found: list[ReadableSpan], what: str) -> ReadableSpan:
    assert len(found) == 1, f"{what}: {[s.name for s in found]}"
    return found[0]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


@pytest.mark.asyncio
async def test_one_request_is_one_trace_from_the_sdk_through_a_retry_to_the_provider(
    settings: Settings, db_schema: tuple[Settings, str], sandbox: tuple[ApnsSandbox, Es256Key], spans: Any
) -> None:
    """Two requests sent in one SDK batch, routed together, each delivered to one iPhone; the first
    answered 429 once, so it is retried through the retry topic. Each request is a trace of its own:
    SDK ``send`` → router ``process`` → worker ``process`` of the channel topic → ``POST apns`` (429)
    and → worker ``process`` of the retry topic → ``POST apns`` (200), each span the parent of the
    next, and the records of every hop (channel message, retry copy, events) carry that trace."""
    box, key = sandbox
    schema = db_schema[1]
    names = topic_names(settings)
    pool = make_pool(settings, schema=schema, min_size=1, max_size=2)
    repo = UserDataRepository(pool)
    repo.put_template(Template("hello", Channel.IOS, "en", 1, title="Hi {{ name }}", body="Hello"))
    tokens = {user: uuid.uuid4().hex + uuid.uuid4().hex for user in ("flaky", "fine")}
    for user, token in tokens.items():
        repo.upsert_user(user, "en", "UTC")
        repo.add_device(user, "ios", token, "app")
    box.faults.add("TooManyRequests", target=tokens["flaky"], times=1)

    def request(user: str) -> dict[str, Any]:
        return {
            "user_id": user,
            "template_id": "hello",
            "service": "shop",
            "category": "promo",
            "params": {"name": "Ada"},
            "channels": ["ios"],
        }

    with NotificationClient(settings) as client:
        sent = {
            user: r.notification_id
            for user, r in zip(tokens, client.send_batch([request(u) for u in tokens]), strict=True)
        }
    route(settings, schema, repo)
    async with delivery_env(settings, schema, Channel.IOS) as env:
        stats = await env.run(adapter(box, key))
    pool.close()
    assert (stats.sent, stats.retried) == (2, 1)

    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    producers = {attrs(s).get("notify.notification_id"): s for s in finished if s.kind is SpanKind.PRODUCER}
    traces = {user: producers[sent[user]].context.trace_id for user in tokens}
    assert traces["flaky"] != traces["fine"]  # one batch, two traces
    mine = {user: [s for s in finished if s.context.trace_id == traces[user]] for user in tokens}

    for user in tokens:
        path = mine[user]
        sdk = one([s for s in path if s.kind is SpanKind.PRODUCER], "SDK send")
        routed = one([s for s in path if s.name == f"process {names.requests}"], "router process")
        first = one([s for s in path if s.name == f"process {names.channel(Channel.IOS)}"], "first attempt")
        calls = sorted((s for s in path if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0)
        assert sdk.name == f"send {names.requests}"
        assert attrs(sdk)["messaging.destination.name"] == names.requests
        assert parent_of(sdk) is None  # the caller had no span: the request starts its own trace
        assert routed.kind is SpanKind.CONSUMER
        assert parent_of(routed) == sdk.context.span_id
        assert attrs(routed)["messaging.system"] == "kafka"
        assert attrs(routed)["messaging.consumer.group.name"].startswith("router-")
        assert attrs(routed)["messaging.kafka.offset"] == attrs(sdk)["messaging.kafka.offset"]
        assert attrs(routed)["notify.notification_id"] == sent[user]
        assert parent_of(first) == routed.context.span_id
        assert first.kind is SpanKind.CONSUMER
        assert attrs(first)["messaging.consumer.group.name"] == f"{settings.topic_prefix}-ios"
        assert attrs(first)["notify.notification_id"] == sent[user]
        assert all(call.name == "POST apns" for call in calls)
        assert attrs(calls[0])["server.address"] == "127.0.0.1"
        assert "user_id" not in str([attrs(s) for s in path])  # no user id on any span

        if user == "fine":
            assert len(path) == 4
            assert parent_of(calls[0]) == first.context.span_id
            assert attrs(calls[0])["http.response.status_code"] == 200
            assert attrs(first)["notify.outcome"] == "sent"
            continue
        retry = one(
            [s for s in path if s.name.startswith(f"process {names.channel(Channel.IOS)}.retry.")], "retry"
        )
        assert len(path) == 6
        assert parent_of(retry) == first.context.span_id  # the retry copy carried the first attempt's context
        assert attrs(retry)["notify.delivery_id"] == attrs(first)["notify.delivery_id"]
        assert [parent_of(c) for c in calls] == [first.context.span_id, retry.context.span_id]
        assert [attrs(c)["http.response.status_code"] for c in calls] == [429, 200]
        assert calls[0].status.status_code is StatusCode.ERROR
        assert (attrs(first)["notify.outcome"], attrs(first)["notify.next"]) == ("retry", "retry")
        assert (attrs(retry)["notify.attempt"], attrs(retry)["notify.outcome"]) == (2, "sent")

    # The records themselves: every event of a request names its trace in its traceparent.
    codec = default_codec()
    for record in read_records(settings, names.events, max_records=100, timeout_s=20, idle_s=1.0):
        event = codec.decode(record.value or b"", EVENT)
        user = next(u for u, nid in sent.items() if nid == event["notification_id"])
        assert (record.header("traceparent") or b"").split(b"-")[1] == f"{traces[user]:032x}".encode()


def test_a_deferred_message_is_released_in_its_request_trace(
    settings: Settings, db_schema: tuple[Settings, str], spans: Any
) -> None:
    """A request with ``send_at`` an hour ahead waits in the router's deferred store; the router that
    releases it (its clock an hour on) writes the channel message with the context of the span that
    deferred it, so the request's one trace goes on through the wait."""
    schema = db_schema[1]
    names = topic_names(settings)
    pool = make_pool(settings, schema=schema, min_size=1, max_size=2)
    repo = UserDataRepository(pool)
    repo.put_template(Template("hello", Channel.IOS, "en", 1, title="Hi", body="Hello"))
    repo.upsert_user("later", "en", "UTC")
    repo.add_device("later", "ios", uuid.uuid4().hex * 2, "app")
    send_at = datetime.now(UTC) + timedelta(hours=1)
    request = {"user_id": "later", "template_id": "hello", "service": "shop", "category": "promo"}
    with NotificationClient(settings) as client:
        sent = client.send({**request, "channels": ["ios"], "send_at": send_at}).notification_id
    routed = settings.model_copy(update={"router_group": f"router-{uuid.uuid4().hex[:8]}"})

    def router(clock: Any = None) -> Router:
        kwargs = {} if clock is None else {"clock": clock}
        return Router(routed, lambda: connect(routed, schema=schema), repo, **kwargs)

    assert router().run(stop_when_idle=True, idle_s=2.0, max_runtime_s=120).decisions == {"routed": 1}
    later = router(lambda: datetime.now(UTC) + timedelta(hours=2))
    assert later.run(stop_when_idle=True, idle_s=2.0, max_runtime_s=120).released == 1
    pool.close()

    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    [sdk] = [
        s for s in finished if attrs(s).get("notify.notification_id") == sent and s.kind is SpanKind.PRODUCER
    ]
    [deferring] = [s for s in finished if s.name == f"process {names.requests}"]
    assert parent_of(deferring) == sdk.context.span_id
    [message] = read_records(settings, names.channel(Channel.IOS), max_records=10, timeout_s=20, idle_s=1.0)
    trace_id, span_id = (message.header("traceparent") or b"").split(b"-")[1:3]
    assert (int(trace_id, 16), int(span_id, 16)) == (sdk.context.trace_id, deferring.context.span_id)


@pytest.mark.asyncio
async def test_an_api_call_is_where_its_request_trace_starts(api_env: ApiEnv, spans: Any) -> None:
    """``POST /v1/notifications`` is a SERVER span (continuing the caller's ``traceparent``) and the
    parent of the SDK ``send`` span its handler makes; the request record carries that send span."""
    env = api_env
    key = env.key("shop")
    env.users("ann")
    caller_trace, caller_span = "ab" * 16, "cd" * 8
    headers = {**env.auth(key), "traceparent": f"00-{caller_trace}-{caller_span}-01"}
    body = {"user_id": "ann", "template_id": "hello", "category": "promo"}
    async with env.http.post(f"{env.url}/v1/notifications", json=body, headers=headers) as response:
        assert response.status == 202
        sent = (await response.json())["notification_id"]

    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    server = one(
        [s for s in finished if s.kind is SpanKind.SERVER and s.name == "POST /v1/notifications"], "API"
    )
    [sdk] = [
        s for s in finished if attrs(s).get("notify.notification_id") == sent and s.kind is SpanKind.PRODUCER
    ]
    assert (server.context.trace_id, parent_of(server)) == (int(caller_trace, 16), int(caller_span, 16))
    assert (attrs(server)["http.route"], attrs(server)["http.response.status_code"]) == (
        "/v1/notifications",
        202,
    )
    assert parent_of(sdk) == server.context.span_id
    topic = topic_names(env.settings).requests
    [record] = read_records(env.settings, topic, max_records=10, timeout_s=20, idle_s=1.0)
    assert record.header("traceparent") == f"00-{caller_trace}-{sdk.context.span_id:016x}-01".encode()
