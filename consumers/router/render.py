"""Render a template for one request, enforcing each channel's limits (pure, no I/O).

Jinja2's sandboxed environment with strict undefined variables: a missing parameter is an error,
never an empty string. Only the e-mail HTML part is auto-escaped; push, SMS and plain text are not
HTML. Compiled templates are cached. Every failure is a ``RenderError`` with a machine code.

Templates come from the database, so they are rendered under limits (``render_limits``): a time limit
per part, sizes refused before they are allocated, output cut at ``max_output_chars``; breaking one is
``template_limit``. ``interrupt()`` (the router's SIGTERM handler) makes renders raise
``RenderInterrupted`` instead.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser

import jinja2
from jinja2.exceptions import SecurityError

from consumers.router.exceptions import RenderError, RenderInterrupted
from consumers.router.policy import PUSH
from consumers.router.render_limits import WATCHDOG, Aborted, LimitedEnvironment, LimitExceeded, StopFlag
from consumers.router.sms_segments import segments
from notify_core.topics import Channel
from notify_core.userdata.models import Template

_UNDEFINED = re.compile(r"'([^']+)' is undefined")


@dataclass(frozen=True)
class Rendered:
    title: str | None = None
    body: str | None = None
    data: dict[str, str] = field(default_factory=dict)
    sms_text: str | None = None
    sms_segments: int | None = None
    email_subject: str | None = None
    email_html: str | None = None
    email_text: str | None = None


class _TextOf(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("br", "p", "div", "li", "tr", "h1", "h2", "h3"):
            self.parts.append("\n")


def html_to_text(html: str) -> str:
    parser = _TextOf()
    parser.feed(html)
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


class Renderer:
    """Renders templates for requests; thread-safe, one per router.

    ``render_timeout_s`` bounds each template part's render (CPU time of pure-Python loops included),
    ``max_output_chars`` the size of each part and of anything a template makes on the way. Breaking
    either is ``RenderError("template_limit")``; after ``interrupt()`` it is ``RenderInterrupted``.
    """

    def __init__(
        self,
        *,
        max_push_bytes: int = 4096,
        max_sms_segments: int = 3,
        cache_size: int = 2048,
        render_timeout_s: float = 1.0,
        max_output_chars: int = 256 * 1024,
    ) -> None:
        self.max_push_bytes = max_push_bytes
        self.max_sms_segments = max_sms_segments
        self.render_timeout_s = render_timeout_s
        self.max_output_chars = max_output_chars
        self._stop = StopFlag()
        self._text = LimitedEnvironment(max_output_chars, undefined=jinja2.StrictUndefined, autoescape=False)
        self._html = LimitedEnvironment(max_output_chars, undefined=jinja2.StrictUndefined, autoescape=True)
        self._compile = functools.lru_cache(maxsize=cache_size)(self._compile_uncached)

    def interrupt(self) -> None:
        """The render under way (on any thread) and every later one raise ``RenderInterrupted``.

        Only sets a flag, so it is safe in a signal handler, even one that interrupted a render on the
        same thread; the watchdog raises into the render within about 0.02 s. Lasts until ``resume()``.
        """
        self._stop.requested = True

    def resume(self) -> None:
        self._stop.requested = False

    def _compile_uncached(self, source: str, html: bool) -> jinja2.Template:
        return (self._html if html else self._text).from_string(source)

    def _part(
        self, source: str | None, params: Mapping[str, object], part: str, *, html: bool = False
    ) -> str | None:
        if source is None:
            return None
        if self._stop.requested:
            raise RenderInterrupted(f"{part}: not rendered, the renderer was interrupted")
        env = self._html if html else self._text
        try:
            return WATCHDOG.run(
                self.render_timeout_s,
                self._stop,
                env.render_limited,
                lambda: self._compile(source, html),
                params,
            )
        except Aborted:
            if self._stop.requested:
                raise RenderInterrupted(f"{part}: rendering interrupted") from None
            raise RenderError(
                "template_limit", f"{part}: rendering took over {self.render_timeout_s} s (time limit)"
            ) from None
        except LimitExceeded as exc:
            raise RenderError("template_limit", f"{part}: {exc}") from exc
        except jinja2.UndefinedError as exc:
            match = _UNDEFINED.search(str(exc))
            name = match.group(1) if match else str(exc)
            raise RenderError("missing_param", f"template parameter {name!r} is missing") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(
                "template_syntax", f"template syntax error: {exc.message} (line {exc.lineno})"
            ) from exc
        except SecurityError as exc:
            raise RenderError("template_security", f"template tried something unsafe: {exc}") from exc
        except Exception as exc:  # anything else a template can raise (bad filter arguments, ...)
            raise RenderError("template_error", f"template failed: {type(exc).__name__}: {exc}") from exc

    def render(self, template: Template, params: Mapping[str, object]) -> Rendered:
        where = f"{template.template_id} v{template.version} {template.channel.value}/{template.locale}"
        if template.channel in PUSH:
            return self._push(template, params, where)
        if template.channel == Channel.SMS:
            return self._sms(template, params, where)
        return self._email(template, params, where)

    def _push(self, template: Template, params: Mapping[str, object], where: str) -> Rendered:
        title = self._part(template.title, params, f"{where} title")
        body = self._part(template.body, params, f"{where} body")
        data = {
            str(k): self._part(str(v), params, f"{where} data[{k!r}]") or "" for k, v in template.data.items()
        }
        if not body:
            raise RenderError("empty_content", f"{where}: push body is empty")
        payload = {"aps": {"alert": {"title": title, "body": body}}, **data}
        size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
        if size > self.max_push_bytes:
            raise RenderError(
                "push_too_large", f"{where}: push payload is {size} bytes, over {self.max_push_bytes}"
            )
        return Rendered(title=title, body=body, data=data)

    def _sms(self, template: Template, params: Mapping[str, object], where: str) -> Rendered:
        text = self._part(template.sms_text, params, f"{where} sms_text")
        if not text:
            raise RenderError("empty_content", f"{where}: SMS text is empty")
        info = segments(text)
        if info.segments > self.max_sms_segments:
            raise RenderError(
                "sms_too_long",
                f"{where}: SMS needs {info.segments} {info.encoding} parts, over {self.max_sms_segments}",
            )
        return Rendered(sms_text=text, sms_segments=info.segments)

    def _email(self, template: Template, params: Mapping[str, object], where: str) -> Rendered:
        subject = self._part(template.email_subject, params, f"{where} email_subject")
        html = self._part(template.email_html, params, f"{where} email_html", html=True)
        text = self._part(template.email_text, params, f"{where} email_text")
        if not subject:
            raise RenderError("empty_content", f"{where}: e-mail subject is empty")
        if "\n" in subject or "\r" in subject:
            raise RenderError("bad_subject", f"{where}: e-mail subject must be one line")
        if not html and not text:
            raise RenderError("empty_content", f"{where}: e-mail has neither HTML nor text")
        if not text:
            text = html_to_text(html or "")
        if not html:
            html = "<p>" + escape(text).replace("\n", "<br>\n") + "</p>"
        return Rendered(email_subject=subject, email_html=html, email_text=text)
