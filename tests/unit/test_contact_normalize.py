"""Phone numbers (phonenumbers) and e-mail addresses (email-validator): normalised, refused without echo."""

from __future__ import annotations

import pytest

from notify_core.exceptions import InvalidUserData
from notify_core.userdata.repository import normalize_email, normalize_phone


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("+33612345678", "+33612345678"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("+1 (201) 555-0100", "+12015550100"),  # NANP 555-01xx: fictional, and valid to libphonenumber
        ("+44 20 7946 0001", "+442079460001"),  # Ofcom's drama range
        ("tel:+1-201-555-0199", "+12015550199"),
        ("+4915112345678", "+4915112345678"),
    ],
)
def test_valid_numbers_are_stored_as_e164(given: str, stored: str) -> None:
    assert normalize_phone(given) == stored


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("+12", "does not look like a phone number"),  # the old regex took it
        ("0612345678", "country code"),  # national form: which country?
        ("+999123456789", "country code"),
        ("+1" + "2" * 20, "too long"),
        ("", "does not look like a phone number"),
        ("+15555550123", "no such number range"),  # possible (right length), not valid: no 555 area code
        ("+447700900001", "no such number range"),
        ("+10000000000", "no such number range"),
        ("+1 201 555 0100 ext. 12", "extension"),
    ],
)
def test_bad_numbers_are_refused_without_echoing_them(given: str, why: str) -> None:
    with pytest.raises(InvalidUserData, match="phone number") as refused:
        normalize_phone(given)
    text = str(refused.value)
    assert why in text
    error = refused.value  # no chained library error that a traceback would print
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    digits = "".join(c for c in given if c.isdigit())
    if len(digits) >= 4:
        assert digits not in "".join(c for c in text if c.isdigit())


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("ada@example.com", "ada@example.com"),
        ("  ada@example.com ", "ada@example.com"),
        ("Ada.Lovelace@Example.COM", "ada.lovelace@example.com"),  # lower-case, as the schema requires
        ("me@\uff24\uff4f\uff4d\uff41\uff49\uff4e.com", "me@domain.com"),  # full-width "Domain" (UTS 46)
        ("grace@bücher.de", "grace@bücher.de"),
        ("Grâce@Bücher.DE", "grâce@bücher.de"),
        ("gra\u0063\u0302e@example.com", "gra\u0109e@example.com"),  # NFC: c + combining circumflex
        ("grace@xn--bcher-kva.de", "grace@bücher.de"),  # Punycode shown as Unicode
    ],
)
def test_addresses_are_stored_normalised(given: str, stored: str) -> None:
    assert normalize_email(given) == stored


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("not-an-address", "must have an @-sign"),
        ("ada@", "something after the @-sign"),
        ("@example.com", "something before the @-sign"),
        ("ada@example", "period"),
        ("ada@@example.com", "invalid characters"),
        ("ada lovelace@example.com", "invalid characters"),
        ("ada@exam_ple.com", "invalid characters"),
        ("ada..lovelace@example.com", "two periods"),
        ("Ada <ada@example.com>", "display name"),
        ("ada@example.com\x00", "invalid characters"),
        ("ada@localhost", "period"),
        ("ada@x." + "a" * 300 + ".com", "too long"),
        ("ada@xn--ls8h.la", "not valid IDNA."),  # the library's text quotes the label ('\U0001f4a9'): cut
    ],
)
def test_bad_addresses_are_refused_without_echoing_them(given: str, why: str) -> None:
    with pytest.raises(InvalidUserData, match="not a valid e-mail address") as refused:
        normalize_email(given)
    text = str(refused.value)
    assert why in text
    assert given.strip() not in text
    assert "ada" not in text.lower()
    assert "\U0001f4a9" not in text
