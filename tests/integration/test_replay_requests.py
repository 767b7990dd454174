"""A request dead-lettered by the router and replayed once fixed is routed, not taken for a duplicate."""

from __future__ import annotations

import asyncio

import pytest

from consumers.delivery.dead_letters import Selection, read_letters, replay
from notify_core.codec import DEAD_LETTER
from notify_core.topics import Channel, topic_names
from notify_core.userdata.models import Template
from producer import NotificationClient
from tests.integration.test_router import RouterEnv, add_full_user, request
from tests.integration.test_router import env as env

pytestmark = pytest.mark.integration


def test_a_rejected_request_replayed_after_the_fix_is_routed(env: RouterEnv) -> None:
    """Dedupe keys are recorded only for requests that routed or were suppressed: a request whose
    template failed (a missing parameter) is dead-lettered without them, so once the template is
    fixed, `notify dlq replay requests` routes it instead of suppressing it as a duplicate."""
    add_full_user(env.repo, "u-replay", locale="en")
    env.repo.put_template(
        Template(
            "receipt", Channel.EMAIL, "en", 1, email_subject="Receipt {{ order }}", email_text="{{ order }}"
        )
    )
    with NotificationClient(env.settings) as client:
        client.send(request("u-replay", template_id="receipt", channels=["email"], idempotency_key="o-1"))
    env.run()
    [letter] = env.read(topic_names(env.settings).requests_dlq, DEAD_LETTER)
    assert letter["error_type"] == "missing_param"
    assert env.channel(Channel.EMAIL) == []

    env.repo.put_template(
        Template("receipt", Channel.EMAIL, "en", 2, email_subject="Receipt", email_text="Thanks {{ name }}")
    )
    letters = read_letters(env.settings, "requests", Selection(reason="missing_param"))
    assert asyncio.run(replay(env.settings, "requests", letters, None)) == 1
    env.run()
    [email] = env.channel(Channel.EMAIL)
    assert email["email_text"] == "Thanks Ada"
    suppressed = [e for e in env.events() if e["event_type"] == "SUPPRESSED" and e["reason"] == "duplicate"]
    assert suppressed == []
