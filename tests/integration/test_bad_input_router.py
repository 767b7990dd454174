"""Hostile requests produced straight onto the requests topic, bypassing the SDK's validation.

Each class that used to stop the router for good (a NUL that PostgreSQL refuses, a ~1 MB request
whose dead letter the broker refused, a year-9999 ``send_at`` that overflowed quiet-hours maths,
templates that never finish or blow up memory) is dead-lettered with a clear reason, the valid
requests behind it are routed, and a restart routes what comes next without touching them again.
A router busy in a runaway render stops promptly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import pytest

from notify_core.codec import DEAD_LETTER, REQUEST, default_codec
from notify_core.db.connect import schema_url
from notify_core.kafka_clients import make_producer
from notify_core.request_model import NotificationRequest
from notify_core.topics import Channel, topic_names
from notify_core.userdata.models import Template
from tests.integration.test_router import RouterEnv, add_full_user
from tests.integration.test_router import env as env
from tests.pipeline import wait_for_members

pytestmark = pytest.mark.integration

LOOP_BOMB = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x"
MULTIPLY_BOMB = "{{ 'x' * 50000000 }}"


def avro_request(user_id: str, **overrides: Any) -> dict[str, Any]:
    """A request record as it sits on the topic, not checked by the model."""
    base = NotificationRequest.parse(
        {
            "user_id": "placeholder",
            "template_id": "welcome",
            "service": "signup",
            "category": "account",
            "channels": ["email"],
            "params": {"name": "Ada"},
        }
    ).to_avro()
    return {**base, "user_id": user_id, "notification_id": str(uuid.uuid4()), **overrides}


def produce_raw(env: RouterEnv, values: list[bytes], key: bytes = b"hostile") -> None:
    producer = make_producer(env.settings)
    for value in values:
        producer.produce(topic_names(env.settings).requests, key=key, value=value)
    assert producer.flush(30) == 0


def bomb_templates(env: RouterEnv) -> None:
    for template_id, source in (("loop-bomb", LOOP_BOMB), ("multiply-bomb", MULTIPLY_BOMB)):
        env.repo.put_template(
            Template(template_id, Channel.EMAIL, "en", 1, email_subject="Hi", email_text=source)
        )


def test_hostile_requests_are_dead_lettered_and_valid_ones_behind_them_routed(env: RouterEnv) -> None:
    """Seven hostile classes, each followed by a valid request: seven letters, seven e-mails."""
    codec = default_codec()
    add_full_user(env.repo, "u-ok", locale="en")
    env.repo.upsert_user("u-tokyo", "en", "Asia/Tokyo")
    env.repo.add_phone("u-tokyo", "+12015550199")
    env.repo.set_quiet_hours("u-tokyo", clock_time(0, 0), clock_time(23, 59))
    bomb_templates(env)
    hostile: list[tuple[bytes, str]] = [
        (codec.encode(REQUEST, avro_request("u\x00nul")), "invalid_request"),
        (codec.encode(REQUEST, avro_request("u-ok", idempotency_key="k\x00")), "invalid_request"),
        (
            codec.encode(REQUEST, avro_request("u-ok", params={f"p{i}": "y" * 9000 for i in range(100)})),
            "invalid_request",
        ),
        (
            codec.encode(
                REQUEST,
                avro_request("u-tokyo", channels=["SMS"], send_at=datetime(9999, 12, 31, 23, tzinfo=UTC)),
            ),
            "invalid_request",
        ),
        (codec.encode(REQUEST, avro_request("u-ok", template_id="loop-bomb")), "template_limit"),
        (codec.encode(REQUEST, avro_request("u-ok", template_id="multiply-bomb")), "template_limit"),
        (b"\xc3\x01 garbage", "decode_error"),
    ]
    values: list[bytes] = []
    for value, _ in hostile:
        values += [value, codec.encode(REQUEST, avro_request("u-ok"))]
    produce_raw(env, values)

    stats = env.run()
    assert stats.records == len(values)
    letters = env.read(topic_names(env.settings).requests_dlq, DEAD_LETTER)
    assert Counter(letter["error_type"] for letter in letters) == Counter(r for _, r in hostile)
    assert all(len(letter["error_message"]) < 5000 for letter in letters)
    assert len(env.channel(Channel.EMAIL)) == len(hostile)

    produce_raw(env, [codec.encode(REQUEST, avro_request("u-ok")) for _ in range(2)])
    again = env.run()  # a restart: only the new requests are read
    assert again.records == 2
    assert len(env.channel(Channel.EMAIL)) == len(hostile) + 2


def test_sigterm_during_a_runaway_render_stops_the_router_promptly(env: RouterEnv, tmp_path: Path) -> None:
    """Twenty loop-bomb requests take twenty 1 s render limits; SIGTERM during them stops the router within
    seconds, and the restarted router dead-letters them all and routes the valid one behind them."""
    codec = default_codec()
    add_full_user(env.repo, "u-ok", locale="en")
    bomb_templates(env)
    bombs = [codec.encode(REQUEST, avro_request("u-ok", template_id="loop-bomb")) for _ in range(20)]
    produce_raw(env, [*bombs, codec.encode(REQUEST, avro_request("u-ok"))])
    child_env = {
        **os.environ,
        "NOTIFY_KAFKA_BOOTSTRAP": env.settings.kafka_bootstrap,
        "NOTIFY_TOPIC_PREFIX": env.settings.topic_prefix,
        "NOTIFY_ROUTER_GROUP": env.settings.router_group,
        "NOTIFY_DATABASE_URL": schema_url(env.settings, env.schema),
    }
    log = tmp_path / "router.log"
    with log.open("wb") as out:
        router = subprocess.Popen(
            [sys.executable, "-m", "notify_cli", "router", "run"], env=child_env, stdout=out, stderr=out
        )
    try:
        wait_for_members(env.settings, env.settings.router_group, 1)
        time.sleep(2)  # a couple of renders into the batch (it takes 20 s+)
        assert router.poll() is None, log.read_text()[-2000:]
        router.send_signal(signal.SIGTERM)
        began = time.monotonic()
        code = router.wait(30)
        stopped_in = time.monotonic() - began
    finally:
        if router.poll() is None:
            router.kill()
    assert code == 0, log.read_text()[-2000:]
    assert "router_batch_interrupted" in log.read_text(), "the signal did not land during the renders"
    # Without the interrupt the renders left would take 14 s or more; 5 s is the shutdown grace.
    assert stopped_in < 5, f"SIGTERM took {stopped_in:.1f}s"

    env.run()
    letters = env.read(topic_names(env.settings).requests_dlq, DEAD_LETTER)
    assert Counter(letter["error_type"] for letter in letters) == {"template_limit": 20}
    assert len(env.channel(Channel.EMAIL)) == 1
    print(f"\nSIGTERM during a runaway render: the router exited in {stopped_in:.2f}s")


def test_a_request_whose_output_the_broker_refuses_is_narrowed_down_and_dead_lettered(env: RouterEnv) -> None:
    """A request rendered into a 2 MB e-mail (the broker would refuse it) makes its batch fail; the
    batch is halved until that one request is alone, which is dead-lettered as output_too_large,
    and every other request of the batch is routed exactly once."""
    codec = default_codec()
    add_full_user(env.repo, "u-ok", locale="en")
    loop = "{% for i in range(32) %}{{ big }}{% endfor %}"
    env.repo.put_template(
        Template("huge", Channel.EMAIL, "en", 1, email_subject="Hi", email_html=loop, email_text=loop)
    )
    huge = avro_request("u-ok", template_id="huge", params={"big": "\N{GRINNING FACE}" * 8000})
    values = [codec.encode(REQUEST, avro_request("u-ok")) for _ in range(5)]
    values.insert(2, codec.encode(REQUEST, huge))
    produce_raw(env, values)

    stats = env.run()
    assert stats.internal_errors == 1
    [letter] = env.read(topic_names(env.settings).requests_dlq, DEAD_LETTER)
    assert letter["error_type"] == "output_too_large"
    assert "bytes, over 900000" in letter["error_message"]
    assert len(env.channel(Channel.EMAIL)) == 5
