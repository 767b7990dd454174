from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from notify_core.db.connect import schema_url
from notify_core.settings import Settings


@pytest.mark.parametrize(
    ("url", "other"),
    [
        ("postgresql://notify@127.0.0.1:55432/notify", {}),
        ("postgresql://notify@127.0.0.1:55432/notify?sslmode=disable", {"sslmode": ["disable"]}),
    ],
)
def test_schema_url_sets_the_search_path_and_keeps_the_rest(url: str, other: dict[str, list[str]]) -> None:
    made = schema_url(Settings(database_url=SecretStr(url)), "t_abc")
    query = parse_qs(urlsplit(made).query)
    assert query == {**other, "options": ["-c search_path=t_abc"]}
    assert made.startswith(url)
