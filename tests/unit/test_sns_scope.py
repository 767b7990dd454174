"""``sandboxes.sns.credential_scope``: which requests the SNS sandbox may route from a cached lookup."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandboxes.sns import credential_scope

SIGNED = (
    "AWS4-HMAC-SHA256 Credential=testing/20261202/us-east-1/sns/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date, Signature=abc123"
)


def test_a_sigv4_header_gives_its_region_and_service() -> None:
    """botocore's Authorization header names the region and the service the request is for."""
    assert credential_scope({"HTTP_AUTHORIZATION": SIGNED}) == ("us-east-1", "sns")


def test_the_service_is_read_case_insensitively() -> None:
    """moto lower-cases the signing name before it finds the backend; so does the cache key."""
    header = SIGNED.replace("/sns/", "/SNS/")
    assert credential_scope({"HTTP_AUTHORIZATION": header}) == ("us-east-1", "sns")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "AWS testing:signature",  # SigV2: moto's own lookup decides
        "AWS4-HMAC-SHA256 Credential=testing/20261202/us-east-1/sns, Signature=x",  # a part short
        "AWS4-HMAC-SHA256 Credential=testing/20261202/us-east-1/sns/aws5_request, Signature=x",
        "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=x",
    ],
)
def test_anything_else_takes_motos_own_lookup(header: str | None) -> None:
    """A request without a readable SigV4 scope is never answered from the cache."""
    environ = {} if header is None else {"HTTP_AUTHORIZATION": header}
    assert credential_scope(environ) is None


@given(st.text(max_size=200))
def test_any_header_gives_a_scope_or_none(header: str) -> None:
    """No Authorization header, however odd, makes the lookup raise: the sandbox answers every request."""
    scope = credential_scope({"HTTP_AUTHORIZATION": header})
    assert scope is None or (isinstance(scope, tuple) and len(scope) == 2)
