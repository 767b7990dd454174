"""User data on the real PostgreSQL: migrations, context assembly, cache invalidation, refused input."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from notify_core.db.connect import connect, make_pool
from notify_core.db.migrate import MIGRATIONS, migrate
from notify_core.exceptions import DatabaseError, InvalidUserData
from notify_core.settings import Settings
from notify_core.topics import Channel
from notify_core.userdata.models import QuietHours, Template
from notify_core.userdata.repository import KEEP, UnknownDevice, UserDataRepository

pytestmark = pytest.mark.integration


@pytest.fixture
def pool(db_schema: tuple[Settings, str]) -> Iterator[ConnectionPool[psycopg.Connection[Any]]]:
    settings, schema = db_schema
    pool = make_pool(settings, schema=schema)
    yield pool
    pool.close()


@pytest.fixture
def repo(pool: ConnectionPool[psycopg.Connection[Any]]) -> UserDataRepository:
    return UserDataRepository(pool, cache_ttl_s=3600)


def test_migrate_twice_applies_nothing_the_second_time(db_schema: tuple[Settings, str]) -> None:
    settings, schema = db_schema
    with connect(settings, schema=schema) as conn:
        assert migrate(conn) == []
        versions = [r[0] for r in conn.execute("select version from schema_migrations order by 1")]
    assert versions == list(range(1, len(list(MIGRATIONS.glob("*.sql"))) + 1))


def test_a_migration_edited_after_it_was_applied_is_refused(
    db_schema: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, schema = db_schema
    for path in MIGRATIONS.glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with connect(settings, schema=schema) as conn, pytest.raises(DatabaseError, match="changed after"):
        migrate(conn, tmp_path)


def test_context_gathers_active_contacts_preferences_and_quiet_hours(repo: UserDataRepository) -> None:
    repo.upsert_user("u1", "fr", "Europe/Paris")
    ios = repo.add_device("u1", "ios", "tok-a", "app")
    repo.add_device("u1", "android", "tok-b", "app")
    repo.add_email("u1", "u1@example.com")
    repo.add_phone("u1", "+33612345678")
    repo.set_preference("u1", "marketing", Channel.SMS, opted_in=False)
    repo.unsubscribe("u1", Channel.EMAIL)
    repo.set_quiet_hours("u1", time(22), time(7))
    repo.deactivate_device(ios, "unregistered")

    context = repo.get_context("u1")
    assert context is not None
    assert (context.user.locale, context.user.time_zone) == ("fr", "Europe/Paris")
    assert [(d.platform, d.token) for d in context.devices] == [(Channel.ANDROID, "tok-b")]
    assert sorted((c.channel, c.address) for c in context.contacts) == [
        (Channel.EMAIL, "u1@example.com"),
        (Channel.SMS, "+33612345678"),
    ]
    assert context.preferences.choices == {("marketing", Channel.SMS): False}
    assert context.preferences.unsubscribed == {Channel.EMAIL}
    assert context.preferences.quiet_hours is not None
    assert repo.get_context("nobody") is None


def test_writes_through_the_repository_invalidate_the_cache(repo: UserDataRepository) -> None:
    repo.upsert_user("u2")
    first = repo.get_context("u2")
    assert first is not None
    assert first.devices == ()
    assert repo.get_context("u2") is first  # served from the cache
    repo.add_device("u2", "ios", "tok-c", "app")
    second = repo.get_context("u2")
    assert second is not None
    assert [d.token for d in second.devices] == ["tok-c"]

    repo.put_template(Template("welcome", Channel.SMS, "en", 1, sms_text="v1"))
    assert [t.sms_text for t in repo.get_templates("welcome")] == ["v1"]
    repo.put_template(Template("welcome", Channel.SMS, "en", 2, sms_text="v2"))
    assert sorted(t.version for t in repo.get_templates("welcome")) == [1, 2]


def test_a_device_token_moves_to_its_new_owner(repo: UserDataRepository) -> None:
    repo.upsert_user("old")
    repo.upsert_user("new")
    repo.add_device("old", "ios", "shared-token", "app")
    assert repo.get_context("old") is not None
    repo.add_device("new", "ios", "shared-token", "app")
    old, new = repo.get_context("old"), repo.get_context("new")
    assert old is not None
    assert old.devices == ()
    assert new is not None
    assert [d.token for d in new.devices] == ["shared-token"]


def test_contacts_are_stored_in_their_normalised_forms(repo: UserDataRepository) -> None:
    repo.upsert_user("u-norm")
    phone = repo.add_phone("u-norm", "+1 (201) 555-0123")
    email = repo.add_email("u-norm", "Ada.Lovelace@Example.COM")
    # Another spelling of the same contact is the same row, not a second one.
    assert repo.add_phone("u-norm", "tel:+1-201-555-0123") == phone
    assert repo.add_email("u-norm", " Ada.Lovelace@example.com ") == email
    context = repo.get_context("u-norm")
    assert context is not None
    assert sorted((c.channel, c.address) for c in context.contacts) == [
        (Channel.EMAIL, "ada.lovelace@example.com"),
        (Channel.SMS, "+12015550123"),
    ]


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("phone", "+12"),  # the old E.164 regex took it
        ("phone", "+15555550123"),  # the right length, but no such area code
        ("phone", "+33 6 12 34 56 78 ext 9"),
        ("email", "ada@example"),  # the old check took it
        ("email", "ada@@example.com"),
        ("email", "ada lovelace@example.com"),
    ],
)
def test_bad_contacts_are_refused_without_echoing_them(
    repo: UserDataRepository, kind: str, value: str
) -> None:
    repo.upsert_user("u-bad")
    add = repo.add_phone if kind == "phone" else repo.add_email
    with pytest.raises(InvalidUserData) as refused:
        add("u-bad", value)
    assert value not in str(refused.value)
    assert value.replace(" ", "") not in str(refused.value).replace(" ", "")
    context = repo.get_context("u-bad")
    assert context is not None
    assert context.contacts == ()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.upsert_user(""), "user_id must not be empty"),
        (lambda r: r.upsert_user("x", "english"), "BCP 47"),
        (lambda r: r.upsert_user("x", "en", "Mars/Olympus"), "time zone"),
        (lambda r: r.add_device("u", "blackberry", "t", "app"), "platform"),
        (lambda r: r.add_email("u", "not-an-address"), "e-mail"),
        (lambda r: r.add_phone("u", "0612345678"), "E.164"),
        (lambda r: r.set_quiet_hours("u", time(8), time(8)), "same time"),
        (lambda r: r.add_email("no-such-user", "a@example.com"), "refused by the database"),
    ],
)
def test_bad_user_data_is_refused_with_a_clear_error(
    repo: UserDataRepository, call: object, message: str
) -> None:
    repo.upsert_user("u")
    with pytest.raises(InvalidUserData, match=message):
        call(repo)  # type: ignore[operator]


def test_upsert_user_keeps_what_it_is_not_given(repo: UserDataRepository) -> None:
    """A new user without locale or time zone gets en / UTC; later upserts change only what they
    are given (None keeps the stored value)."""
    repo.upsert_user("u-keep")
    repo.upsert_user("u-keep", "fr")
    repo.upsert_user("u-keep", time_zone="Europe/Paris")
    context = repo.get_context("u-keep")
    assert context is not None
    assert (context.user.locale, context.user.time_zone) == ("fr", "Europe/Paris")
    repo.upsert_user("u-keep")
    context = repo.get_context("u-keep")
    assert context is not None
    assert (context.user.locale, context.user.time_zone) == ("fr", "Europe/Paris")
    repo.upsert_user("u-new", None, "Asia/Tokyo")
    fresh = repo.get_context("u-new")
    assert fresh is not None
    assert (fresh.user.locale, fresh.user.time_zone) == ("en", "Asia/Tokyo")


def test_update_preferences_applies_a_whole_change_or_nothing(repo: UserDataRepository) -> None:
    """update_preferences stores choices, quiet hours and the full unsubscribe set together; a part
    that is invalid (equal quiet hours, an unknown channel, an empty category, an unknown user) is
    refused before anything is written, and a write that fails mid-way (a NUL byte the database
    refuses, in the second choice) rolls the first one back."""
    repo.upsert_user("u-prefs")
    repo.update_preferences(
        "u-prefs",
        [("marketing", Channel.EMAIL, False)],
        quiet_hours=QuietHours(time(22), time(7)),
        unsubscribed=[Channel.SMS],
    )
    stored = repo.get_context("u-prefs")
    assert stored is not None
    assert stored.preferences.choices == {("marketing", Channel.EMAIL): False}
    assert stored.preferences.unsubscribed == {Channel.SMS}
    assert stored.preferences.quiet_hours == QuietHours(time(22), time(7))

    valid = [("marketing", Channel.EMAIL, True), ("news", Channel.IOS, False)]
    refused: list[dict[str, Any]] = [
        {"quiet_hours": QuietHours(time(8), time(8))},
        {"unsubscribed": [Channel.IOS, "fax"]},
        {"choices": [*valid, ("", Channel.SMS, False)]},
    ]
    for change in refused:
        with pytest.raises(InvalidUserData):
            repo.update_preferences("u-prefs", **{"choices": valid, **change})
    with pytest.raises(InvalidUserData, match="no such user"):
        repo.update_preferences("nobody", valid)
    with pytest.raises(DatabaseError):
        repo.update_preferences("u-prefs", [valid[0], ("bad\x00name", Channel.SMS, False)])
    assert repo.get_context("u-prefs") == stored

    repo.update_preferences("u-prefs", quiet_hours=None, unsubscribed=[])
    cleared = repo.get_context("u-prefs")
    assert cleared is not None
    assert cleared.preferences.choices == stored.preferences.choices
    assert (cleared.preferences.unsubscribed, cleared.preferences.quiet_hours) == (frozenset(), None)
    repo.update_preferences("u-prefs", quiet_hours=KEEP)  # nothing given: nothing changes
    assert repo.get_context("u-prefs") == cleared


def test_unsubscribe_sets_are_replaced_and_resubscribe_clears_one(repo: UserDataRepository) -> None:
    """The unsubscribe set given to update_preferences replaces the stored one (kept channels stay,
    others go); resubscribe removes one channel; None leaves the set alone."""
    repo.upsert_user("u-unsub")
    repo.unsubscribe("u-unsub", Channel.EMAIL)
    repo.unsubscribe("u-unsub", Channel.SMS)
    repo.update_preferences("u-unsub", unsubscribed=[Channel.SMS, Channel.IOS])
    context = repo.get_context("u-unsub")
    assert context is not None
    assert context.preferences.unsubscribed == {Channel.SMS, Channel.IOS}
    repo.resubscribe("u-unsub", Channel.IOS)
    repo.update_preferences("u-unsub", [("news", Channel.SMS, True)])
    context = repo.get_context("u-unsub")
    assert context is not None
    assert context.preferences.unsubscribed == {Channel.SMS}


def test_register_device_names_the_previous_owner_and_replaces_a_rotated_token(
    repo: UserDataRepository, pool: ConnectionPool[psycopg.Connection[Any]]
) -> None:
    """register_device answers (device_id, the other user a known token moved from, else None); with
    replaces, the user's old device is deactivated as "replaced" in the same transaction, a retry of
    that is accepted, and a device not the user's (or removed) raises UnknownDevice with nothing
    written."""
    for user in ("a", "b"):
        repo.upsert_user(user)
    first, nobody = repo.register_device("a", "ios", "tok-1", "app")
    assert nobody is None
    assert repo.register_device("a", "ios", "tok-1", "app") == (first, None)
    assert repo.register_device("b", "ios", "tok-1", "app") == (first, "a")
    context = repo.get_context("a")
    assert context is not None
    assert context.devices == ()

    rotated, _ = repo.register_device("b", "ios", "tok-2", "app", replaces=first)
    assert repo.register_device("b", "ios", "tok-2", "app", replaces=first) == (rotated, None)
    with pool.connection() as conn:
        row = conn.execute("select active, deactivated_reason from devices where device_id = %s", (first,))
        assert row.fetchone() == (False, "replaced")
    context = repo.get_context("b")
    assert context is not None
    assert [d.device_id for d in context.devices] == [rotated]

    others, _ = repo.register_device("a", "android", "tok-a", "app")
    repo.deactivate_device(rotated, "removed_by_api")
    for wrong in (others, rotated, 10**9):
        with pytest.raises(UnknownDevice):
            repo.register_device("b", "ios", "tok-3", "app", replaces=wrong)
    with pool.connection() as conn:
        assert conn.execute("select count(*) from devices where token = 'tok-3'").fetchone() == (0,)
    context = repo.get_context("a")
    assert context is not None
    assert [d.device_id for d in context.devices] == [others]
    assert repo.add_device("b", "ios", "tok-4", "app") > rotated  # the old entry point still works


def test_set_contact_keeps_one_active_address_even_when_called_concurrently(repo: UserDataRepository) -> None:
    """set_contact stores the normalised address and retires the user's others of that channel;
    sixteen calls from eight threads at once still leave exactly one active address per channel.
    A bad value, an unknown user or a push channel is refused and changes nothing; remove_contacts
    answers how many it deactivated."""
    repo.upsert_user("u-set")
    kept = repo.set_contact("u-set", Channel.EMAIL, "Ada@Example.COM")
    assert repo.set_contact("u-set", Channel.EMAIL, " ada@example.com ") == kept
    calls = [(Channel.EMAIL, f"ada{n}@example.com") for n in range(8)]
    calls += [(Channel.SMS, f"+1201555010{n}") for n in range(8)]
    with ThreadPoolExecutor(8) as threads:
        list(threads.map(lambda call: repo.set_contact("u-set", *call), calls))
    context = repo.get_context("u-set")
    assert context is not None
    emails = [c.address for c in context.contacts if c.channel is Channel.EMAIL]
    phones = [c.address for c in context.contacts if c.channel is Channel.SMS]
    assert len(emails) == 1
    assert emails[0] in {address for _, address in calls}
    assert len(phones) == 1

    for channel, value in [(Channel.SMS, "0612345678"), (Channel.IOS, "token"), (Channel.EMAIL, "nope")]:
        with pytest.raises(InvalidUserData):
            repo.set_contact("u-set", channel, value)
    with pytest.raises(InvalidUserData, match="no such user"):
        repo.set_contact("nobody", Channel.EMAIL, "a@example.com")
    assert repo.get_context("u-set") == context
    assert repo.remove_contacts("u-set", Channel.EMAIL, "removed_by_api") == 1
    assert repo.remove_contacts("u-set", Channel.EMAIL, "removed_by_api") == 0
