"""Signed tracking tokens: they round-trip, expire, rotate, stay in their purpose, and refuse the rest."""

from __future__ import annotations

import dataclasses
import itertools
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from notify_core.exceptions import ConfigError, NotifyError
from notify_core.settings import Settings
from notify_core.topics import Channel
from notify_core.tracking import (
    MAX_CLOCK_SKEW_S,
    MAX_TOKEN_LENGTH,
    InvalidToken,
    Purpose,
    TrackedDelivery,
    TrackingSigner,
    click_url,
    open_pixel_url,
    unsubscribe_url,
)

T0 = 1_700_000_000.0  # a fixed "now": no test depends on the wall clock
URL_SAFE = set(string.ascii_letters + string.digits + "-_.")
DELIVERY = TrackedDelivery(
    delivery_id="3b0c9d52-7f3e-4c8a-b1a4-2e6f5d9c8a70",
    notification_id="7d1e2f30-4a5b-4c6d-8e7f-901a2b3c4d5e",
    user_id="user-42",
    service="signup",
    channel=Channel.EMAIL,
    category="marketing",
)
CLICK = dataclasses.replace(DELIVERY, url="https://example.com/offer?a=1&b=%22x%22#top")


def signer(
    tracking: list[str] | None = None, unsubscribe: list[str] | None = None, at: float = T0
) -> TrackingSigner:
    return TrackingSigner(
        tracking_secrets=tracking or ["tracking-key"],
        unsubscribe_secrets=unsubscribe or ["unsubscribe-key"],
        clock=lambda: at,
    )


def for_purpose(purpose: Purpose) -> TrackedDelivery:
    return CLICK if purpose is Purpose.CLICK else DELIVERY


def reason(purpose: Purpose, token: str, verifier: TrackingSigner | None = None, **kwargs: float) -> str:
    with pytest.raises(InvalidToken) as caught:
        (verifier or signer()).verify(purpose, token, **kwargs)
    assert caught.value.purpose is purpose
    return caught.value.reason


@pytest.mark.parametrize("purpose", list(Purpose))
def test_round_trip_per_purpose(purpose: Purpose) -> None:
    """What is signed for a purpose verifies for it, giving back every field; tokens are URL-safe."""
    token = signer().sign(purpose, for_purpose(purpose))
    assert set(token) <= URL_SAFE
    assert len(token) < 400  # short enough for a link in a mail
    assert signer().verify(purpose, token) == for_purpose(purpose)


@pytest.mark.parametrize(("purpose", "other"), list(itertools.permutations(Purpose, 2)))
def test_a_token_never_verifies_as_another_purpose(purpose: Purpose, other: Purpose) -> None:
    """Per-purpose salts (and the separate unsubscribe key) keep purposes apart, even with one key."""
    for made_by in (signer(), signer(["same"], ["same"])):
        token = made_by.sign(purpose, for_purpose(purpose))
        assert reason(other, token, made_by) == "bad_signature"


def test_unsubscribe_uses_its_own_secret() -> None:
    """Only the unsubscribe key matters for unsubscribe tokens, only the tracking key for the others."""
    token = signer(unsubscribe=["u-1"]).sign(Purpose.UNSUBSCRIBE, DELIVERY)
    assert signer(tracking=["anything"], unsubscribe=["u-1"]).verify(Purpose.UNSUBSCRIBE, token) == DELIVERY
    assert reason(Purpose.UNSUBSCRIBE, token, signer(tracking=["u-1"], unsubscribe=["u2"])) == "bad_signature"
    opened = signer(tracking=["t-1"]).sign(Purpose.OPEN, DELIVERY)
    assert signer(tracking=["t-1"], unsubscribe=["other"]).verify(Purpose.OPEN, opened) == DELIVERY
    assert reason(Purpose.OPEN, opened, signer(tracking=["t-2"], unsubscribe=["t-1"])) == "bad_signature"


@pytest.mark.parametrize("purpose", list(Purpose))
def test_expiry_uses_the_purpose_max_age(purpose: Purpose) -> None:
    """Good up to and including max age seconds after signing, expired one second later."""
    made = signer()
    max_age = made.max_age_s(purpose)
    token = made.sign(purpose, for_purpose(purpose))
    assert made.verify(purpose, token, now=T0 + max_age) == for_purpose(purpose)
    assert reason(purpose, token, now=T0 + max_age + 1) == "expired"
    # The clock is "now" when no now= is given: a signer whose clock is later sees the same.
    assert reason(purpose, token, signer(at=T0 + max_age + 1)) == "expired"


def test_max_ages_come_from_settings() -> None:
    """from_settings takes each purpose's max age, secrets and base URL from the settings."""
    settings_ = Settings(
        click_token_max_age_s=100,
        open_token_max_age_s=200,
        push_token_max_age_s=300,
        public_base_url="https://t.example.com/",
    )
    made = TrackingSigner.from_settings(settings_, clock=lambda: T0)
    ages = {p: made.max_age_s(p) for p in Purpose}
    assert ages == {
        Purpose.CLICK: 100,
        Purpose.OPEN: 200,
        Purpose.PUSH_OPEN: 300,
        Purpose.UNSUBSCRIBE: settings_.unsubscribe_token_max_age_s,
    }
    assert made.base_url == "https://t.example.com"
    token = made.sign(Purpose.OPEN, DELIVERY)
    assert reason(Purpose.OPEN, token, made, now=T0 + 201) == "expired"
    assert made.verify(Purpose.OPEN, token, now=T0 + 200) == DELIVERY


def test_a_token_from_the_future_is_accepted_only_within_the_clock_skew() -> None:
    """Another host's clock may run a little ahead; a token from far in the future is refused."""
    token = signer(at=T0 + MAX_CLOCK_SKEW_S).sign(Purpose.OPEN, DELIVERY)
    assert signer().verify(Purpose.OPEN, token) == DELIVERY
    later = signer(at=T0 + MAX_CLOCK_SKEW_S + 1).sign(Purpose.OPEN, DELIVERY)
    assert reason(Purpose.OPEN, later) == "expired"


@pytest.mark.parametrize("purpose", list(Purpose))
def test_rotation(purpose: Purpose) -> None:
    """A token signed under the old key verifies while that key is listed as previous, not after."""
    old = signer(["old"], ["old-u"]).sign(purpose, for_purpose(purpose))
    rotated = signer(["new", "old"], ["new-u", "old-u"])
    assert rotated.verify(purpose, old) == for_purpose(purpose)
    fresh = rotated.sign(purpose, for_purpose(purpose))
    # The new key signs: the fresh token verifies without the old one, and not under the old one alone.
    assert signer(["new"], ["new-u"]).verify(purpose, fresh) == for_purpose(purpose)
    assert reason(purpose, fresh, signer(["old"], ["old-u"])) == "bad_signature"
    assert reason(purpose, old, signer(["new"], ["new-u"])) == "bad_signature"


def test_rotation_from_settings() -> None:
    """tracking_previous_secrets and unsubscribe_previous_secrets are accepted, never used to sign."""
    before = Settings(tracking_secret=SecretStr("t-old"), unsubscribe_secret=SecretStr("u-old"))
    during = Settings(
        tracking_secret=SecretStr("t-new"),
        tracking_previous_secrets=[SecretStr("t-old")],
        unsubscribe_secret=SecretStr("u-new"),
        unsubscribe_previous_secrets=[SecretStr("u-old")],
    )
    after = Settings(tracking_secret=SecretStr("t-new"), unsubscribe_secret=SecretStr("u-new"))
    old, overlap, new = (TrackingSigner.from_settings(s, clock=lambda: T0) for s in (before, during, after))
    for purpose in Purpose:
        token = old.sign(purpose, for_purpose(purpose))
        assert overlap.verify(purpose, token) == for_purpose(purpose)
        assert reason(purpose, token, new) == "bad_signature"
        assert new.verify(purpose, overlap.sign(purpose, for_purpose(purpose))) == for_purpose(purpose)


@settings(max_examples=300, deadline=None)
@given(
    purpose=st.sampled_from(list(Purpose)),
    fields=st.lists(st.text(max_size=60), min_size=6, max_size=6),
    channel=st.sampled_from(list(Channel)),
)
def test_any_fields_round_trip(purpose: Purpose, fields: list[str], channel: Channel) -> None:
    """Any text (non-ASCII, quotes, lone surrogates) in any field comes back exactly."""
    delivery = TrackedDelivery(
        delivery_id=fields[0],
        notification_id=fields[1],
        user_id=fields[2],
        service=fields[3],
        channel=channel,
        category=fields[4],
        url=fields[5] if purpose is Purpose.CLICK else None,
    )
    token = signer().sign(purpose, delivery)
    assert set(token) <= URL_SAFE
    assert signer().verify(purpose, token) == delivery


@settings(max_examples=500, deadline=None)
@given(purpose=st.sampled_from(list(Purpose)), data=st.data())
def test_any_single_character_tamper_fails(purpose: Purpose, data: st.DataObject) -> None:
    """Changing any one character (the signature's unused base64 bits included) never verifies."""
    token = signer().sign(purpose, for_purpose(purpose))
    index = data.draw(st.integers(min_value=0, max_value=len(token) - 1), label="index")
    pool = st.sampled_from([*sorted(set(string.printable) - set(string.whitespace)), "é", "\u2028"])
    replacement = data.draw(pool.filter(lambda c: c != token[index]), label="replacement")
    tampered = token[:index] + replacement + token[index + 1 :]
    assert reason(purpose, tampered) in ("bad_signature", "malformed")


def test_non_canonical_signature_spelling_is_refused() -> None:
    """The last base64 character's lowest bit is unused; flipping it must still fail."""
    token = signer().sign(Purpose.OPEN, DELIVERY)
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    sibling = alphabet[alphabet.index(token[-1]) ^ 1]
    assert reason(Purpose.OPEN, token[:-1] + sibling) == "bad_signature"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("", "malformed"),
        ("abc", "malformed"),
        ("a.b", "malformed"),
        ("a..b", "malformed"),
        ("a.b.c.d", "malformed"),
        ("é.é.é", "malformed"),
        ("a b.c.d", "malformed"),
        ("a.b.c=", "malformed"),
        ("A" * (MAX_TOKEN_LENGTH + 1), "malformed"),
        ("." + "A" * 5000 + ".AAAA.AAAA", "malformed"),  # bounded before any base64 or zlib work
        ("eyJhIjoxfQ.AAAA.AAAA", "bad_signature"),
        ("a.b.c", "bad_signature"),
    ],
)
def test_garbage_is_refused_without_echoing_it(token: str, expected: str) -> None:
    """Refusals carry a reason and a fixed message; they are NotifyError and ValueError."""
    with pytest.raises(InvalidToken) as caught:
        signer().verify(Purpose.CLICK, token)
    assert caught.value.reason == expected
    assert not token or token not in str(caught.value)
    assert isinstance(caught.value, NotifyError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2, 3],
        {"d": "x"},
        {"d": "1", "n": "2", "u": "3", "s": "4", "c": "fax", "k": "6"},  # not a channel
        {"d": 1, "n": "2", "u": "3", "s": "4", "c": "email", "k": "6"},  # not a string
        {"d": "1", "n": "2", "u": "3", "s": "4", "c": "email", "k": "6", "l": "https://x"},  # an url on OPEN
        {"d": "1", "n": "2", "u": "3", "s": "4", "c": "email", "k": "6", "z": "?"},  # an unknown key
    ],
)
def test_a_signed_payload_of_the_wrong_shape_is_malformed(payload: object) -> None:
    """Correctly signed but not what sign() writes (a leaked key, an old format): malformed."""
    made = signer()
    token = made._serializers[Purpose.OPEN].dumps(payload)  # what only the key holder can mint
    assert reason(Purpose.OPEN, token, made) == "malformed"


def test_click_without_url_open_with_url_and_huge_tokens_are_refused_when_signing() -> None:
    """sign() never mints a token verify() would refuse."""
    with pytest.raises(ValueError, match="url"):
        signer().sign(Purpose.CLICK, DELIVERY)
    with pytest.raises(ValueError, match="url"):
        signer().sign(Purpose.OPEN, CLICK)
    huge = dataclasses.replace(CLICK, url="https://example.com/" + "".join(f"{i:x}" for i in range(2000)))
    with pytest.raises(ValueError, match=str(MAX_TOKEN_LENGTH)):
        signer().sign(Purpose.CLICK, huge)


@pytest.mark.parametrize("bad", [{"tracking_secrets": []}, {"unsubscribe_secrets": [""]}])
def test_empty_secrets_are_a_configuration_error(bad: dict[str, list[str]]) -> None:
    """No tracking secret, or an empty unsubscribe secret, is a ConfigError when the signer is built."""
    kwargs: dict[str, list[str]] = {"tracking_secrets": ["t"], "unsubscribe_secrets": ["u"]} | bad
    with pytest.raises(ConfigError, match="secrets"):
        TrackingSigner(**kwargs)  # type: ignore[arg-type]


def test_url_builders() -> None:
    """The paths the HTTP API serves, under the base with or without a trailing slash."""
    assert click_url("https://t.example.com", "a.b.c") == "https://t.example.com/t/click/a.b.c"
    assert open_pixel_url("https://t.example.com/", "a.b.c") == "https://t.example.com/t/open/a.b.c"
    assert unsubscribe_url("http://127.0.0.1:8080", ".x.y.z") == "http://127.0.0.1:8080/t/unsubscribe/.x.y.z"


@settings(max_examples=1000, deadline=None)
@given(purpose=st.sampled_from(list(Purpose)), token=st.text(max_size=300) | st.from_regex(r"\.?[\w.-]+"))
def test_random_strings_only_ever_raise_invalid_token(purpose: Purpose, token: str) -> None:
    """No input makes verify() raise anything but InvalidToken (and nothing random verifies)."""
    with pytest.raises(InvalidToken):
        signer().verify(purpose, token)


@settings(max_examples=300, deadline=None)
@given(purpose=st.sampled_from(list(Purpose)), data=st.data())
def test_mangled_real_tokens_only_ever_raise_invalid_token(purpose: Purpose, data: st.DataObject) -> None:
    """Real tokens cut, spliced and padded: still only InvalidToken."""
    token = signer().sign(purpose, for_purpose(purpose))
    start = data.draw(st.integers(0, len(token)))
    end = data.draw(st.integers(start, len(token)))
    junk = data.draw(st.text(alphabet=string.ascii_letters + string.digits + "-_.=", max_size=20))
    mangled = token[:start] + junk + token[end:]
    if mangled == token:
        return
    with pytest.raises(InvalidToken):
        signer().verify(purpose, mangled)
