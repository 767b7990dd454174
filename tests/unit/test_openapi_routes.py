"""api/openapi.json against the app it describes: the same operations, the same public ones, request
bodies with the models' own fields and limits, a valid OpenAPI 3.1 document, stable on disk."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import openapi_spec_validator as validator
import pytest
from pydantic import BaseModel

from api import user_schemas
from api.app import create_app
from api.notification_schemas import MAX_IDEMPOTENCY_KEY as HEADER_IDEMPOTENCY_KEY_MAX
from api.ops import openapi_document
from notify_core import request_model as rm
from notify_core.resources import package_dir
from notify_core.settings import Settings

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/t/click/{token}"),
    ("GET", "/t/open/{token}"),
    ("GET", "/t/unsubscribe/{token}"),
    ("POST", "/t/unsubscribe/{token}"),
    ("POST", "/v1/events/opened"),
}
Operation = tuple[str, str]


def app_operations() -> set[Operation]:
    """(METHOD, canonical path) of every route, without the HEAD twins aiohttp adds for GET."""
    app = create_app(Settings())  # no I/O: the pool and the producers open at startup
    routes = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
    return {(method, path) for method, path in routes if method != "HEAD"}


def document_operations(document: dict[str, Any]) -> dict[Operation, dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


def schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = document["components"]["schemas"][name]
    return found


def test_every_route_is_documented_and_every_documented_operation_is_served(
    document: dict[str, Any],
) -> None:
    """The app's (method, path) pairs and the document's operations are the same set, both ways."""
    served = app_operations()
    documented = set(document_operations(document))
    assert sorted(served - documented) == [], "routes the document does not describe"
    assert sorted(documented - served) == [], "documented operations the app does not serve"


def test_public_operations_declare_no_security_and_the_rest_the_bearer_key(document: dict[str, Any]) -> None:
    """Exactly the tracking and operations endpoints say `security: []`; every other operation
    names the http bearer scheme, and that scheme is declared."""
    scheme = document["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for key, operation in document_operations(document).items():
        expected: list[dict[str, list[str]]] = [] if key in PUBLIC else [{"apiKey": []}]
        assert operation.get("security") == expected, key


def test_every_operation_documents_its_problems_as_problem_json(document: dict[str, Any]) -> None:
    """Authenticated operations list 401, 403, 429 and 503; every 4xx/5xx response is
    application/problem+json with a schema built on the shared Problem, but for the plain-text 400
    that aiohttp's HTTP parser gives itself (a request line or header over 8190 bytes), which every
    operation lists."""
    responses = document["components"]["responses"]
    for key, operation in document_operations(document).items():
        codes = set(operation["responses"])
        assert "400" in codes, key
        if key not in PUBLIC:
            assert {"401", "403", "429", "503"} <= codes, key
        for code, response in operation["responses"].items():
            if int(code) < 400:
                continue
            if "$ref" in response:
                response = responses[response["$ref"].rsplit("/", 1)[1]]
            media_types = set(response["content"])
            assert media_types <= {"application/problem+json", "text/plain"}, (key, code)
            if code != "400":
                assert media_types == {"application/problem+json"}, (key, code)
            if "application/problem+json" not in media_types:
                continue
            ref = response["content"]["application/problem+json"]["schema"]["$ref"]
            body = schema(document, ref.rsplit("/", 1)[1])
            assert body["allOf"] == [{"$ref": "#/components/schemas/Problem"}], (key, code)
            assert body["properties"]["status"]["const"] == int(code), (key, code)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    """openapi-spec-validator (installed with moto's server, pinned in constraints.txt) finds nothing
    wrong with the document, and every schema is a valid JSON Schema 2020-12 whose patterns Python's
    re compiles."""
    assert document["openapi"].startswith("3.1.")
    validator.validate(document)
    for definition in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(definition)
        for pattern in _patterns(definition):
            re.compile(pattern)


def _patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return own + [p for value in node.values() for p in _patterns(value)]
    if isinstance(node, list):
        return [p for value in node for p in _patterns(value)]
    return []


def test_the_file_is_pretty_printed_with_sorted_keys() -> None:
    """The committed file is exactly its own pretty-printed, key-sorted form: regenerating it or
    editing it by hand gives reviewable diffs."""
    text = (package_dir("api") / "openapi.json").read_text("utf-8")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=True) + "\n"


@pytest.mark.parametrize(
    ("name", "model", "left_out"),
    [
        ("NotificationBody", rm.NotificationRequest, {"service"}),
        ("UserBody", user_schemas.UserBody, set()),
        ("DeviceBody", user_schemas.DeviceBody, set()),
        ("EmailBody", user_schemas.EmailBody, set()),
        ("PhoneBody", user_schemas.PhoneBody, set()),
        ("PreferencesPatch", user_schemas.PreferencesPatch, set()),
        ("Choice", user_schemas.Choice, set()),
    ],
)
def test_request_bodies_have_the_models_fields(
    document: dict[str, Any], name: str, model: type[BaseModel], left_out: set[str]
) -> None:
    """Each request body schema has the pydantic model's fields (the API sets ``service`` itself),
    the same required ones, and refuses extras as the model does."""
    body = schema(document, name)
    fields = {n: f for n, f in model.model_fields.items() if n not in left_out}
    assert set(body["properties"]) == set(fields)
    assert set(body.get("required", [])) == {n for n, f in fields.items() if f.is_required()}
    assert model.model_config.get("extra") == "forbid"
    assert body["additionalProperties"] is False


def test_the_notification_body_states_the_request_models_limits(document: dict[str, Any]) -> None:
    """Lengths, counts, patterns and enums of the notification body are the request model's."""
    props = schema(document, "NotificationBody")["properties"]
    lengths = {
        "user_id": (1, rm.MAX_USER_ID),
        "template_id": (1, rm.MAX_TEMPLATE_ID),
        "category": (1, rm.MAX_NAME),
        "idempotency_key": (1, rm.MAX_IDEMPOTENCY_KEY),
    }
    for field, (low, high) in lengths.items():
        assert (props[field]["minLength"], props[field]["maxLength"]) == (low, high), field
    assert props["locale"]["maxLength"] == rm.MAX_LOCALE
    assert props["locale"]["pattern"] == rm.LOCALE_PATTERN
    assert props["template_id"]["pattern"] == rm.TEMPLATE_ID_PATTERN
    assert props["category"]["pattern"] == rm.NAME_PATTERN
    assert props["priority"]["enum"] == ["low", "normal", "high", "critical"]
    assert props["channels"]["maxItems"] == 4
    assert props["channels"]["uniqueItems"] is True
    assert props["params"]["maxProperties"] == rm.MAX_PARAMS
    assert props["params"]["propertyNames"]["maxLength"] == rm.MAX_PARAM_KEY
    assert props["metadata"]["maxProperties"] == rm.MAX_METADATA
    assert props["metadata"]["propertyNames"]["maxLength"] == rm.MAX_METADATA_KEY
    assert props["metadata"]["additionalProperties"]["maxLength"] == rm.MAX_METADATA_VALUE
    value = schema(document, "ParamValue")["anyOf"]
    assert {"type": "integer", "minimum": rm.AVRO_LONG_MIN, "maximum": rm.AVRO_LONG_MAX} in value
    assert [v["maxLength"] for v in value if v.get("type") == "string"] == [rm.MAX_PARAM_STRING]
    header = document["components"]["parameters"]["IdempotencyKey"]["schema"]["pattern"]
    assert header.endswith(f"{{1,{HEADER_IDEMPOTENCY_KEY_MAX}}}$")
    batch = schema(document, "BatchBody")["properties"]["notifications"]
    assert batch["maxItems"] == Settings().api_max_batch


def test_the_identifier_pattern_refuses_exactly_the_request_models_forbidden_characters(
    document: dict[str, Any],
) -> None:
    """For every code point below the supplementary private-use planes (the document says the pattern
    leaves those out) but the surrogates (JSON text cannot carry them unpaired), "a" + c matches the
    documented identifier pattern iff the request model allows c in an identifier; and a value of
    spaces only does not match (it is empty once stripped)."""
    pattern = re.compile(schema(document, "NotificationBody")["properties"]["user_id"]["pattern"])
    wrong = [
        f"U+{code:04X}"
        for code in range(0xF0000)
        if not 0xD800 <= code <= 0xDFFF
        and (pattern.fullmatch("a" + chr(code)) is None) != (rm._forbidden_kind(chr(code)) is not None)
    ]
    assert wrong == [], "regenerate the pattern from notify_core.request_model._forbidden_kind"
    assert pattern.fullmatch("   ") is None
    assert pattern.fullmatch("  a b ") is not None
