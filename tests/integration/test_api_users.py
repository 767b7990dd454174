"""Contact gathering and preferences through the HTTP API on the real stack: devices, e-mail and
phone validated by the libraries, preferences and quiet hours, each change announced to routers."""

from __future__ import annotations

from typing import Any

import pytest

from api.keys import Scope
from notify_core.codec import USER_CHANGE, default_codec
from notify_core.records import read_records
from notify_core.topics import topic_names
from tests.api_harness import ApiEnv, api_env

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
__all__ = ["api_env"]


def changes(env: ApiEnv) -> list[dict[str, Any]]:
    codec = default_codec()
    topic = topic_names(env.settings).user_changes
    records = read_records(env.settings, topic, max_records=1000, timeout_s=10, idle_s=1.5)
    return [codec.decode(r.value or b"", USER_CHANGE) for r in records]


async def call(env: ApiEnv, method: str, path: str, key: str, json: Any = None) -> tuple[int, Any]:
    async with env.http.request(method, f"{env.url}{path}", json=json, headers=env.auth(key)) as response:
        data = await response.json() if response.content_length != 0 and response.status != 204 else None
        return response.status, data


async def test_user_devices_contacts_and_preferences_round_trip(api_env: ApiEnv) -> None:
    """Create a user, register a device (again: same id, 200), set e-mail and phone (normalised),
    opt out of marketing e-mail, set quiet hours; GET shows it all; every change was announced."""
    key = api_env.key(scopes=[Scope.CONTACTS])
    assert (await call(api_env, "PUT", "/v1/users/ann", key, {"locale": "fr", "time_zone": "Europe/Paris"}))[
        0
    ] == 200
    status, device = await call(
        api_env, "POST", "/v1/users/ann/devices", key, {"platform": "ios", "token": "a" * 64, "app": "shop"}
    )
    assert status == 201
    again, same = await call(
        api_env, "POST", "/v1/users/ann/devices", key, {"platform": "ios", "token": "a" * 64, "app": "shop"}
    )
    assert (again, same["device_id"]) == (200, device["device_id"])
    assert (await call(api_env, "PUT", "/v1/users/ann/email", key, {"address": "Ann@Example.COM"}))[0] == 200
    assert (await call(api_env, "PUT", "/v1/users/ann/phone", key, {"number": "+44 20 7946 0958"}))[0] == 200
    status, prefs = await call(
        api_env,
        "PATCH",
        "/v1/users/ann/preferences",
        key,
        {
            "choices": [{"category": "marketing", "channel": "email", "opted_in": False}],
            "quiet_hours": {"start": "22:00", "end": "07:00"},
        },
    )
    assert status == 200
    assert prefs["choices"] == [{"category": "marketing", "channel": "email", "opted_in": False}]
    assert prefs["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    status, user = await call(api_env, "GET", "/v1/users/ann", key)
    assert status == 200
    assert user["email"] == ["ann@example.com"]
    assert user["phone"] == ["+442079460958"]
    assert [d["device_id"] for d in user["devices"]] == [device["device_id"]]
    assert (await call(api_env, "DELETE", f"/v1/users/ann/devices/{device['device_id']}", key))[0] == 204
    assert (await call(api_env, "GET", "/v1/users/ann", key))[1]["devices"] == []
    status, prefs = await call(api_env, "GET", "/v1/users/ann/preferences", key)
    assert status == 200
    assert prefs["time_zone"] == "Europe/Paris"
    assert prefs["choices"] == [{"category": "marketing", "channel": "email", "opted_in": False}]
    assert (await call(api_env, "DELETE", "/v1/users/ann/email", key))[0] == 204
    assert (await call(api_env, "DELETE", "/v1/users/ann/phone", key))[0] == 204
    assert (await call(api_env, "DELETE", "/v1/users/ann/phone", key))[0] == 404
    status, user = await call(api_env, "GET", "/v1/users/ann", key)
    assert (user["email"], user["phone"]) == ([], [])
    announced = [c["user_id"] for c in changes(api_env)]
    assert announced.count("ann") == 9


@pytest.mark.parametrize(
    ("path", "body", "pointer"),
    [
        ("/v1/users/ann/phone", {"number": "12"}, "/number"),
        ("/v1/users/ann/phone", {"number": "+1 555 0100 ext 4"}, "/number"),
        ("/v1/users/ann/email", {"address": "not an address"}, "/address"),
        ("/v1/users/ann/devices", {"platform": "windows", "token": "t", "app": "a"}, "/platform"),
        ("/v1/users/ann/devices", {"platform": "ios", "token": "t"}, "/app"),
        (
            "/v1/users/ann/preferences",
            {"choices": [{"category": "x", "channel": "fax", "opted_in": 1}]},
            "/choices/0/channel",
        ),
        ("/v1/users/ann/preferences", {"quiet_hours": {"start": "07:00", "end": "07:00"}}, "/quiet_hours"),
    ],
)
async def test_invalid_contacts_are_422_naming_the_field(
    api_env: ApiEnv, path: str, body: dict[str, Any], pointer: str
) -> None:
    """An invalid phone, e-mail, platform, channel or quiet hours: 422 whose first error names it."""
    key = api_env.key(scopes=[Scope.CONTACTS])
    assert (await call(api_env, "PUT", "/v1/users/ann", key, {}))[0] == 200
    method = "PATCH" if path.endswith("preferences") else ("POST" if path.endswith("devices") else "PUT")
    status, problem = await call(api_env, method, path, key, body)
    assert status == 422
    assert problem["errors"][0]["pointer"] == pointer


async def test_unknown_user_and_device_are_404_and_scope_is_enforced(api_env: ApiEnv) -> None:
    """Contacts of an unknown user are 404; another user's device is 404; a send-only key is 403."""
    key = api_env.key(scopes=[Scope.CONTACTS])
    assert (
        await call(
            api_env, "POST", "/v1/users/nobody/devices", key, {"platform": "ios", "token": "t", "app": "a"}
        )
    )[0] == 404
    assert (await call(api_env, "GET", "/v1/users/nobody/preferences", key))[0] == 404
    assert (await call(api_env, "PUT", "/v1/users/bob", key, {}))[0] == 200
    assert (await call(api_env, "DELETE", "/v1/users/bob/devices/999999", key))[0] == 404
    send_only = api_env.key(scopes=[Scope.SEND])
    assert (await call(api_env, "GET", "/v1/users/bob", send_only))[0] == 403
