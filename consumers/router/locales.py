"""Which template version to use for a user's locale (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from notify_core.topics import Channel
from notify_core.userdata.models import Template


def normalise(locale: str) -> str:
    """``pt-br`` -> ``pt-BR``: language lower case, region upper case."""
    parts = locale.replace("_", "-").split("-")
    head = [parts[0].lower()]
    return "-".join(head + [p.upper() if len(p) == 2 else p for p in parts[1:]])


def candidates(locale: str, fallback: str = "en") -> list[str]:
    """The locales to try, most specific first: ``pt-BR`` -> ``pt-BR``, ``pt``, ``en``."""
    parts = normalise(locale).split("-")
    found = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    found.append(normalise(fallback))
    return list(dict.fromkeys(found))


def pick_template(
    templates: Iterable[Template], channel: Channel, locale: str, fallback: str = "en"
) -> Template | None:
    """The newest version in the first candidate locale that has one for ``channel``."""
    by_locale: dict[str, Template] = {}
    for template in templates:
        if template.channel != channel:
            continue
        key = normalise(template.locale)
        if key not in by_locale or template.version > by_locale[key].version:
            by_locale[key] = template
    for candidate in candidates(locale, fallback):
        if candidate in by_locale:
            return by_locale[candidate]
    return None
