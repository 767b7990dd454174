"""Contact gathering and preferences: ``/v1/users/{user_id}`` and below (scope ``contacts``).

Every change is written to PostgreSQL first, in one transaction per request, then announced on the
user-changes topic (once per user it touched: a device token moved from another user is announced
for both), so every running router drops its cached copy of that user before the next message
(``notify_core.userdata.changes``). A change the broker did not acknowledge is still stored: the 503
says so, and the routers' cache TTL bounds how long they may act on the old value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aiohttp import web

from api.auth import authenticate, charge
from api.bodies import read_json, validate
from api.errors import NotFound, Unavailable, Unprocessable, field_error
from api.keys import Scope
from api.state import CHANGES, METRICS, USERS
from api.user_schemas import (
    DeviceBody,
    EmailBody,
    PhoneBody,
    PreferencesPatch,
    UserBody,
    is_user_id,
)
from notify_core.exceptions import DatabaseError, InvalidUserData, KafkaError
from notify_core.topics import Channel
from notify_core.userdata.models import QuietHours, UserContext
from notify_core.userdata.repository import KEEP, Keep, UnknownDevice

routes = web.RouteTableDef()
T = TypeVar("T")
RETRY_AFTER = {"Retry-After": "5"}


async def _db(
    request: web.Request,
    call: Callable[..., T],
    *args: Any,
    pointer: str = "",
    pointers: Mapping[type[InvalidUserData], str] | None = None,
) -> T:
    """Run a repository call off the event loop, its errors as problems: ``InvalidUserData`` as a
    422 at ``pointer``, or at the pointer ``pointers`` gives for its kind."""
    try:
        return await asyncio.to_thread(call, *args)
    except InvalidUserData as exc:
        where = next((p for kind, p in (pointers or {}).items() if isinstance(exc, kind)), pointer)
        raise Unprocessable(errors=[field_error(where, str(exc))]) from None
    except DatabaseError:
        raise Unavailable("the user store did not answer", headers=RETRY_AFTER) from None


async def _announce(request: web.Request, user_id: str, what: str) -> None:
    try:
        await request.app[CHANGES].publish(user_id, [what])
    except (KafkaError, TimeoutError):
        raise Unavailable(
            "the change is stored, but the routers could not be told at once: they apply it within"
            " their cache time; retry to tell them now",
            headers=RETRY_AFTER,
        ) from None
    request.app[METRICS].change_published()


async def _user(request: web.Request) -> tuple[str, UserContext]:
    key = await authenticate(request, Scope.CONTACTS)
    charge(request, key, 1)
    user_id = request.match_info["user_id"]
    if not is_user_id(user_id):
        raise NotFound("no such user")
    context = await _db(request, request.app[USERS].get_context, user_id)
    if context is None:
        raise NotFound("no such user: create it with PUT /v1/users/{user_id}", slug="unknown-user")
    return user_id, context


def _user_json(context: UserContext) -> dict[str, Any]:
    return {
        "user_id": context.user.user_id,
        "locale": context.user.locale,
        "time_zone": context.user.time_zone,
        "devices": [
            {"device_id": d.device_id, "platform": d.platform.value, "app": d.app} for d in context.devices
        ],
        "email": [c.address for c in context.contacts if c.channel is Channel.EMAIL],
        "phone": [c.address for c in context.contacts if c.channel is Channel.SMS],
    }


@routes.put("/v1/users/{user_id}")
async def put_user(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.CONTACTS)
    charge(request, key, 1)
    user_id = request.match_info["user_id"]
    if not is_user_id(user_id):
        raise Unprocessable(
            errors=[field_error("", "user_id must be 1-128 visible characters, no '/' and no invisible ones")]
        )
    body = validate(UserBody, await read_json(request))
    users = request.app[USERS]
    await _db(request, users.upsert_user, user_id, body.locale, body.time_zone)  # None: kept
    await _announce(request, user_id, "user")
    context = await _db(request, users.get_context, user_id)
    assert context is not None
    return web.json_response(_user_json(context))


@routes.get("/v1/users/{user_id}")
async def get_user(request: web.Request) -> web.Response:
    _, context = await _user(request)
    return web.json_response(_user_json(context))


@routes.post("/v1/users/{user_id}/devices")
async def post_device(request: web.Request) -> web.Response:
    user_id, context = await _user(request)
    body = validate(DeviceBody, await read_json(request))
    known = {d.device_id for d in context.devices}
    device_id, previous_owner = await _db(
        request,
        lambda: request.app[USERS].register_device(
            user_id, body.platform, body.token, body.app, replaces=body.replaces_device_id
        ),
        pointers={UnknownDevice: "/replaces_device_id"},
    )
    await _announce(request, user_id, "devices")
    if previous_owner is not None:
        await _announce(request, previous_owner, "devices")
    return web.json_response(
        {"device_id": device_id, "platform": body.platform, "app": body.app},
        status=200 if device_id in known else 201,
    )


@routes.delete("/v1/users/{user_id}/devices/{device_id}")
async def delete_device(request: web.Request) -> web.Response:
    user_id, context = await _user(request)
    wanted = request.match_info["device_id"]
    device = next((d for d in context.devices if str(d.device_id) == wanted), None)
    if device is None:
        raise NotFound("this user has no such active device")
    await _db(request, request.app[USERS].deactivate_device, device.device_id, "removed_by_api")
    await _announce(request, user_id, "devices")
    return web.Response(status=204)


@routes.put("/v1/users/{user_id}/email")
async def put_email(request: web.Request) -> web.Response:
    return await _set(request, Channel.EMAIL)


@routes.put("/v1/users/{user_id}/phone")
async def put_phone(request: web.Request) -> web.Response:
    return await _set(request, Channel.SMS)


@routes.delete("/v1/users/{user_id}/email")
async def delete_email(request: web.Request) -> web.Response:
    return await _remove(request, Channel.EMAIL)


@routes.delete("/v1/users/{user_id}/phone")
async def delete_phone(request: web.Request) -> web.Response:
    return await _remove(request, Channel.SMS)


async def _set(request: web.Request, channel: Channel) -> web.Response:
    """One address per channel: setting one retires the others, in one transaction."""
    user_id, _ = await _user(request)
    if channel is Channel.EMAIL:
        value, field = validate(EmailBody, await read_json(request)).address, "/address"
    else:
        value, field = validate(PhoneBody, await read_json(request)).number, "/number"
    contact_id = await _db(request, request.app[USERS].set_contact, user_id, channel, value, pointer=field)
    await _announce(request, user_id, "contacts")
    return web.json_response({"contact_id": contact_id})


async def _remove(request: web.Request, channel: Channel) -> web.Response:
    user_id, _ = await _user(request)
    removed = await _db(request, request.app[USERS].remove_contacts, user_id, channel, "removed_by_api")
    if not removed:
        raise NotFound(f"this user has no {'e-mail address' if channel is Channel.EMAIL else 'phone number'}")
    await _announce(request, user_id, "contacts")
    return web.Response(status=204)


def _preferences_json(context: UserContext) -> dict[str, Any]:
    prefs = context.preferences
    quiet = prefs.quiet_hours
    return {
        "user_id": context.user.user_id,
        "time_zone": context.user.time_zone,
        "choices": [
            {"category": category, "channel": channel.value, "opted_in": opted_in}
            for (category, channel), opted_in in sorted(prefs.choices.items())
        ],
        "unsubscribed_channels": sorted(c.value for c in prefs.unsubscribed),
        "quiet_hours": None
        if quiet is None
        else {"start": quiet.start.isoformat("minutes"), "end": quiet.end.isoformat("minutes")},
    }


@routes.get("/v1/users/{user_id}/preferences")
async def get_preferences(request: web.Request) -> web.Response:
    _, context = await _user(request)
    return web.json_response(_preferences_json(context))


@routes.patch("/v1/users/{user_id}/preferences")
async def patch_preferences(request: web.Request) -> web.Response:
    user_id, _ = await _user(request)
    body = validate(PreferencesPatch, await read_json(request))
    users = request.app[USERS]
    quiet: QuietHours | Keep | None = KEEP
    if "quiet_hours" in body.model_fields_set:
        given = body.quiet_hours
        quiet = None if given is None else QuietHours(given.start, given.end)
    unsubscribed = body.unsubscribed_channels
    # The whole patch in one transaction (the model has refused what the repository would).
    await _db(
        request,
        lambda: users.update_preferences(
            user_id,
            [(c.category, Channel(c.channel), c.opted_in) for c in body.choices],
            quiet_hours=quiet,
            unsubscribed=None if unsubscribed is None else [Channel(c) for c in unsubscribed],
        ),
    )
    await _announce(request, user_id, "preferences")
    context = await _db(request, users.get_context, user_id)
    assert context is not None
    return web.json_response(_preferences_json(context))
