"""From a JSON body to the SDK's ``NotificationRequest`` (pure): the service from the key, the
Idempotency-Key header, and every contract error named by its JSON pointer.

The request model is the SDK's own (``notify_core.request_model``): the API adds no rules of its
own but two: ``service`` is never taken from the body, and an ``Idempotency-Key`` makes the
notification ids deterministic, so a retried call gets the same ids and the router's dedupe drops
the second copy.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

from api.errors import BadRequest, Unprocessable, field_error, pointer
from notify_core.exceptions import InvalidRequestError
from notify_core.request_model import NotificationRequest

MAX_IDEMPOTENCY_KEY = 190  # the request model allows 200; batch items add "#<index>"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII, as the IETF draft's examples
# Fixed: the same (service, key) must map to the same id in every API process, for ever.
_ID_NAMESPACE = uuid.UUID("5b1c0f6e-3f0a-4c5e-9a57-6b0f3e2d9c41")


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


def one_request(body: Any, service: str, idem: str | None, *base: str | int) -> NotificationRequest:
    """Raises ``Unprocessable`` naming every bad field below ``base``."""
    return NotificationRequest.parse(_prepared(body, service, idem, base))


def _prepared(body: Any, service: str, idem: str | None, base: tuple[str | int, ...]) -> dict[str, Any]:
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
        data["notification_id"] = str(uuid.uuid5(_ID_NAMESPACE, f"{service}\0{key}"))
    return data


def parse_one(body: Any, service: str, idem: str | None) -> NotificationRequest:
    try:
        return one_request(body, service, idem)
    except InvalidRequestError as exc:
        raise Unprocessable(errors=_errors(exc)) from None


def parse_batch(body: Any, service: str, idem: str | None, max_count: int) -> list[NotificationRequest]:
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
        item_idem = f"{idem}#{index}" if idem is not None and not own else None
        try:
            parsed.append(one_request(item, service, item_idem, "notifications", index))
        except InvalidRequestError as exc:
            errors += _errors(exc, "notifications", index)
        except Unprocessable as exc:
            errors += exc.errors
        if len(errors) >= 100:
            errors.append(field_error("/notifications", "further items not checked"))
            break
    if errors:
        raise Unprocessable(errors=errors)
    return parsed


def _errors(exc: InvalidRequestError, *base: str | int) -> list[dict[str, str]]:
    return [
        field_error(pointer(*base, *loc), message)
        for loc, (_, message) in zip(exc.locations, exc.problems, strict=True)
    ]
