"""From a JSON body to the SDK's ``NotificationRequest`` (pure): the service from the key, the
Idempotency-Key header, and every contract error named by its JSON pointer.

The request model is the SDK's own (``notify_core.request_model``): the API adds no rules of its
own but two: ``service`` is never taken from the body, and an ``Idempotency-Key`` makes the
notification ids deterministic, so a retried call gets the same ids and the router's dedupe drops
the second copy.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from typing import Any

from api.errors import BadRequest, Unprocessable, field_error, pointer
from notify_core.exceptions import InvalidRequestError
from notify_core.request_model import NotificationRequest

MAX_IDEMPOTENCY_KEY = 190  # the request model allows 200; batch items add " <index>"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII, as the IETF draft's examples


def id_namespace(secret: str) -> uuid.UUID:
    """The namespace ids are derived in: secret, so another service cannot compute (and take first)
    the id a service's Idempotency-Key will get; the same in every API process."""
    return uuid.UUID(bytes=hmac.new(secret.encode(), b"notify.notification-id", hashlib.sha256).digest()[:16])


def derived_id(namespace: uuid.UUID, service: str, key: str) -> str | None:
    """The notification id for (service, key); ``None`` for a key that is no text (a lone surrogate:
    the model refuses it with a clear error)."""
    try:
        return str(uuid.uuid5(namespace, f"{service}\0{key}"))
    except UnicodeEncodeError:
        return None


def idempotency_key(header: str | None) -> str | None:
    if header is None:
        return None
    key = header.strip().strip('"')  # the draft sends it as a structured-field string: "abc"
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not _IDEMPOTENCY_KEY.match(key):
        raise BadRequest(
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters",
            slug="bad-idempotency-key",
        )
    return key


def fingerprint(body: Any) -> bytes:
    """The same for the same JSON value, however it was spaced or ordered."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).digest()


def one_request(
    body: Any, service: str, idem: str | None, namespace: uuid.UUID, *base: str | int
) -> NotificationRequest:
    """Raises ``Unprocessable`` naming every bad field below ``base``."""
    return NotificationRequest.parse(_prepared(body, service, idem, namespace, base))


def _prepared(
    body: Any, service: str, idem: str | None, namespace: uuid.UUID, base: tuple[str | int, ...]
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Unprocessable(errors=[field_error(pointer(*base), "must be a JSON object")])
    if "service" in body:
        raise Unprocessable(
            errors=[field_error(pointer(*base, "service"), "is set from the API key: leave it out")]
        )
    data = {**body, "service": service}
    if idem is not None:
        own = data.get("idempotency_key")
        if own is None:
            data["idempotency_key"] = idem
        elif own != idem:
            raise Unprocessable(
                errors=[
                    field_error(pointer(*base, "idempotency_key"), "differs from the Idempotency-Key header")
                ]
            )
    key = data.get("idempotency_key")
    if "notification_id" not in data and isinstance(key, str) and key:
        derived = derived_id(namespace, service, key)
        if derived is not None:
            data["notification_id"] = derived
    return data


def parse_one(body: Any, service: str, idem: str | None, namespace: uuid.UUID) -> NotificationRequest:
    try:
        return one_request(body, service, idem, namespace)
    except InvalidRequestError as exc:
        raise Unprocessable(errors=_errors(exc)) from None


def parse_batch(
    body: Any, service: str, idem: str | None, max_count: int, namespace: uuid.UUID
) -> list[NotificationRequest]:
    """Every item validated; 422 naming each bad item by its index (``/notifications/3/user_id``)."""
    if not isinstance(body, dict):
        raise Unprocessable(errors=[field_error("", "must be a JSON object with a 'notifications' array")])
    extra = sorted(set(body) - {"notifications"})
    if extra:
        raise Unprocessable(errors=[field_error(pointer(k), "unknown field") for k in extra[:20]])
    items = body.get("notifications")
    if not isinstance(items, list) or not items:
        raise Unprocessable(errors=[field_error("/notifications", "must be a non-empty array")])
    if len(items) > max_count:
        raise Unprocessable(
            f"a batch takes at most {max_count} notifications, this one has {len(items)}",
            errors=[field_error("/notifications", f"at most {max_count} items")],
            slug="batch-too-large",
        )
    parsed: list[NotificationRequest] = []
    errors: list[dict[str, str]] = []
    for index, item in enumerate(items):
        # An item's own idempotency_key wins over the header's derived one.
        own = isinstance(item, dict) and item.get("idempotency_key") is not None
        # A space: it cannot occur in a header's key, so no single send's key can equal an item's.
        item_idem = f"{idem} {index}" if idem is not None and not own else None
        try:
            parsed.append(one_request(item, service, item_idem, namespace, "notifications", index))
        except InvalidRequestError as exc:
            errors += _errors(exc, "notifications", index)
        except Unprocessable as exc:
            errors += exc.errors
        if len(errors) >= 100:
            errors.append(field_error("/notifications", "further items not checked"))
            break
    if errors:
        raise Unprocessable(errors=errors)
    _refuse_repeats(parsed)
    return parsed


def _refuse_repeats(parsed: list[NotificationRequest]) -> None:
    """Two items with one id or one idempotency key: the router would drop the second as a
    duplicate, so the batch is refused instead of half of it silently lost."""
    errors: list[dict[str, str]] = []
    first_of: dict[tuple[str, str], int] = {}
    for index, request in enumerate(parsed):
        marks = [("notification_id", str(request.notification_id))]
        if request.idempotency_key is not None:
            marks.append(("idempotency_key", request.idempotency_key))
        for mark in marks:
            if mark in first_of:
                detail = f"the same {mark[0]} as item {first_of[mark]}"
                errors.append(field_error(pointer("notifications", index, mark[0]), detail))
            else:
                first_of[mark] = index
    if errors:
        raise Unprocessable(errors=errors[:100], slug="repeated-in-batch")


def _errors(exc: InvalidRequestError, *base: str | int) -> list[dict[str, str]]:
    return [
        field_error(pointer(*base, *loc), message)
        for loc, (_, message) in zip(exc.locations, exc.problems, strict=True)
    ]
