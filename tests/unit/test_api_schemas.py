"""The API's pure request handling: JSON bodies to NotificationRequests with every error named by its
JSON pointer (api/notification_schemas.py), Idempotency-Keys and deterministic ids, body
fingerprints; and the API keys' format (api/keys.py)."""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.errors import BadRequest, Unprocessable
from api.keys import InvalidKey, key_id_of, mint
from api.notification_schemas import (
    MAX_IDEMPOTENCY_KEY,
    fingerprint,
    id_namespace,
    idempotency_key,
    parse_batch,
    parse_one,
)

TOKEN = re.compile(r"^nfy_[0-9a-f]{12}_[A-Za-z0-9_-]{43}\Z")


def body(**overrides: Any) -> dict[str, Any]:
    return {"user_id": "u-1", "template_id": "welcome", "category": "account", **overrides}


def pointers(exc: pytest.ExceptionInfo[Unprocessable]) -> list[str]:
    return [error["pointer"] for error in exc.value.errors]


NS = id_namespace("test-secret")
PINNED = "05b25e02-2f35-53b8-9909-335a8a4197d3"  # billing, order-42 under test-secret


# --- single requests --------------------------------------------------------------------------------


def test_a_good_body_becomes_a_request_sent_as_the_keys_service() -> None:
    """The service is the key's; the rest is the body's; without an Idempotency-Key the id is random."""
    first, second = (parse_one(body(priority="high"), "billing", None, NS) for _ in range(2))
    assert (first.service, first.user_id, first.priority) == ("billing", "u-1", "high")
    assert first.notification_id != second.notification_id


def test_every_bad_field_of_a_single_request_is_named_by_its_pointer() -> None:
    """A missing field, a bad enum and an unknown field: one error each, at /<field>."""
    with pytest.raises(Unprocessable) as exc:
        parse_one(
            {"template_id": "welcome", "category": "account", "priority": "urgent", "x": 1}, "b", None, NS
        )
    assert sorted(pointers(exc)) == ["/priority", "/user_id", "/x"]


def test_pointers_escape_slash_and_tilde_in_map_keys() -> None:
    """A bad param named "a/b" is /params/a~1b and one named "x~y" is /params/x~0y (RFC 6901)."""
    with pytest.raises(Unprocessable) as exc:
        parse_one(body(params={"a/b": [1], "x~y": {}}), "billing", None, NS)
    assert sorted(pointers(exc)) == ["/params/a~1b", "/params/x~0y"]


def test_a_body_that_is_not_an_object_is_named_at_the_root() -> None:
    """A JSON array or string body: one error at the empty pointer (the whole body)."""
    for value in ([body()], "text", None):
        with pytest.raises(Unprocessable) as exc:
            parse_one(value, "billing", None, NS)
        assert pointers(exc) == [""]


def test_a_service_in_the_body_is_refused_even_when_it_is_the_keys_own() -> None:
    """The service comes from the key only: naming it in the body, even the same one, is a 422 at /service."""
    for service in ("billing", "other"):
        with pytest.raises(Unprocessable) as exc:
            parse_one(body(service=service), "billing", None, NS)
        assert pointers(exc) == ["/service"]


# --- batches ----------------------------------------------------------------------------------------


def test_batch_errors_are_named_by_item_index() -> None:
    """A non-object item, a service in an item and a bad field: /notifications/<i>[/<field>] each;
    the good item 0 is not mentioned."""
    items = [body(), 5, body(service="x"), body(user_id="")]
    with pytest.raises(Unprocessable) as exc:
        parse_batch({"notifications": items}, "billing", None, 10, NS)
    assert pointers(exc) == ["/notifications/1", "/notifications/2/service", "/notifications/3/user_id"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([], [""]),
        ({"notifications": [body()], "extra": 1, "more": 2}, ["/extra", "/more"]),
        ({"notifications": []}, ["/notifications"]),
        ({"notifications": {"0": body()}}, ["/notifications"]),
        ({}, ["/notifications"]),
    ],
)
def test_a_batch_body_of_the_wrong_shape_is_named(value: Any, expected: list[str]) -> None:
    """Not an object (root), unknown top-level fields (each), no or an empty or a non-array list."""
    with pytest.raises(Unprocessable) as exc:
        parse_batch(value, "billing", None, 10, NS)
    assert pointers(exc) == expected


def test_a_batch_over_the_maximum_is_refused_as_too_large() -> None:
    """max + 1 items: 422 batch-too-large at /notifications, before any item is checked."""
    with pytest.raises(Unprocessable) as exc:
        parse_batch({"notifications": [{}] * 4}, "billing", None, 3, NS)
    assert exc.value.slug == "batch-too-large"
    assert pointers(exc) == ["/notifications"]


def test_a_batch_of_many_bad_items_stops_listing_after_a_hundred_errors() -> None:
    """60 items with 3 missing fields each: the errors stop once 100 are listed, with a last entry
    saying the rest was not checked, so a hostile batch gets a bounded answer."""
    with pytest.raises(Unprocessable) as exc:
        parse_batch({"notifications": [{}] * 60}, "billing", None, 100, NS)
    errors = exc.value.errors
    assert 100 <= len(errors) <= 104
    assert errors[-1] == {"pointer": "/notifications", "detail": "further items not checked"}


def test_a_good_batch_keeps_the_order_and_the_service() -> None:
    """Every item parsed, in order, each sent as the key's service."""
    parsed = parse_batch(
        {"notifications": [body(user_id=f"u-{i}") for i in range(5)]}, "billing", None, 5, NS
    )
    assert [(n.user_id, n.service) for n in parsed] == [(f"u-{i}", "billing") for i in range(5)]


# --- Idempotency-Key ----------------------------------------------------------------------------------


def test_the_idempotency_key_header_is_read_as_visible_ascii_optionally_quoted() -> None:
    """None stays None; surrounding spaces and the structured-field quotes go; up to the maximum is fine."""
    assert idempotency_key(None) is None
    assert idempotency_key(' "order-42" ') == "order-42"
    assert idempotency_key("k" * MAX_IDEMPOTENCY_KEY) == "k" * MAX_IDEMPOTENCY_KEY


@pytest.mark.parametrize("header", ["", '""', "a b", "caf\u00e9", "k" * (MAX_IDEMPOTENCY_KEY + 1), "a\tb"])
def test_a_bad_idempotency_key_header_is_a_400(header: str) -> None:
    """Empty, quotes only, an inner space or tab, non-ASCII, or over the maximum: 400 bad-idempotency-key."""
    with pytest.raises(BadRequest) as exc:
        idempotency_key(header)
    assert exc.value.slug == "bad-idempotency-key"


def test_an_idempotency_key_gives_the_same_id_per_service_for_ever() -> None:
    """The same (service, key) always maps to the same version-5 id under one secret (pinned: other
    API processes and past responses depend on it); another service or another secret gives another
    id, so no service can compute, and take first, the id another service's key will get."""
    first = parse_one(body(), "billing", "order-42", NS)
    again = parse_one(body(user_id="someone-else"), "billing", "order-42", NS)
    other = parse_one(body(), "shipping", "order-42", NS)
    elsewhere = parse_one(body(), "billing", "order-42", id_namespace("another-secret"))
    assert first.notification_id == again.notification_id
    assert first.notification_id == uuid.UUID(PINNED)
    assert first.notification_id.version == 5
    assert other.notification_id != first.notification_id
    assert elsewhere.notification_id != first.notification_id
    assert first.idempotency_key == "order-42"


def test_batch_items_get_the_key_with_their_index() -> None:
    """In a batch under key K, item i is sent with idempotency key "K i": ids differ per index and
    repeat per call; no single send can have that key (a header key has no space)."""
    items = {"notifications": [body(), body(), body()]}
    first, second = (parse_batch(items, "billing", "order-42", 10, NS) for _ in range(2))
    assert [n.idempotency_key for n in first] == ["order-42 0", "order-42 1", "order-42 2"]
    assert [n.notification_id for n in first] == [n.notification_id for n in second]
    assert len({n.notification_id for n in first}) == 3
    with pytest.raises(BadRequest):
        idempotency_key("order-42 1")


def test_repeated_ids_or_keys_in_a_batch_are_refused_by_index() -> None:
    """Two items with one notification_id, or one idempotency_key (an item's own equal to another's
    derived one included): 422 naming the later item, instead of the router dropping it."""
    own = "7d1e2f30-4a5b-4c6d-8e7f-901a2b3c4d5e"
    with pytest.raises(Unprocessable) as exc:
        parse_batch(
            {"notifications": [body(notification_id=own), body(notification_id=own)]}, "b", None, 10, NS
        )
    assert pointers(exc) == ["/notifications/1/notification_id"]
    with pytest.raises(Unprocessable) as exc:
        parse_batch({"notifications": [body(), body(idempotency_key="K 0")]}, "b", "K", 10, NS)
    assert pointers(exc) == ["/notifications/1/notification_id", "/notifications/1/idempotency_key"]


def test_a_lone_surrogate_in_an_idempotency_key_is_a_field_error() -> None:
    """A body key that is no text (a lone surrogate, valid in JSON): a 422 naming the field, never
    an exception while the id is derived."""
    with pytest.raises(Unprocessable) as exc:
        parse_one(body(idempotency_key="a\udcff"), "billing", None, NS)
    assert pointers(exc) == ["/idempotency_key"]


def test_a_body_idempotency_key_must_agree_with_the_header() -> None:
    """In a single request the same key in body and header is fine and another one is a 422 at
    /idempotency_key. In a batch an item's own idempotency_key wins over the header's "K i": it is
    kept, and the item's id is derived from it."""
    assert parse_one(body(idempotency_key="k"), "billing", "k", NS).idempotency_key == "k"
    with pytest.raises(Unprocessable) as exc:
        parse_one(body(idempotency_key="other"), "billing", "k", NS)
    assert pointers(exc) == ["/idempotency_key"]
    first, own = parse_batch(
        {"notifications": [body(), body(idempotency_key="mine")]}, "billing", "k", 10, NS
    )
    assert (first.idempotency_key, own.idempotency_key) == ("k 0", "mine")
    assert own.notification_id == parse_one(body(), "billing", "mine", NS).notification_id


def test_an_explicit_notification_id_wins_over_the_derived_one() -> None:
    """A body that sets notification_id keeps it, Idempotency-Key or not."""
    own = "7d1e2f30-4a5b-4c6d-8e7f-901a2b3c4d5e"
    assert str(parse_one(body(notification_id=own), "billing", "k", NS).notification_id) == own


def test_the_fingerprint_ignores_key_order_and_spacing_but_not_values() -> None:
    """Bodies equal as JSON values (any key order, nested too) share a fingerprint; any other value,
    a type change included, does not."""
    a = {"user_id": "u", "params": {"x": 1, "y": [1, {"b": 2, "a": 1}]}}
    b = {"params": {"y": [1, {"a": 1, "b": 2}], "x": 1}, "user_id": "u"}
    assert fingerprint(a) == fingerprint(b)
    assert len(fingerprint(a)) == 32
    assert fingerprint(a) != fingerprint({**a, "user_id": "v"})
    assert fingerprint({"x": 1}) != fingerprint({"x": "1"})
    assert fingerprint({"x": [1, 2]}) != fingerprint({"x": [2, 1]})


# --- API keys -----------------------------------------------------------------------------------------


def test_mint_gives_a_well_formed_key_with_a_256_bit_secret() -> None:
    """nfy_<12 hex>_<43 URL-safe base64>: the id is the token's public part, the secret decodes to
    32 random bytes, and no two minted keys share an id or a secret."""
    minted = [mint() for _ in range(50)]
    for key_id, token in minted:
        assert TOKEN.match(token), token
        assert token.startswith(f"nfy_{key_id}_")
        secret = base64.urlsafe_b64decode(token.removeprefix(f"nfy_{key_id}_") + "=")
        assert len(secret) * 8 == 256
        assert key_id_of(token) == key_id
    assert len({key_id for key_id, _ in minted}) == 50
    assert len({token.removeprefix(f"nfy_{key_id}_") for key_id, token in minted}) == 50


@pytest.mark.parametrize(
    "token",
    [
        "",
        "nope",
        "nfy_0123456789ab",
        "nfy_0123456789AB_" + "A" * 43,  # upper-case hex
        "nfy_0123456789a_" + "A" * 43,  # 11 hex digits
        "nfy_0123456789ab_" + "A" * 42,
        "nfy_0123456789ab_" + "A" * 44,
        "nfy_0123456789ab_" + "A" * 42 + "=",
        "xyz_0123456789ab_" + "A" * 43,
        " nfy_0123456789ab_" + "A" * 43,
        "nfy_0123456789ab_" + "A" * 43 + "\n",
        "nfy_0123456789ab_" + "A" * 42 + "\u00c5",  # non-ASCII
        "nfy_\uff10123456789ab_" + "A" * 43,  # a full-width digit, which \d would match
    ],
)
def test_key_id_of_refuses_anything_but_a_well_formed_token(token: str) -> None:
    """Wrong prefix, length, case, alphabet, surrounding whitespace or a non-ASCII character: InvalidKey."""
    with pytest.raises(InvalidKey):
        key_id_of(token)


@settings(max_examples=500, deadline=None, database=None, derandomize=True)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet="nfy_0123456789abcdefABCDEF-", max_size=80),
        st.from_regex(r"nfy_[0-9a-fA-F]{11,13}_[A-Za-z0-9_=-]{42,44}\n?", fullmatch=True),
    )
)
def test_key_id_of_on_any_text_is_invalid_key_or_twelve_hex_digits(text: str) -> None:
    """For any text whatever: either InvalidKey, or a key id of exactly 12 lower-case hex digits."""
    try:
        key_id = key_id_of(text)
    except InvalidKey:
        return
    assert re.fullmatch(r"[0-9a-f]{12}", key_id)
