"""One-click unsubscribe tokens: they round-trip, and nothing but an untouched token verifies."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notify_core.exceptions import NotifyError
from notify_core.unsubscribe import InvalidUnsubscribeToken, sign, unsubscribe_url, verify

SECRET = "test-secret"
URL_SAFE = set(string.ascii_letters + string.digits + "-_.")

ids = st.text(max_size=80)
# Anything a tamperer could type into a URL, plus a few non-ASCII characters.
replacements = st.sampled_from([*sorted(set(string.printable) - set(string.whitespace)), "é", "\u2028"])


def test_round_trip_and_shape() -> None:
    token = sign("user-42", "marketing", "EMAIL", SECRET)
    assert verify(token, SECRET) == ("user-42", "marketing", "EMAIL")
    assert token.startswith("v1.")
    assert set(token) <= URL_SAFE
    assert sign("user-42", "marketing", "EMAIL", SECRET) == token  # deterministic
    assert sign("user-42", "marketing", "EMAIL", SECRET.encode()) == token  # str or bytes secret


def test_fields_are_bound_together() -> None:
    """Each field is covered by the MAC: a token for one user/category/channel never names another."""
    token = sign("u1", "news", "EMAIL", SECRET)
    for other in (("u2", "news", "EMAIL"), ("u1", "promo", "EMAIL"), ("u1", "news", "SMS")):
        assert sign(*other, SECRET) != token
    # Field boundaries are unambiguous: ("a,b", "c") and ("a", "b,c") differ.
    assert verify(sign("a,b", "c", "EMAIL", SECRET), SECRET) == ("a,b", "c", "EMAIL")
    assert verify(sign("a", "b,c", "EMAIL", SECRET), SECRET) == ("a", "b,c", "EMAIL")


def test_wrong_secret_is_refused() -> None:
    token = sign("u1", "news", "EMAIL", SECRET)
    with pytest.raises(InvalidUnsubscribeToken, match="signature"):
        verify(token, "another-secret")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "v1",
        "v1..",
        "v2.W10.AAAA",
        "v1.not base64!.AAAA",
        "v1.W10.AAAA",  # "[]": valid JSON, wrong shape
        "v1.eyJhIjoxfQ.AAAA",  # an object, not a list
        "v1.WzEsMiwzXQ.AAAA",  # [1,2,3]: not strings
        "v1.//8.AAAA",  # not UTF-8
        "é." * 3,
        "v1." + "A" * 5000 + ".AAAA",
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidUnsubscribeToken) as caught:
        verify(token, SECRET)
    assert token not in str(caught.value) or not token  # never echoed back
    assert isinstance(caught.value, NotifyError)
    assert isinstance(caught.value, ValueError)


def test_truncated_and_extended_tokens_are_refused() -> None:
    token = sign("u1", "news", "EMAIL", SECRET)
    for bad in (token[:-1], token + "A", token[1:], token + ".x", token.replace(".", "..", 1)):
        with pytest.raises(InvalidUnsubscribeToken):
            verify(bad, SECRET)


def test_non_canonical_base64_is_refused() -> None:
    """The last base64 character carries unused low bits; a lenient decoder ignores them. We do not."""
    token = sign("u1", "news", "EMAIL", SECRET)
    last = token[-1]
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    sibling = alphabet[alphabet.index(last) ^ 1]  # differs only in the lowest (unused) bit
    with pytest.raises(InvalidUnsubscribeToken):
        verify(token[:-1] + sibling, SECRET)


def test_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="secret"):
        sign("u1", "news", "EMAIL", "")


def test_unsubscribe_url() -> None:
    url = unsubscribe_url("https://example.com/u/", "u1", "news", "EMAIL", SECRET)
    base, _, token = url.rpartition("/")
    assert base == "https://example.com/u"
    assert verify(token, SECRET) == ("u1", "news", "EMAIL")
    assert unsubscribe_url("https://example.com/u", "u1", "news", "EMAIL", SECRET) == url


@settings(max_examples=300, deadline=None)
@given(user_id=ids, category=ids, channel=st.sampled_from(["EMAIL", "SMS", "IOS", "ANDROID"]))
def test_round_trip_property(user_id: str, category: str, channel: str) -> None:
    token = sign(user_id, category, channel, SECRET)
    assert set(token) <= URL_SAFE
    assert verify(token, SECRET) == (user_id, category, channel)


@settings(max_examples=500, deadline=None)
@given(user_id=ids, category=ids, data=st.data())
def test_any_single_character_tamper_fails(user_id: str, category: str, data: st.DataObject) -> None:
    token = sign(user_id, category, "EMAIL", SECRET)
    index = data.draw(st.integers(min_value=0, max_value=len(token) - 1), label="index")
    replacement = data.draw(replacements.filter(lambda c: c != token[index]), label="replacement")
    tampered = token[:index] + replacement + token[index + 1 :]
    with pytest.raises(InvalidUnsubscribeToken):
        verify(tampered, SECRET)
