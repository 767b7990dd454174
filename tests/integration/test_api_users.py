"""Contact gathering and preferences through the HTTP API on the real stack: devices, e-mail and
phone validated by the libraries, preferences and quiet hours, each change announced to routers."""

from __future__ import annotations

import asyncio
from collections import Counter
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


def announced(env: ApiEnv) -> Counter[tuple[str, str]]:
    """How many changes were announced per (user, kind)."""
    return Counter((c["user_id"], what) for c in changes(env) for what in c["what"])


def active_rows(env: ApiEnv, table: str, user_id: str) -> int:
    with env.pool.connection() as conn:
        row = conn.execute(
            f"select count(*) from {table} where user_id = %s and active",  # noqa: S608
            (user_id,),
        ).fetchone()
    assert row is not None
    return int(row[0])


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
        ("/v1/users/ann/preferences", {"unsubscribed_channels": ["fax"]}, "/unsubscribed_channels/0"),
        ("/v1/users/ann/preferences", {"unsubscribed_channels": ["sms", "sms"]}, "/unsubscribed_channels"),
        (
            "/v1/users/ann/devices",
            {"platform": "ios", "token": "t", "app": "a", "replaces_device_id": 0},
            "/replaces_device_id",
        ),
    ],
)
async def test_invalid_contacts_are_422_naming_the_field(
    api_env: ApiEnv, path: str, body: dict[str, Any], pointer: str
) -> None:
    """An invalid phone, e-mail, platform, channel, quiet hours (start == end), unsubscribe set (an
    unknown or repeated channel) or replaced device id: 422 whose first error names it."""
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


async def test_a_patch_with_a_bad_part_changes_nothing_and_announces_nothing(api_env: ApiEnv) -> None:
    """A PATCH whose quiet hours start and end at the same time is a 422 at /quiet_hours, and its
    valid choices and unsubscribes are not stored either (GET shows the preferences as they were)
    and no change is announced; the same patch with valid quiet hours is stored whole, announced once."""
    key = api_env.key(scopes=[Scope.CONTACTS])
    assert (await call(api_env, "PUT", "/v1/users/carl", key, {}))[0] == 200
    first = {
        "choices": [{"category": "marketing", "channel": "email", "opted_in": False}],
        "quiet_hours": {"start": "22:00", "end": "07:00"},
    }
    assert (await call(api_env, "PATCH", "/v1/users/carl/preferences", key, first))[0] == 200
    before = (await call(api_env, "GET", "/v1/users/carl/preferences", key))[1]
    count = announced(api_env)[("carl", "preferences")]
    patch = {
        "choices": [
            {"category": "marketing", "channel": "email", "opted_in": True},
            {"category": "news", "channel": "sms", "opted_in": False},
        ],
        "unsubscribed_channels": ["sms"],
        "quiet_hours": {"start": "07:00", "end": "07:00"},
    }
    status, problem = await call(api_env, "PATCH", "/v1/users/carl/preferences", key, patch)
    assert status == 422
    assert [e["pointer"] for e in problem["errors"]] == ["/quiet_hours"]
    assert (await call(api_env, "GET", "/v1/users/carl/preferences", key))[1] == before
    assert announced(api_env)[("carl", "preferences")] == count

    patch["quiet_hours"] = {"start": "23:00", "end": "06:30"}
    status, after = await call(api_env, "PATCH", "/v1/users/carl/preferences", key, patch)
    assert status == 200
    assert after["choices"] == [
        {"category": "marketing", "channel": "email", "opted_in": True},
        {"category": "news", "channel": "sms", "opted_in": False},
    ]
    assert (after["unsubscribed_channels"], after["quiet_hours"]) == (
        ["sms"],
        {"start": "23:00", "end": "06:30"},
    )
    assert announced(api_env)[("carl", "preferences")] == count + 1


async def test_a_device_moved_between_users_is_announced_for_both(api_env: ApiEnv) -> None:
    """A token registered by dora, then by eve, moves to eve (201: new for her) and both users' device
    changes are announced, so no router keeps sending dora's notifications to eve's phone; eve
    registering it again (200) announces eve only."""
    key = api_env.key(scopes=[Scope.CONTACTS])
    for user in ("dora", "eve"):
        assert (await call(api_env, "PUT", f"/v1/users/{user}", key, {}))[0] == 200
    device = {"platform": "android", "token": "shared-" + "b" * 40, "app": "shop"}
    status, first = await call(api_env, "POST", "/v1/users/dora/devices", key, device)
    assert status == 201
    status, moved = await call(api_env, "POST", "/v1/users/eve/devices", key, device)
    assert (status, moved["device_id"]) == (201, first["device_id"])
    assert (await call(api_env, "GET", "/v1/users/dora", key))[1]["devices"] == []
    assert [d["device_id"] for d in (await call(api_env, "GET", "/v1/users/eve", key))[1]["devices"]] == [
        first["device_id"]
    ]
    counts = announced(api_env)
    assert (counts[("dora", "devices")], counts[("eve", "devices")]) == (2, 1)

    assert (await call(api_env, "POST", "/v1/users/eve/devices", key, device))[0] == 200
    counts = announced(api_env)
    assert (counts[("dora", "devices")], counts[("eve", "devices")]) == (2, 2)


async def test_concurrent_puts_of_an_address_leave_exactly_one_active(api_env: ApiEnv) -> None:
    """Rounds of concurrent PUT email and PUT phone calls for one user (asyncio.gather, each a
    different address) all succeed, and after each round the user has exactly one active e-mail
    address and one active phone number, one of those sent; a DELETE then removes it (204), a
    second DELETE finds none (404)."""
    key = api_env.key(scopes=[Scope.CONTACTS])
    assert (await call(api_env, "PUT", "/v1/users/fay", key, {}))[0] == 200
    for round_ in range(5):
        emails = [f"fay.{round_}.{n}@example.com" for n in range(4)]
        phones = [f"+120155501{round_ * 4 + n:02d}" for n in range(4)]
        results = await asyncio.gather(
            *(call(api_env, "PUT", "/v1/users/fay/email", key, {"address": a}) for a in emails),
            *(call(api_env, "PUT", "/v1/users/fay/phone", key, {"number": n}) for n in phones),
        )
        assert [status for status, _ in results] == [200] * 8
        assert (active_rows(api_env, "user_emails", "fay"), active_rows(api_env, "user_phones", "fay")) == (
            1,
            1,
        )
        user = (await call(api_env, "GET", "/v1/users/fay", key))[1]
        assert len(user["email"]) == 1
        assert user["email"][0] in emails
        assert len(user["phone"]) == 1
        assert user["phone"][0] in phones
    assert (await call(api_env, "DELETE", "/v1/users/fay/email", key))[0] == 204
    assert active_rows(api_env, "user_emails", "fay") == 0
    assert (await call(api_env, "DELETE", "/v1/users/fay/email", key))[0] == 404


async def test_put_user_keeps_the_fields_it_omits(api_env: ApiEnv) -> None:
    """A new user gets en / UTC; a PUT with only locale keeps the time zone, one with only time_zone
    keeps the locale, and a null field keeps its value too."""
    key = api_env.key(scopes=[Scope.CONTACTS])

    async def put(body: dict[str, Any]) -> tuple[str, str]:
        status, user = await call(api_env, "PUT", "/v1/users/gus", key, body)
        assert status == 200
        return user["locale"], user["time_zone"]

    assert await put({}) == ("en", "UTC")
    assert await put({"locale": "fr"}) == ("fr", "UTC")
    assert await put({"time_zone": "Europe/Paris"}) == ("fr", "Europe/Paris")
    assert await put({"locale": None, "time_zone": "Asia/Tokyo"}) == ("fr", "Asia/Tokyo")
    assert await put({}) == ("fr", "Asia/Tokyo")
    user = (await call(api_env, "GET", "/v1/users/gus", key))[1]
    assert (user["locale"], user["time_zone"]) == ("fr", "Asia/Tokyo")


async def test_unsubscribed_channels_are_set_replaced_and_cleared(api_env: ApiEnv) -> None:
    """unsubscribed_channels is the full new set: given, it replaces the stored set; omitted, the
    set is left as it is; [] clears it. GET shows each state."""
    key = api_env.key(scopes=[Scope.CONTACTS])
    assert (await call(api_env, "PUT", "/v1/users/hana", key, {}))[0] == 200

    async def patch(body: dict[str, Any]) -> list[str]:
        status, prefs = await call(api_env, "PATCH", "/v1/users/hana/preferences", key, body)
        assert status == 200
        got = (await call(api_env, "GET", "/v1/users/hana/preferences", key))[1]
        assert got["unsubscribed_channels"] == prefs["unsubscribed_channels"]
        return list(prefs["unsubscribed_channels"])

    assert await patch({"unsubscribed_channels": ["sms", "email"]}) == ["email", "sms"]
    assert await patch({"choices": [{"category": "news", "channel": "ios", "opted_in": False}]}) == [
        "email",
        "sms",
    ]
    assert await patch({"unsubscribed_channels": ["sms", "ios"]}) == ["ios", "sms"]
    assert await patch({"unsubscribed_channels": None}) == ["ios", "sms"]
    assert await patch({"unsubscribed_channels": []}) == []


async def test_a_rotated_device_token_replaces_the_old_device(api_env: ApiEnv) -> None:
    """POST a device with replaces_device_id: the new token is registered (201) and the old device
    deactivated with reason "replaced" in the same transaction; retrying that request answers 200
    with the same device. A device of another user, an unknown id or one removed by the API is a 422
    at /replaces_device_id, and then nothing is registered or deactivated."""
    key = api_env.key(scopes=[Scope.CONTACTS])
    for user in ("ivy", "jon"):
        assert (await call(api_env, "PUT", f"/v1/users/{user}", key, {}))[0] == 200
    old = (
        await call(
            api_env, "POST", "/v1/users/ivy/devices", key, {"platform": "ios", "token": "T1", "app": "a"}
        )
    )[1]["device_id"]
    rotated = {"platform": "ios", "token": "T2", "app": "a", "replaces_device_id": old}
    status, new = await call(api_env, "POST", "/v1/users/ivy/devices", key, rotated)
    assert status == 201
    assert new["device_id"] != old
    assert [d["device_id"] for d in (await call(api_env, "GET", "/v1/users/ivy", key))[1]["devices"]] == [
        new["device_id"]
    ]
    with api_env.pool.connection() as conn:
        row = conn.execute(
            "select active, deactivated_reason from devices where device_id = %s", (old,)
        ).fetchone()
    assert row == (False, "replaced")
    again, same = await call(api_env, "POST", "/v1/users/ivy/devices", key, rotated)
    assert (again, same["device_id"]) == (200, new["device_id"])

    jons = (
        await call(
            api_env, "POST", "/v1/users/jon/devices", key, {"platform": "ios", "token": "J1", "app": "a"}
        )
    )[1]["device_id"]
    assert (await call(api_env, "DELETE", f"/v1/users/ivy/devices/{new['device_id']}", key))[0] == 204
    for refused in (jons, 999_999, new["device_id"]):
        body = {"platform": "ios", "token": "T3", "app": "a", "replaces_device_id": refused}
        status, problem = await call(api_env, "POST", "/v1/users/ivy/devices", key, body)
        assert status == 422, refused
        assert [e["pointer"] for e in problem["errors"]] == ["/replaces_device_id"]
    assert (await call(api_env, "GET", "/v1/users/ivy", key))[1]["devices"] == []
    assert [d["device_id"] for d in (await call(api_env, "GET", "/v1/users/jon", key))[1]["devices"]] == [
        jons
    ]
    with api_env.pool.connection() as conn:
        assert conn.execute("select count(*) from devices where token = 'T3'").fetchone() == (0,)
