"""Reading request bodies: JSON (or a form) within the size limit, validated into models.

Every failure is a problem: 415 for another media type, 413 over the size limit (aiohttp's own
``client_max_size``, turned into a problem by the middleware), 400 for bytes that are not UTF-8
JSON, 422 for JSON that breaks a model, each bad field named by its JSON pointer.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from api.errors import BadRequest, Unprocessable, UnsupportedMediaType, field_error, pointer

M = TypeVar("M", bound=BaseModel)
MAX_ERRORS = 50  # listed in one problem document; the rest are summarised


async def read_json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (RecursionError, ValueError):  # nesting too deep, or an integer of thousands of digits
        raise BadRequest(
            "the body is JSON this API cannot read (nested too deeply or a huge number)"
        ) from None


def validate(model: type[M], data: Any, *base: str | int) -> M:
    """``data`` as ``model``, or 422 naming every bad field by its pointer below ``base``."""
    if not isinstance(data, dict):
        raise Unprocessable(errors=[field_error(pointer(*base), "must be a JSON object")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Unprocessable(errors=problems(exc, *base)) from None


def problems(exc: ValidationError, *base: str | int) -> list[dict[str, str]]:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    found = [field_error(pointer(*base, *err["loc"]), err["msg"]) for err in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        found.append(field_error(pointer(*base), f"{len(errors) - MAX_ERRORS} more problems not listed"))
    return found
