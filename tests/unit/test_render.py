"""Rendering: strict parameters, HTML escaping only where HTML goes, channel limits, clear error codes."""

from __future__ import annotations

import pytest

from consumers.router.exceptions import RenderError
from consumers.router.locales import candidates, pick_template
from consumers.router.render import Renderer, html_to_text
from notify_core.topics import Channel
from notify_core.userdata.models import Template

R = Renderer(max_push_bytes=4096, max_sms_segments=2)
PUSH = Template(
    "t", Channel.IOS, "en", 1, title="Hi {{ name }}", body="Order {{ order }}", data={"o": "{{ order }}"}
)
SMS = Template("t", Channel.SMS, "en", 1, sms_text="Code {{ code }}")
EMAIL = Template(
    "t",
    Channel.EMAIL,
    "en",
    1,
    email_subject="For {{ name }}",
    email_html="<p>{{ name }}</p>",
    email_text="Dear {{ name }}",
)


def test_each_channel_renders() -> None:
    push = R.render(PUSH, {"name": "Ada", "order": 7})
    assert (push.title, push.body, push.data) == ("Hi Ada", "Order 7", {"o": "7"})
    sms = R.render(SMS, {"code": "123456"})
    assert (sms.sms_text, sms.sms_segments) == ("Code 123456", 1)
    email = R.render(EMAIL, {"name": "Ada"})
    assert (email.email_subject, email.email_html, email.email_text) == ("For Ada", "<p>Ada</p>", "Dear Ada")


def test_html_is_escaped_only_in_the_html_part() -> None:
    evil = "<script>x</script>"
    email = R.render(EMAIL, {"name": evil})
    assert email.email_html == "<p>&lt;script&gt;x&lt;/script&gt;</p>"
    assert email.email_text == f"Dear {evil}"
    assert R.render(PUSH, {"name": evil, "order": 1}).title == f"Hi {evil}"


def test_missing_text_or_html_part_is_derived() -> None:
    html_only = Template(
        "t", Channel.EMAIL, "en", 1, email_subject="S", email_html="<p>Hello <b>you</b></p><p>Bye</p>"
    )
    assert R.render(html_only, {}).email_text == "Hello you\nBye"
    text_only = Template("t", Channel.EMAIL, "en", 1, email_subject="S", email_text="a < b\nc")
    assert R.render(text_only, {}).email_html == "<p>a &lt; b<br>\nc</p>"


@pytest.mark.parametrize(
    ("template", "params", "code"),
    [
        (PUSH, {"name": "Ada"}, "missing_param"),
        (Template("t", Channel.SMS, "en", 1, sms_text="{% if %}"), {}, "template_syntax"),
        (Template("t", Channel.SMS, "en", 1, sms_text="{{ ''.__class__.__mro__ }}"), {}, "template_security"),
        (
            Template("t", Channel.SMS, "en", 1, sms_text="{{ x / 0 }}"),
            {"x": 1},
            "template_error",
        ),
        (Template("t", Channel.IOS, "en", 1, body="{{ b }}"), {"b": "x" * 5000}, "push_too_large"),
        (Template("t", Channel.SMS, "en", 1, sms_text="{{ b }}"), {"b": "x" * 307}, "sms_too_long"),
        (Template("t", Channel.SMS, "en", 1, sms_text="{{ b }}"), {"b": ""}, "empty_content"),
        (
            Template("t", Channel.EMAIL, "en", 1, email_subject="{{ s }}", email_text="x"),
            {"s": "a\nb"},
            "bad_subject",
        ),
    ],
)
def test_errors_carry_codes(template: Template, params: dict[str, object], code: str) -> None:
    with pytest.raises(RenderError) as caught:
        R.render(template, params)
    assert caught.value.code == code


def test_missing_param_is_named() -> None:
    with pytest.raises(RenderError, match="'order'"):
        R.render(PUSH, {"name": "Ada"})


def test_push_limit_boundary() -> None:
    overhead = len('{"aps":{"alert":{"title":null,"body":""}}}')
    body = Template("t", Channel.IOS, "en", 1, body="{{ b }}")
    R.render(body, {"b": "x" * (4096 - overhead)})
    with pytest.raises(RenderError, match="4097 bytes"):
        R.render(body, {"b": "x" * (4097 - overhead)})


def test_locale_candidates_and_template_choice() -> None:
    assert candidates("pt-br") == ["pt-BR", "pt", "en"]
    assert candidates("en") == ["en"]
    templates = [
        Template("t", Channel.SMS, "pt", 1, sms_text="v1"),
        Template("t", Channel.SMS, "pt", 2, sms_text="v2"),
        Template("t", Channel.SMS, "en", 5, sms_text="en"),
        Template("t", Channel.EMAIL, "pt-BR", 1, email_subject="e"),
    ]
    assert pick_template(templates, Channel.SMS, "pt-BR") == templates[1]
    assert pick_template(templates, Channel.SMS, "de") == templates[2]
    assert pick_template(templates, Channel.IOS, "pt") is None


def test_html_to_text_keeps_paragraphs() -> None:
    assert html_to_text("<div>a</div><div>b  c</div>") == "a\nb c"
