"""User data in PostgreSQL, read through an in-process cache.

Reads build the immutable values of ``models.py`` (only active devices and contacts) and are cached
with a bounded size and TTL; every write through this class invalidates what it changed, so our own
API never serves a stale row. Other processes hear of a change from the record its writer publishes
(``changes.py``), whose listener calls ``invalidate_user``; writes that go around both are seen after
the TTL. A read racing an invalidation never caches what it read before it (``context_cache.py``).
Bad input raises ``InvalidUserData``; no psycopg error escapes. Phone numbers and e-mail addresses
are checked by ``phonenumbers`` and ``email-validator`` and stored in their normalised forms; errors
about them say what is wrong without echoing the value (it is personal data, and error texts end up
in logs).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import time
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import psycopg
from email_validator import EmailNotValidError, validate_email
from psycopg_pool import ConnectionPool

from notify_core.db.cache import TtlCache
from notify_core.exceptions import DatabaseError, InvalidUserData
from notify_core.request_model import LOCALE_PATTERN
from notify_core.topics import Channel
from notify_core.userdata.context_cache import ContextCache
from notify_core.userdata.models import (
    Category,
    Contact,
    Device,
    Preferences,
    QuietHours,
    Template,
    User,
    UserContext,
)

LOCALE = re.compile(LOCALE_PATTERN)
PUSH_PLATFORMS = {"ios": Channel.IOS, "android": Channel.ANDROID}
DEFAULT_LOCALE, DEFAULT_TIME_ZONE = "en", "UTC"  # a new user's, as in the schema


class Keep(Enum):
    """A part of a change that leaves the stored value as it is (``None`` would clear it)."""

    KEEP = "keep"


KEEP = Keep.KEEP


class UnknownDevice(InvalidUserData):
    """The device a registration replaces is not one of the user's."""


class UserDataRepository:
    def __init__(
        self,
        pool: ConnectionPool[psycopg.Connection[Any]],
        *,
        cache_size: int = 10_000,
        cache_ttl_s: float = 60.0,
    ) -> None:
        self._pool = pool
        # Guarded: a read racing an invalidation does not cache what it saw before the change.
        self._contexts: ContextCache[str, UserContext] = ContextCache(cache_size, cache_ttl_s)
        self._categories: TtlCache[str, Category] = TtlCache(1_000, cache_ttl_s)
        self._templates: TtlCache[str, list[Template]] = TtlCache(10_000, cache_ttl_s)

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.errors.IntegrityError as exc:
            raise InvalidUserData(f"refused by the database: {exc.diag.message_primary}") from exc
        except psycopg.Error as exc:
            raise DatabaseError(f"database error: {exc}") from exc

    # --- reads --------------------------------------------------------------------------------
    def get_context(self, user_id: str) -> UserContext | None:
        return self.get_contexts([user_id]).get(user_id)

    def get_contexts(self, user_ids: Sequence[str]) -> dict[str, UserContext]:
        """Contexts of the known users among ``user_ids``; cache misses are fetched together."""
        found: dict[str, UserContext] = {}
        missing: list[str] = []
        for user_id in dict.fromkeys(user_ids):
            cached = self._contexts.get(user_id)
            if cached is None:
                missing.append(user_id)
            else:
                found[user_id] = cached
        if missing:
            ticket = self._contexts.ticket()  # before the read (see ContextCache)
            fetched = self._fetch_contexts(missing)
            self._contexts.put_fetched(ticket, fetched)
            found.update(fetched)
        return found

    def invalidate_user(self, user_id: str) -> None:
        """Drop the cached context of ``user_id``: its data changed elsewhere (a change record from
        another process). Thread-safe; a read already under way does not cache the old context."""
        self._contexts.invalidate(user_id)

    def _fetch_contexts(self, ids: list[str]) -> dict[str, UserContext]:
        with self._conn() as conn:
            users = conn.execute(
                "select user_id, locale, time_zone from users where user_id = any(%s)", (ids,)
            )
            known = {u: User(u, loc, tz) for u, loc, tz in users.fetchall()}
            if not known:
                return {}
            keys = (list(known),)
            devices: dict[str, list[Device]] = defaultdict(list)
            for device_id, user_id, platform, token, app in conn.execute(
                "select device_id, user_id, platform, token, app from devices"
                " where user_id = any(%s) and active order by device_id",
                keys,
            ):
                devices[user_id].append(Device(device_id, PUSH_PLATFORMS[platform], token, app))
            contacts: dict[str, list[Contact]] = defaultdict(list)
            for contact_id, user_id, address, channel in conn.execute(
                "select contact_id, user_id, address, 'email' from user_emails"
                " where user_id = any(%s) and active"
                " union all select contact_id, user_id, e164, 'sms' from user_phones"
                " where user_id = any(%s) and active order by 4, 1",
                (list(known), list(known)),
            ):
                contacts[user_id].append(Contact(contact_id, Channel(channel), address))
            choices: dict[str, dict[tuple[str, Channel], bool]] = defaultdict(dict)
            for user_id, category, channel, opted_in in conn.execute(
                "select user_id, category, channel, opted_in from preferences where user_id = any(%s)", keys
            ):
                choices[user_id][(category, Channel(channel))] = opted_in
            unsubscribed: dict[str, set[Channel]] = defaultdict(set)
            for user_id, channel in conn.execute(
                "select user_id, channel from channel_unsubscribes where user_id = any(%s)", keys
            ):
                unsubscribed[user_id].add(Channel(channel))
            quiet = {
                user_id: QuietHours(start, end)
                for user_id, start, end in conn.execute(
                    "select user_id, start_local, end_local from quiet_hours where user_id = any(%s)", keys
                )
            }
        return {
            user_id: UserContext(
                user=user,
                devices=tuple(devices[user_id]),
                contacts=tuple(contacts[user_id]),
                preferences=Preferences(
                    choices=choices[user_id],
                    unsubscribed=frozenset(unsubscribed[user_id]),
                    quiet_hours=quiet.get(user_id),
                ),
            )
            for user_id, user in known.items()
        }

    def known_users(self, user_ids: Sequence[str]) -> set[str]:
        """Which of ``user_ids`` exist (read from the database, never the cache: a user made a
        moment ago by another process counts)."""
        with self._conn() as conn:
            rows = conn.execute(
                "select user_id from users where user_id = any(%s)", (list(dict.fromkeys(user_ids)),)
            ).fetchall()
        return {row[0] for row in rows}

    def get_category(self, name: str) -> Category:
        """A category's rules; an unknown one is optional and uncapped."""
        cached = self._categories.get(name)
        if cached is not None:
            return cached
        with self._conn() as conn:
            row = conn.execute("select mandatory from categories where category = %s", (name,)).fetchone()
            caps = conn.execute(
                "select channel, max_per_day from category_caps where category = %s", (name,)
            ).fetchall()
        category = Category(name, bool(row[0]) if row else False, {Channel(c): n for c, n in caps})
        self._categories.put(name, category)
        return category

    def get_templates(self, template_id: str) -> list[Template]:
        """Every version of every channel and locale of a template."""
        cached = self._templates.get(template_id)
        if cached is not None:
            return cached
        with self._conn() as conn:
            rows = conn.execute(
                "select template_id, channel, locale, version, title, body, data, sms_text, email_subject,"
                " email_html, email_text from templates where template_id = %s",
                (template_id,),
            ).fetchall()
        templates = [
            Template(t, Channel(c), loc, v, title, body, dict(data), sms, subject, html, text)
            for t, c, loc, v, title, body, data, sms, subject, html, text in rows
        ]
        self._templates.put(template_id, templates)
        return templates

    # --- writes (each invalidates what it changes) ----------------------------------------------
    def upsert_user(self, user_id: str, locale: str | None = None, time_zone: str | None = None) -> None:
        """Create or update a user in one statement: a field given as ``None`` keeps its stored value
        (a new user's is ``DEFAULT_LOCALE`` / ``DEFAULT_TIME_ZONE``)."""
        if not user_id:
            raise InvalidUserData("user_id must not be empty")
        if locale is not None and not LOCALE.match(locale):
            raise InvalidUserData(f"locale {locale!r} is not a BCP 47 tag like 'en' or 'pt-BR'")
        if time_zone is not None:
            try:
                ZoneInfo(time_zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise InvalidUserData(
                    f"unknown time zone {time_zone!r} (use an IANA name like 'Europe/Paris')"
                ) from None
        with self._conn() as conn:
            conn.execute(
                "insert into users (user_id, locale, time_zone)"
                " values (%(user)s, coalesce(%(locale)s::text, %(default_locale)s),"
                " coalesce(%(zone)s::text, %(default_zone)s))"
                " on conflict (user_id) do update set locale = coalesce(%(locale)s::text, users.locale),"
                " time_zone = coalesce(%(zone)s::text, users.time_zone), updated_at = now()",
                {
                    "user": user_id,
                    "locale": locale,
                    "zone": time_zone,
                    "default_locale": DEFAULT_LOCALE,
                    "default_zone": DEFAULT_TIME_ZONE,
                },
            )
        self._contexts.invalidate(user_id)

    def add_device(self, user_id: str, platform: str, token: str, app: str) -> int:
        """Register a device; a known token is reactivated and moved to this user."""
        return self.register_device(user_id, platform, token, app)[0]

    def register_device(
        self, user_id: str, platform: str, token: str, app: str, *, replaces: int | None = None
    ) -> tuple[int, str | None]:
        """Register a device in one transaction: ``(device_id, previous_owner)``, the owner being the
        other user a known token was moved from (``None`` for a new token or one already this user's).

        ``replaces`` names the user's device whose token this one rotates: it is deactivated with the
        reason ``replaced`` in the same transaction. It must be this user's and active, or already
        replaced (a retried request), else ``UnknownDevice`` and nothing is written; naming the device
        the token already is changes nothing more.
        """
        if platform not in PUSH_PLATFORMS:
            raise InvalidUserData(f"platform must be 'ios' or 'android', not {platform!r}")
        if not token:
            raise InvalidUserData("device token must not be empty")
        with self._conn() as conn, conn.transaction():
            if replaces is not None:
                old = conn.execute(
                    "select active, deactivated_reason from devices where device_id = %s and user_id = %s"
                    " for update",
                    (replaces, user_id),
                ).fetchone()
                if old is None or not (old[0] or old[1] == "replaced"):
                    raise UnknownDevice(f"device {replaces} is not an active device of this user")
            device_id, previous = self._upsert_device(conn, user_id, platform, token, app)
            if replaces is not None and replaces != device_id:
                conn.execute(
                    "update devices set active = false, deactivated_at = now(), deactivated_reason = %s"
                    " where device_id = %s and active",
                    ("replaced", replaces),
                )
        self._contexts.invalidate(user_id)
        if previous is not None:
            self._contexts.invalidate(previous)
        return device_id, previous

    @staticmethod
    def _upsert_device(
        conn: psycopg.Connection[Any], user_id: str, platform: str, token: str, app: str
    ) -> tuple[int, str | None]:
        """Insert a new token, or lock the known one's row and move it here (told who had it)."""
        for _ in range(3):  # a row deleted (its user erased) between the two statements: look again
            row = conn.execute(
                "insert into devices (user_id, platform, token, app) values (%s, %s, %s, %s)"
                " on conflict (platform, token) do nothing returning device_id",
                (user_id, platform, token, app),
            ).fetchone()
            if row is not None:
                return int(row[0]), None
            known = conn.execute(
                "select device_id, user_id from devices where platform = %s and token = %s for update",
                (platform, token),
            ).fetchone()
            if known is None:
                continue
            conn.execute(
                "update devices set user_id = %s, app = %s, active = true, last_seen_at = now(),"
                " deactivated_at = null, deactivated_reason = null where device_id = %s",
                (user_id, app, known[0]),
            )
            return int(known[0]), (known[1] if known[1] != user_id else None)
        raise DatabaseError("device token registration kept racing a deletion: retry")

    def deactivate_device(self, device_id: int, reason: str) -> None:
        with self._conn() as conn:
            row = conn.execute(
                "update devices set active = false, deactivated_at = now(), deactivated_reason = %s"
                " where device_id = %s returning user_id",
                (reason, device_id),
            ).fetchone()
        if row is not None:
            self._contexts.invalidate(row[0])

    def add_email(self, user_id: str, address: str) -> int:
        """Add (or reactivate) an address, stored lower-case in email-validator's normalised form."""
        return self._add_contact("user_emails", "address", user_id, normalize_email(address))

    def add_phone(self, user_id: str, number: str) -> int:
        """Add (or reactivate) a phone number given in international form, stored as E.164."""
        return self._add_contact("user_phones", "e164", user_id, normalize_phone(number))

    def _add_contact(self, table: str, column: str, user_id: str, value: str) -> int:
        with self._conn() as conn:
            row = conn.execute(
                f"insert into {table} (user_id, {column}) values (%s, %s) on conflict (user_id, {column})"  # noqa: S608
                " do update set active = true, deactivated_at = null, deactivated_reason = null"
                " returning contact_id",
                (user_id, value),
            ).fetchone()
        self._contexts.invalidate(user_id)
        assert row is not None
        return int(row[0])

    def set_contact(self, user_id: str, channel: Channel, value: str) -> int:
        """Make ``value`` the user's one active address of ``channel`` (``email`` or ``sms``), in one
        transaction: normalised, inserted or reactivated, and every other active address of that
        channel deactivated as ``replaced``. The user's row is locked, so concurrent calls for one
        user serialise and leave exactly one active address. ``InvalidUserData`` for a bad value or an
        unknown user, before anything is written."""
        table, column, normalize = _contact_table(channel)
        address = normalize(value)
        with self._conn() as conn, conn.transaction():
            self._lock_user(conn, user_id)
            row = conn.execute(
                f"insert into {table} (user_id, {column}) values (%s, %s) on conflict (user_id, {column})"  # noqa: S608
                " do update set active = true, deactivated_at = null, deactivated_reason = null"
                " returning contact_id",
                (user_id, address),
            ).fetchone()
            assert row is not None
            conn.execute(
                f"update {table} set active = false, deactivated_at = now(), deactivated_reason = %s"  # noqa: S608
                " where user_id = %s and active and contact_id <> %s",
                ("replaced", user_id, row[0]),
            )
        self._contexts.invalidate(user_id)
        return int(row[0])

    def remove_contacts(self, user_id: str, channel: Channel, reason: str) -> int:
        """Deactivate every active address of ``channel`` of the user, in one transaction under the
        user's row lock (as ``set_contact``); how many there were."""
        table, _, _ = _contact_table(channel)
        with self._conn() as conn, conn.transaction():
            self._lock_user(conn, user_id)
            removed = conn.execute(
                f"update {table} set active = false, deactivated_at = now(), deactivated_reason = %s"  # noqa: S608
                " where user_id = %s and active",
                (reason, user_id),
            ).rowcount
        self._contexts.invalidate(user_id)
        return removed

    @staticmethod
    def _lock_user(conn: psycopg.Connection[Any], user_id: str) -> None:
        """Lock the user's row until the transaction ends: writers of one user's data serialise."""
        if conn.execute("select 1 from users where user_id = %s for update", (user_id,)).fetchone() is None:
            raise InvalidUserData("no such user")

    def deactivate_contact(self, channel: Channel, contact_id: int, reason: str) -> None:
        table = {Channel.EMAIL: "user_emails", Channel.SMS: "user_phones"}.get(channel)
        if table is None:
            raise InvalidUserData(f"{channel} has devices, not contacts: use deactivate_device")
        with self._conn() as conn:
            row = conn.execute(
                f"update {table} set active = false, deactivated_at = now(), deactivated_reason = %s"  # noqa: S608
                " where contact_id = %s returning user_id",
                (reason, contact_id),
            ).fetchone()
        if row is not None:
            self._contexts.invalidate(row[0])

    def set_preference(self, user_id: str, category: str, channel: Channel, *, opted_in: bool) -> None:
        with self._conn() as conn:
            _write_choice(conn, user_id, category, Channel(channel), opted_in)
        self._contexts.invalidate(user_id)

    def unsubscribe(self, user_id: str, channel: Channel) -> None:
        with self._conn() as conn:
            conn.execute(
                "insert into channel_unsubscribes (user_id, channel) values (%s, %s) on conflict do nothing",
                (user_id, Channel(channel).value),
            )
        self._contexts.invalidate(user_id)

    def resubscribe(self, user_id: str, channel: Channel) -> None:
        """Undo ``unsubscribe``: the channel carries the user's optional categories again."""
        with self._conn() as conn:
            conn.execute(
                "delete from channel_unsubscribes where user_id = %s and channel = %s",
                (user_id, Channel(channel).value),
            )
        self._contexts.invalidate(user_id)

    def set_quiet_hours(self, user_id: str, start: time | None, end: time | None) -> None:
        """Set (or, with ``None``, clear) the user's quiet hours in their local time."""
        quiet = None if start is None or end is None else _checked_quiet_hours(QuietHours(start, end))
        with self._conn() as conn:
            _write_quiet_hours(conn, user_id, quiet)
        self._contexts.invalidate(user_id)

    def update_preferences(
        self,
        user_id: str,
        choices: Sequence[tuple[str, Channel, bool]] = (),
        *,
        quiet_hours: QuietHours | Keep | None = KEEP,
        unsubscribed: Collection[Channel] | None = None,
    ) -> None:
        """Apply a whole preferences change in one transaction, or nothing of it.

        ``choices`` are (category, channel, opted in); ``quiet_hours`` sets them, clears them with
        ``None`` or leaves them with ``KEEP``; ``unsubscribed``, when given, is the full new set of
        channel-wide unsubscribes (``None`` leaves it). Every part is checked first: a bad one raises
        ``InvalidUserData`` before anything is written. The user's row is locked (as ``set_contact``),
        so concurrent changes of one user apply one after the other.
        """
        checked = [(_checked_category(c), _checked_channel(ch), bool(opted)) for c, ch, opted in choices]
        quiet = (
            quiet_hours if quiet_hours is KEEP or quiet_hours is None else _checked_quiet_hours(quiet_hours)
        )
        channels = None if unsubscribed is None else sorted({_checked_channel(c).value for c in unsubscribed})
        with self._conn() as conn, conn.transaction():
            self._lock_user(conn, user_id)
            for category, channel, opted_in in checked:
                _write_choice(conn, user_id, category, channel, opted_in)
            if quiet is not KEEP:
                _write_quiet_hours(conn, user_id, quiet)
            if channels is not None:
                conn.execute(
                    "delete from channel_unsubscribes where user_id = %s and not (channel = any(%s))",
                    (user_id, channels),
                )
                for channel_name in channels:
                    conn.execute(
                        "insert into channel_unsubscribes (user_id, channel) values (%s, %s)"
                        " on conflict do nothing",
                        (user_id, channel_name),
                    )
        self._contexts.invalidate(user_id)

    def upsert_category(
        self, name: str, *, mandatory: bool = False, caps: dict[Channel, int] | None = None
    ) -> None:
        if any(n <= 0 for n in (caps or {}).values()):
            raise InvalidUserData("caps must be positive numbers of deliveries per day")
        with self._conn() as conn, conn.transaction():
            conn.execute(
                "insert into categories (category, mandatory) values (%s, %s)"
                " on conflict (category) do update set mandatory = excluded.mandatory",
                (name, mandatory),
            )
            conn.execute("delete from category_caps where category = %s", (name,))
            for channel, limit in (caps or {}).items():
                conn.execute(
                    "insert into category_caps (category, channel, max_per_day) values (%s, %s, %s)",
                    (name, Channel(channel).value, limit),
                )
        self._categories.invalidate(name)

    def put_template(self, template: Template) -> None:
        """Store one template version; versions are immutable (re-putting the same content is fine)."""
        t = template
        if not LOCALE.match(t.locale):
            raise InvalidUserData(f"locale {t.locale!r} is not a BCP 47 tag")
        values = (
            t.title,
            t.body,
            json.dumps(t.data, sort_keys=True),
            t.sms_text,
            t.email_subject,
            t.email_html,
            t.email_text,
        )
        with self._conn() as conn:
            existing = conn.execute(
                "select title, body, data::text, sms_text, email_subject, email_html, email_text"
                " from templates"
                " where template_id = %s and channel = %s and locale = %s and version = %s",
                (t.template_id, t.channel.value, t.locale, t.version),
            ).fetchone()
            if existing is not None:
                stored = (*existing[:2], json.dumps(json.loads(existing[2]), sort_keys=True), *existing[3:])
                if stored != values:
                    raise InvalidUserData(
                        f"template {t.template_id} {t.channel} {t.locale} v{t.version} exists"
                        " with other content;"
                        " publish a new version"
                    )
                return
            conn.execute(
                "insert into templates (template_id, channel, locale, version, title, body, data, sms_text,"
                " email_subject, email_html, email_text) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (t.template_id, t.channel.value, t.locale, t.version, *values),
            )
        self._templates.invalidate(t.template_id)


# --- write helpers (inside a caller's transaction) ---------------------------------------------------
def _write_choice(
    conn: psycopg.Connection[Any], user_id: str, category: str, channel: Channel, opted_in: bool
) -> None:
    conn.execute(
        "insert into preferences (user_id, category, channel, opted_in) values (%s, %s, %s, %s)"
        " on conflict (user_id, category, channel) do update set opted_in = excluded.opted_in,"
        " updated_at = now()",
        (user_id, category, channel.value, opted_in),
    )


def _write_quiet_hours(conn: psycopg.Connection[Any], user_id: str, quiet: QuietHours | None) -> None:
    if quiet is None:
        conn.execute("delete from quiet_hours where user_id = %s", (user_id,))
    else:
        conn.execute(
            "insert into quiet_hours (user_id, start_local, end_local) values (%s, %s, %s)"
            " on conflict (user_id) do update set start_local = excluded.start_local,"
            " end_local = excluded.end_local",
            (user_id, quiet.start, quiet.end),
        )


def _checked_quiet_hours(quiet: QuietHours) -> QuietHours:
    if quiet.start == quiet.end:
        raise InvalidUserData("quiet hours must not start and end at the same time")
    return quiet


def _checked_category(category: str) -> str:
    if not category:
        raise InvalidUserData("a preference needs a category")
    return category


def _checked_channel(channel: str) -> Channel:
    try:
        return Channel(channel)
    except ValueError:
        raise InvalidUserData(
            f"channel must be one of {[c.value for c in Channel]}, not {channel!r}"
        ) from None


def _contact_table(channel: Channel) -> tuple[str, str, Callable[[str], str]]:
    found = _CONTACTS.get(Channel(channel))
    if found is None:
        raise InvalidUserData(f"{channel} has devices, not contacts")
    return found


# --- contact normalisation (pure) -------------------------------------------------------------------
_PARSE_ERRORS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "it must start with + and a known country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "it does not look like a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "it is too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "it is too short",
    phonenumbers.NumberParseException.TOO_LONG: "it is too long",
}
# A library message built around a chained error may quote part of the address: cut that part.
_QUOTED_CAUSE = re.compile(r"\s*\(.*\)")


def normalize_phone(number: str) -> str:
    """The E.164 form of a valid number in international form; ``InvalidUserData`` otherwise.

    Valid, not merely possible: libphonenumber's metadata knows which ranges are assigned, so a
    typo in an area code or a reserved range is refused here rather than costing an SMS attempt.
    (Fictional test numbers therefore come from ranges it accepts, e.g. +1 201 555 01xx.)
    """
    try:
        # No default region: a national number ("0612345678") is ambiguous, so it is refused.
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as exc:
        why = _PARSE_ERRORS.get(exc.error_type, "it cannot be read")
        # from None, here and below: our text says it all, and a chained library error could quote the value.
        raise InvalidUserData(f"phone number is not an international (E.164) number: {why}") from None
    if parsed.extension:
        raise InvalidUserData("phone number has an extension, which an SMS cannot reach")
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidUserData(
            "phone number is not a valid E.164 number: no such number range for its country code"
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(address: str) -> str:
    """email-validator's normalised form of ``address`` (syntax only, no DNS), or ``InvalidUserData``."""
    try:
        # Lower-cased first: the schema keeps addresses lower-case (one row per mailbox whatever the
        # spelling), which email-validator leaves to us for the local part.
        info = validate_email(address.strip().lower(), check_deliverability=False)
    except EmailNotValidError as exc:
        why = str(exc)
        if exc.__cause__ is not None:  # e.g. an IDNA error, which quotes the label it refused
            why = _QUOTED_CAUSE.sub("", why)
        raise InvalidUserData(f"not a valid e-mail address: {why}") from None
    # Its normalised form: domain IDNA-mapped (full-width letters, Punycode shown as Unicode), NFC.
    return str(info.normalized)


# (table, address column, normaliser) of the channels with contacts rather than devices.
_CONTACTS: dict[Channel, tuple[str, str, Callable[[str], str]]] = {
    Channel.EMAIL: ("user_emails", "address", normalize_email),
    Channel.SMS: ("user_phones", "e164", normalize_phone),
}
