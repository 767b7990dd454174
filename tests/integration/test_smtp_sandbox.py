"""The e-mail adapter against the SMTP sandbox on loopback: real SMTP, real STARTTLS, no mocks.

Needs no Kafka. Every reply the sandbox can inject is checked as the Outcome the worker acts on, and
the pool is checked for what it promises: bounded, reused, and healed after a dropped connection.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr

from consumers.delivery.email import EmailAdapter, message_id_for
from consumers.delivery.outcome import Outcome, Status
from notify_core.settings import Settings
from notify_core.topics import Channel
from notify_core.tracking import Purpose, TrackedDelivery, TrackingSigner
from sandboxes.smtp import DROP, REPLIES, STALL, SmtpSandbox

pytestmark = pytest.mark.integration

SIGNER = TrackingSigner(tracking_secrets=["integration-tracking"], unsubscribe_secrets=["integration-unsub"])
BASE_URL = "https://notify.example.com"
SENDER = "Notify <no-reply@notify.example.com>"
TARGET = "bob@example.org"
USER, PASSWORD = "relay-user", "relay-password"
# The sandbox's reply texts: 5.1.1, 5.1.6 and 5.1.3 say the mailbox is gone; 5.2.2 and 5.7.1 do not.
DEACTIVATES = {"550", "551", "553"}

MakeAdapter = Callable[..., EmailAdapter]


def channel_message(delivery_id: str = "d-1", target: str = TARGET, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "delivery_id": delivery_id,
        "notification_id": "n-1",
        "user_id": "user-7",
        "category": "marketing",
        "target": target,
        "email_subject": "Grüße: your weekly digest",
        "email_text": "Hello Bob,\nhere is your digest.\n",
        "email_html": "<p>Hello Bob,</p><p>here is your <b>digest</b>.</p>",
        "expires_at": None,
        "created_at": dt.datetime.now(dt.UTC),
    }
    return base | extra


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("smtp-tls")


@pytest.fixture
def sandbox(cert_dir: Path) -> Iterator[SmtpSandbox]:
    with SmtpSandbox.run_in_thread(cert_dir=cert_dir) as smtp:
        yield smtp


@pytest_asyncio.fixture
async def make_adapter() -> AsyncIterator[MakeAdapter]:
    made: list[EmailAdapter] = []

    def make(sandbox: SmtpSandbox, **overrides: Any) -> EmailAdapter:
        kwargs: dict[str, Any] = {
            "host": sandbox.host,
            "port": sandbox.port,
            "sender": SENDER,
            "public_base_url": BASE_URL,
            "signer": SIGNER,
            "start_tls": True,
            "ca_file": sandbox.ca_path,
            "pool_size": 4,
            "timeout_s": 5.0,
            "local_hostname": "worker.notify.test",
        }
        adapter = EmailAdapter(**(kwargs | overrides))
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.close()


# --- success --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_success_over_starttls_records_both_parts(
    sandbox: SmtpSandbox, make_adapter: MakeAdapter
) -> None:
    outcome = await make_adapter(sandbox).send(channel_message())
    assert outcome == Outcome.sent(message_id_for("d-1", "notify.example.com"))
    [received] = sandbox.recorder.all()
    assert (received.target, received.answered) == (TARGET, "ok")
    payload, headers = received.payload, received.headers
    assert payload["subject"] == "Grüße: your weekly digest"
    assert payload["message_id"] == outcome.provider_message_id
    assert payload["text"] == "Hello Bob,\nhere is your digest.\n"
    assert payload["html"] == "<p>Hello Bob,</p><p>here is your <b>digest</b>.</p>\n"
    # RFC 8058: a raw https URI in angle brackets, and the One-Click marker.
    unsubscribe = payload["list_unsubscribe"]
    assert unsubscribe.startswith(f"<{BASE_URL}/t/unsubscribe/")
    assert unsubscribe.endswith(">")
    assert SIGNER.verify(Purpose.UNSUBSCRIBE, unsubscribe[1:-1].rpartition("/")[2]) == TrackedDelivery(
        delivery_id="d-1",
        notification_id="n-1",
        user_id="user-7",
        service="",  # the message names none
        channel=Channel.EMAIL,
        category="marketing",
    )
    assert payload["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    assert headers["x-sandbox-tls"] == "yes"
    assert headers["mail_from"] == "no-reply@notify.example.com"
    assert headers["to"] == TARGET
    assert headers["content-type"].startswith("multipart/alternative")


@pytest.mark.asyncio
async def test_transactional_mail_has_no_unsubscribe(sandbox: SmtpSandbox, make_adapter: MakeAdapter) -> None:
    assert (await make_adapter(sandbox).send(channel_message(category="security"))).status is Status.SENT
    [received] = sandbox.recorder.delivered()
    assert received.payload["list_unsubscribe"] is None
    assert received.payload["list_unsubscribe_post"] is None


@pytest.mark.asyncio
async def test_plain_smtp_without_starttls(sandbox: SmtpSandbox, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(sandbox, start_tls=False, ca_file=None)
    assert (await adapter.send(channel_message())).status is Status.SENT
    assert sandbox.recorder.delivered()[0].headers["x-sandbox-tls"] == "no"


@pytest.mark.asyncio
async def test_login_after_starttls(cert_dir: Path, make_adapter: MakeAdapter) -> None:
    credentials = (USER, PASSWORD)
    with SmtpSandbox.run_in_thread(cert_dir=cert_dir, require_starttls=True, credentials=credentials) as smtp:
        adapters = [
            make_adapter(smtp, username=USER, password=PASSWORD),
            make_adapter(smtp, username=USER, password="wrong"),
            make_adapter(smtp),
        ]
        good = await adapters[0].send(channel_message())
        assert good.status is Status.SENT
        assert smtp.recorder.delivered()[0].headers["x-sandbox-auth"] == USER
        bad = await adapters[1].send(channel_message("d-2"))
        assert (bad.status, bad.reason, bad.deactivate_target) == (Status.PERMANENT, "535", False)
        anonymous = await adapters[2].send(channel_message("d-3"))
        assert (anonymous.status, anonymous.reason) == (Status.PERMANENT, "530")  # 5.7.0 auth required
        assert len(smtp.recorder.all()) == 1
        # Say goodbye (QUIT) while this sandbox still runs.
        await asyncio.gather(*(adapter.close() for adapter in adapters))


@pytest.mark.asyncio
async def test_from_settings(sandbox: SmtpSandbox, make_adapter: MakeAdapter) -> None:
    """from_settings signs the unsubscribe link under unsubscribe_secret, below public_base_url."""
    settings = Settings(
        smtp_host=sandbox.host,
        smtp_port=sandbox.port,
        smtp_start_tls=True,
        smtp_pool_size=2,
        smtp_timeout_s=5.0,
        email_from=SENDER,
        public_base_url=BASE_URL,
        unsubscribe_secret=SecretStr("from-settings-secret"),
    )
    adapter = EmailAdapter.from_settings(settings, ca_file=sandbox.ca_path, local_hostname="w.test")
    try:
        assert (await adapter.send(channel_message())).status is Status.SENT
    finally:
        await adapter.close()
    base, _, token = sandbox.recorder.delivered()[0].payload["list_unsubscribe"][1:-1].rpartition("/")
    assert base == f"{BASE_URL}/t/unsubscribe"
    assert TrackingSigner.from_settings(settings).verify(Purpose.UNSUBSCRIBE, token).user_id == "user-7"


@pytest.mark.asyncio
async def test_expired_message_is_not_sent(sandbox: SmtpSandbox, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(sandbox)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    outcome = await adapter.send(channel_message(expires_at=past))
    assert (outcome.status, outcome.reason) == (Status.PERMANENT, "expired")
    assert sandbox.recorder.all() == []
    assert sandbox.connections_opened == 0


# --- injected replies -----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("code", sorted(REPLIES))
async def test_every_reply_then_recovery(code: str, sandbox: SmtpSandbox, make_adapter: MakeAdapter) -> None:
    """4xx is a retry and 5xx permanent; after a refusal the same connection carries the next message."""
    adapter = make_adapter(sandbox)
    sandbox.faults.add(code, target=TARGET)
    outcome = await adapter.send(channel_message())
    expected = Status.RETRY if code.startswith("4") else Status.PERMANENT
    assert (outcome.status, outcome.reason, outcome.deactivate_target) == (
        expected,
        code,
        code in DEACTIVATES,
    )
    assert outcome.detail == f"SMTP {REPLIES[code]}"
    sandbox.faults.clear()
    assert (await adapter.send(channel_message("d-2"))).status is Status.SENT
    assert [r.answered for r in sandbox.recorder.all()] == [code, "ok"]
    closes = code == "421"  # "closing transmission channel": both sides hang up
    assert sandbox.connections_opened == (2 if closes else 1)


@pytest.mark.asyncio
async def test_policy_refusal_does_not_deactivate(sandbox: SmtpSandbox, make_adapter: MakeAdapter) -> None:
    sandbox.faults.add("550 5.7.1 Message rejected as spam", target=TARGET)
    outcome = await make_adapter(sandbox).send(channel_message())
    assert (outcome.status, outcome.reason, outcome.deactivate_target) == (Status.PERMANENT, "550", False)


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "status"), [("data:451", Status.RETRY), ("data:554", Status.PERMANENT)])
async def test_refusal_after_data(
    fault: str, status: Status, sandbox: SmtpSandbox, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(sandbox)
    sandbox.faults.add(fault, target=TARGET, times=1)
    outcome = await adapter.send(channel_message())
    assert (outcome.status, outcome.reason) == (status, fault.removeprefix("data:"))
    assert (await adapter.send(channel_message("d-2"))).status is Status.SENT
    assert [r.answered for r in sandbox.recorder.all()] == [fault, "ok"]
    assert sandbox.connections_opened == 1


@pytest.mark.asyncio
async def test_fault_for_n_times_then_heals(sandbox: SmtpSandbox, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(sandbox)
    sandbox.faults.add("451", target=TARGET, times=2)
    outcomes = [await adapter.send(channel_message(f"d-{i}")) for i in range(3)]
    assert [o.status for o in outcomes] == [Status.RETRY, Status.RETRY, Status.SENT]
    assert [r.answered for r in sandbox.recorder.all()] == ["451", "451", "ok"]
    # Faults are per address: someone else's mail was never affected.
    sandbox.faults.add("550", target=TARGET)
    other = await adapter.send(channel_message("d-9", target="alice@example.org"))
    assert other.status is Status.SENT


# --- the pool -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sequential_sends_share_one_connection(sandbox: SmtpSandbox, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(sandbox)
    for i in range(20):
        assert (await adapter.send(channel_message(f"d-{i}"))).status is Status.SENT
    assert sandbox.connections_opened == adapter.connections_opened == 1


@pytest.mark.asyncio
async def test_100_concurrent_sends_use_at_most_pool_size_connections(
    sandbox: SmtpSandbox, make_adapter: MakeAdapter
) -> None:
    adapter = make_adapter(sandbox, pool_size=4)
    outcomes = await asyncio.gather(*(adapter.send(channel_message(f"d-{i}")) for i in range(100)))
    assert all(o.status is Status.SENT for o in outcomes)
    delivered = sandbox.recorder.delivered()
    assert len(delivered) == 100
    assert len({r.payload["message_id"] for r in delivered}) == 100
    assert {o.provider_message_id for o in outcomes} == {r.payload["message_id"] for r in delivered}
    assert 1 <= sandbox.connections_opened <= 4
    assert sandbox.connections_opened == adapter.connections_opened
    assert len({r.headers["x-sandbox-connection"] for r in delivered}) == sandbox.connections_opened


@pytest.mark.asyncio
@pytest.mark.parametrize("abort", [False, True], ids=["close", "reset"])
async def test_dropped_idle_connection_is_replaced(
    abort: bool, sandbox: SmtpSandbox, make_adapter: MakeAdapter
) -> None:
    """A server that closed an idle connection costs nothing: the next send takes a new one."""
    adapter = make_adapter(sandbox)
    assert (await adapter.send(channel_message("d-1"))).status is Status.SENT
    await sandbox.drop_connections_async(abort=abort)
    assert sandbox.connections_open == 0
    assert (await adapter.send(channel_message("d-2"))).status is Status.SENT
    assert sandbox.connections_opened == adapter.connections_opened == 2
    assert [r.answered for r in sandbox.recorder.all()] == ["ok", "ok"]


@pytest.mark.asyncio
async def test_connection_dropped_mid_transaction(sandbox: SmtpSandbox, make_adapter: MakeAdapter) -> None:
    """Dropped after RCPT: a retryable connection error; the next send opens a new connection."""
    adapter = make_adapter(sandbox)
    sandbox.faults.add(DROP, target=TARGET, times=1)
    outcome = await adapter.send(channel_message())
    assert (outcome.status, outcome.reason) == (Status.RETRY, "connection_error")
    assert (await adapter.send(channel_message("d-2"))).status is Status.SENT
    assert sandbox.connections_opened == 2


@pytest.mark.asyncio
async def test_stalled_server_times_out(sandbox: SmtpSandbox, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter(sandbox, timeout_s=0.5)
    sandbox.faults.add(STALL, target=TARGET, times=1)
    started = time.monotonic()
    outcome = await adapter.send(channel_message())
    assert (outcome.status, outcome.reason) == (Status.RETRY, "timeout")
    assert time.monotonic() - started < 10  # the stall never ends: a hang guard, not a speed check
    assert (await adapter.send(channel_message("d-2"))).status is Status.SENT
    assert sandbox.connections_opened == 2  # the desynchronised connection was not reused


@pytest.mark.asyncio
async def test_unreachable_server_is_a_retry(cert_dir: Path, make_adapter: MakeAdapter) -> None:
    smtp = SmtpSandbox.run_in_thread(cert_dir=cert_dir)
    port = smtp.port
    smtp.stop()
    adapter = make_adapter(smtp, port=port, timeout_s=2.0)
    outcome = await adapter.send(channel_message())
    assert (outcome.status, outcome.reason) == (Status.RETRY, "connection_error")


@pytest.mark.asyncio
async def test_connection_dropped_before_the_client_noticed(
    sandbox: SmtpSandbox, make_adapter: MakeAdapter
) -> None:
    """The server resets an idle connection and our loop has not yet read the news: MAIL fails on it,
    nothing of the message was sent, so the same send moves to a new connection instead of retrying."""
    adapter = make_adapter(sandbox)
    assert (await adapter.send(channel_message("d-1"))).status is Status.SENT
    # Blocking on purpose: the adapter's loop must not run between the drop and the next send.
    sandbox.drop_connections(abort=True)
    assert (await adapter.send(channel_message("d-2"))).status is Status.SENT
    assert sandbox.connections_opened == adapter.connections_opened == 2
    assert [r.answered for r in sandbox.recorder.all()] == ["ok", "ok"]


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "reason"), [("data:STALL", "timeout"), ("data:DROP", "connection_error")])
async def test_no_answer_after_data_is_an_ambiguous_retry(
    fault: str, reason: str, sandbox: SmtpSandbox, make_adapter: MakeAdapter
) -> None:
    """The server has the message but we never hear so: a retry (with the same Message-ID) that is
    flagged as a possible duplicate."""
    adapter = make_adapter(sandbox, timeout_s=0.5)
    sandbox.faults.add(fault, target=TARGET, times=1)
    outcome = await adapter.send(channel_message())
    assert (outcome.status, outcome.reason) == (Status.RETRY, reason)
    assert "may have been delivered" in (outcome.detail or "")
    again = await adapter.send(channel_message())
    assert again.status is Status.SENT
    assert [r.payload["message_id"] for r in sandbox.recorder.all()] == [again.provider_message_id] * 2
