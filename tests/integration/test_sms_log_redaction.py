"""One SMS through SmsAdapter to the SNS sandbox with every logger at DEBUG: the number and the text
never reach the log output (botocore prints a Publish's parameters at DEBUG). Needs no Kafka."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from consumers.delivery.outcome import Status
from consumers.delivery.sms import SmsAdapter
from notify_core.logs import configure_logging, mask
from sandboxes.sns import SnsSandbox

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

PHONE = "+12015550163"  # NANP 555-01xx: fictional
CODE = "861204"
TEXT = f"Ada, your sign-in code is {CODE}"


@pytest.fixture
def sandbox() -> Iterator[SnsSandbox]:
    with SnsSandbox.run_in_thread(port=0) as box:
        yield box


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    # caplog's handler sits on the root logger, where configure_logging puts its filter.
    caplog.set_level(logging.DEBUG)
    configure_logging("DEBUG")
    yield caplog
    structlog.reset_defaults()


async def test_debug_logs_of_an_sms_send_show_neither_the_number_nor_the_text(
    sandbox: SnsSandbox, debug_logging: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    adapter = SmsAdapter(
        endpoint_url=sandbox.endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
        sender_id="NOTIFY",
    )
    try:
        outcome = await adapter.send(
            {"delivery_id": "d-redact", "target": PHONE, "sms_text": TEXT, "category": "security"}
        )
    finally:
        await adapter.close()
    assert outcome.status is Status.SENT
    assert [r.target for r in sandbox.recorder.all()] == [PHONE]  # it did go out, number and all

    logged = debug_logging.text
    everything = logged + "".join(capfd.readouterr())
    for secret in (PHONE, PHONE.removeprefix("+"), PHONE.replace("+", "%2B"), CODE, "sign-in code"):
        assert secret not in everything
    # botocore's request line was logged, with the parameters masked rather than dropped.
    assert "Making request for OperationModel(name=Publish)" in logged
    assert f"'PhoneNumber': '{mask(PHONE)}'" in logged
    assert f"'Message': '{mask(TEXT)}'" in logged
