"""Property-based fuzzing of the HTTP API against api/openapi.json (schemathesis), on the real stack.

One server for the module, on loopback, in a thread with its own event loop (schemathesis' tests
are synchronous, so the async, function-scoped ``api_env`` cannot serve them), with its own topics
and database schema, and a key with every scope and a rate high enough that 429s do not crowd out
the rest. Each operation gets a bounded, reproducible set of cases (schemathesis' coverage phase, then
a derandomised fuzzing phase of at most MAX_EXAMPLES), positive and negative; every answer must be
no 5xx and conform to the document: a documented status code, content type, headers and schema.

Random ids and tokens would only ever meet 404s (and notifications for random users 422s), so half
the time a parameter or body field is drawn from a dictionary of things that exist: a user with a
device, contacts and preferences, a notification with a routed outcome and deliveries, and tokens
signed with the settings' own secrets (good, for a user that does not exist, and expired ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from typing import Any

import psycopg
import pytest
import requests
import schemathesis
from aiohttp import web
from confluent_kafka.admin import AdminClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.keys import KeyStore
from api.ops import openapi_document
from notify_core.db.connect import connect, make_pool
from notify_core.db.migrate import migrate
from notify_core.kafka_clients import make_admin
from notify_core.settings import Settings
from notify_core.topic_admin import apply_topics
from notify_core.topics import Channel, topic_specs
from notify_core.tracking import Purpose, TrackedDelivery, TrackingSigner
from notify_core.userdata.repository import UserDataRepository
from tests.api_harness import ALL_SCOPES, schema_settings

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 20
SEED = 20_260_101
SERVICE = "fuzz"
USER = "fuzz-user"  # made by the fixture, with a device, contacts and preferences
GHOST = "fuzz-ghost"  # never made
NOTIFICATION = "0b5f3c1e-8a4d-4f2b-9c6e-7d1a2b3c4d5e"  # a routed outcome of SERVICE's, with deliveries


def _tokens(settings: Settings) -> dict[str, list[str]]:
    """Good, ghost-user and expired tokens per purpose, signed with ``settings``' secrets."""
    now = time.time()
    signer = TrackingSigner.from_settings(settings, clock=lambda: now)
    old = TrackingSigner.from_settings(settings, clock=lambda: now - 600 * 86_400)
    tokens: dict[str, list[str]] = {}
    for purpose in Purpose:
        url = "https://example.com/offer?a=1" if purpose is Purpose.CLICK else None
        good, ghost = (
            TrackedDelivery(f"d-{user}", NOTIFICATION, user, SERVICE, Channel.EMAIL, "marketing", url)
            for user in (USER, GHOST)
        )
        tokens[purpose.value] = [
            signer.sign(purpose, good),
            signer.sign(purpose, ghost),
            old.sign(purpose, good),
        ]
    return tokens


TOKENS = _tokens(Settings())
HALF = 0.5
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "warnings": False,
        "dictionaries": {
            "users": {"values": [USER, GHOST]},
            "known-users": {"values": [USER]},
            "notifications": {"values": [NOTIFICATION]},
            "devices": {"values": [1, 2]},
            "emails": {"values": ["fuzz.two@example.com", "Fuzz.Three@EXAMPLE.com"]},
            "phones": {"values": ["+12015550124", "+1 201 555 0125"]},
            "time-zones": {"values": ["Europe/Paris", "America/Sao_Paulo"]},
            "locales": {"values": ["en", "pt-BR"]},
            **{f"token-{purpose}": {"values": values} for purpose, values in TOKENS.items()},
        },
        "parameters": {
            "path.user_id": {"dictionary": "users", "probability": HALF},
            "path.notification_id": {"dictionary": "notifications", "probability": HALF},
            "path.device_id": {"dictionary": "devices", "probability": HALF},
        },
        "operations": [
            {
                "include-name": name,
                "parameters": {where: {"dictionary": words, "probability": HALF} for where, words in bound},
            }
            for name, bound in [
                ("GET /t/click/{token}", [("path.token", "token-click")]),
                ("GET /t/open/{token}", [("path.token", "token-open")]),
                ("GET /t/unsubscribe/{token}", [("path.token", "token-unsubscribe")]),
                ("POST /t/unsubscribe/{token}", [("path.token", "token-unsubscribe")]),
                ("POST /v1/events/opened", [("body.token", "token-push_open")]),
                ("POST /v1/notifications", [("body.user_id", "known-users")]),
                ("POST /v1/notifications:batch", [("body.notifications[*].user_id", "known-users")]),
                ("PUT /v1/users/{user_id}/email", [("body.address", "emails")]),
                ("PUT /v1/users/{user_id}/phone", [("body.number", "phones")]),
                ("PUT /v1/users/{user_id}", [("body.time_zone", "time-zones"), ("body.locale", "locales")]),
            ]
        ],
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"examples": {"enabled": False}, "stateful": {"enabled": False}},
        "request-timeout": 15,
    }
)
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


@dataclass(frozen=True)
class FuzzApi:
    url: str
    headers: dict[str, str]
    session: requests.Session


@pytest.fixture(scope="module")
def fuzz_api(stack_settings: Settings) -> Iterator[FuzzApi]:
    """The API served from a background thread for the whole module, and a key for it; everything
    made here (topics, schema, loop, server) is undone in reverse order, however far setup got."""
    unique = stack_settings.model_copy(
        update={
            "topic_prefix": f"t-{uuid.uuid4().hex[:10]}",
            "topic_partitions": 1,
            "produce_timeout_s": 10.0,
        }
    )
    db_schema = f"t_{uuid.uuid4().hex[:12]}"
    with contextlib.ExitStack() as undo:
        admin = make_admin(unique)
        specs = topic_specs(unique)
        apply_topics(admin, specs)
        undo.callback(_delete_topics, admin, [s.name for s in specs])
        with connect(stack_settings) as conn:
            conn.execute(f'create schema "{db_schema}"')
            conn.commit()
        undo.callback(_drop_schema, stack_settings, db_schema)
        with connect(stack_settings, schema=db_schema) as conn:
            migrate(conn)
            conn.commit()
        configured = schema_settings(unique, db_schema, api_port=0)
        pool = make_pool(configured, max_size=1)
        undo.callback(pool.close)
        token = KeyStore(pool).create(SERVICE, ALL_SCOPES, rate_per_s=100_000.0, burst=100_000)[1]
        _existing_things(UserDataRepository(pool, cache_size=0))
        with pool.connection() as conn:
            _a_routed_notification(conn)

        loop = asyncio.new_event_loop()
        undo.callback(loop.close)
        runner = web.AppRunner(create_app(configured), access_log=None)
        loop.run_until_complete(runner.setup())
        # Run once the loop has stopped serving in its thread (callbacks run last-in first-out).
        undo.callback(lambda: loop.run_until_complete(runner.cleanup()))
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        host, port = runner.addresses[0][:2]
        thread = threading.Thread(target=loop.run_forever, name="fuzz-api", daemon=True)
        thread.start()
        undo.callback(thread.join, 10)
        undo.callback(loop.call_soon_threadsafe, loop.stop)
        session = undo.enter_context(requests.Session())
        yield FuzzApi(f"http://{host}:{port}", {"Authorization": f"Bearer {token}"}, session)


def _delete_topics(admin: AdminClient, names: list[str]) -> None:
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result()


def _drop_schema(settings: Settings, db_schema: str) -> None:
    with connect(settings) as conn:
        conn.execute(f'drop schema "{db_schema}" cascade')
        conn.commit()


def _existing_things(users: UserDataRepository) -> None:
    users.upsert_user(USER, "fr-CA", "Europe/Paris")
    assert users.add_device(USER, "ios", "device-token-1", "app.ios") == 1
    users.add_email(USER, "fuzz@example.com")
    users.add_phone(USER, "+12015550123")
    users.set_preference(USER, "marketing", Channel.EMAIL, opted_in=False)
    users.set_quiet_hours(USER, clock(22, 0), clock(7, 30))
    users.unsubscribe(USER, Channel.SMS)


def _a_routed_notification(conn: psycopg.Connection[Any]) -> None:
    now = datetime.now(UTC)
    channels = [
        {"channel": "email", "state": "routed", "delivery_id": "d-1", "reason": None, "deliver_at": None},
        {
            "channel": "ios",
            "state": "deferred",
            "delivery_id": "d-2",
            "reason": None,
            "deliver_at": (now + timedelta(hours=8)).isoformat(),
        },
        {
            "channel": "sms",
            "state": "suppressed",
            "delivery_id": None,
            "reason": "unsubscribed",
            "deliver_at": None,
        },
    ]
    conn.execute(
        "insert into router_outcomes (notification_id, service, user_id, category, template_id, outcome,"
        " reason, channels, source_partition, source_offset, decided_at)"
        " values (%s, %s, %s, 'marketing', 'welcome', 'routed', null, %s, 0, 0, %s)",
        (NOTIFICATION, SERVICE, USER, json.dumps(channels), now),
    )
    conn.execute(
        "insert into delivery_log (delivery_id, notification_id, channel, status, attempts,"
        " provider_message_id, last_error, sent_at) values"
        " ('d-1', %s, 'email', 'sent', 1, 'msg-1', null, %s),"
        " ('d-3', %s, 'email', 'retrying', 2, null, 'timeout', null)",
        (NOTIFICATION, now, NOTIFICATION),
    )


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case[Any], fuzz_api: FuzzApi) -> None:
    """Whatever schemathesis sends an operation (valid and invalid parameters, headers and bodies),
    the answer is never a 5xx, and its status code, content type, headers and body are ones the
    document declares for that operation."""
    case.call_and_validate(
        base_url=fuzz_api.url, session=fuzz_api.session, headers=fuzz_api.headers, checks=CHECKS
    )
