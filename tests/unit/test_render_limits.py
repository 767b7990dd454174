"""Rendering under limits: hostile templates are refused (``template_limit``) instead of pinning a core or
eating memory; a render can be interrupted from another thread or a signal handler; none of it ever
raises outside a render. Hang guards are loose on purpose: the outcome proves which limit acted."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import jinja2
import pytest
from jinja2.sandbox import SandboxedEnvironment

from consumers.router.exceptions import RenderError, RenderInterrupted
from consumers.router.render import Renderer
from consumers.router.render_limits import Aborted, StopFlag, Watchdog
from notify_core.topics import Channel
from notify_core.userdata.models import Template

HANG_S = 10.0  # far above every limit under test: only a render that never stops reaches it
BUSY = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


class Hung(BaseException):
    """Raised into the main thread by ``hang_guard``; a BaseException, so no ``except Exception`` hides it."""


@contextlib.contextmanager
def hang_guard(seconds: float = HANG_S) -> Iterator[None]:
    """Fail (``Hung``) instead of hanging if the block runs on the main thread for ``seconds``."""
    armed = True

    def on_signal(signum: int, frame: object) -> None:
        if armed:
            raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGUSR2, on_signal)
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGUSR2))
    timer.start()
    try:
        yield
    finally:
        armed = False
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGUSR2, previous)


def sms(source: str) -> Template:
    return Template("t", Channel.SMS, "en", 1, sms_text=source)


def render_error(renderer: Renderer, template: Template, params: dict[str, Any] | None = None) -> RenderError:
    with hang_guard(), pytest.raises(RenderError) as caught:
        renderer.render(template, params or {})
    return caught.value


def in_thread(target: Any) -> BaseException | None:
    """Run ``target()`` on a new thread; what it raised (None if nothing). Fails if it hangs."""
    outcome: list[BaseException | None] = [None]

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # handed back to the test
            outcome[0] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_S)
    assert not thread.is_alive(), f"still running after {HANG_S} s"
    return outcome[0]


R = Renderer(max_sms_segments=10_000)

HOSTILE = {
    "nested_loops_with_output": "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}"
    "{% endfor %}{% endfor %}",
    "nested_loops_without_output": BUSY,
    "str_repetition": "{{ 'x' * 50000000 }}",
    "repetition_reversed": "{{ 50000000 * 'x' }}",
    "list_repetition": "{{ [1, 2] * 100000000 }}",
    "huge_power": "{{ 9 ** (9 ** 9) }}",
    "int_squaring_loop": "{% set ns = namespace(x=3) %}{% for i in range(64) %}{% set ns.x = ns.x * ns.x %}"
    "{% endfor %}{{ ns.x }}",
    "center_filter": "{{ 'x' | center(1000000000) }}",
    "ljust_method": "{{ 'x'.ljust(10**9) }}",
    "zfill_method": "{{ '1'.zfill(10**9) }}",
    "printf_width": "{{ '%0999999999d' % 1 }}",
    "printf_star_width": "{{ '%*d' % (999999999, 1) }}",
    "printf_precision": "{{ '%.999999999f' % 1.5 }}",
    "printf_repeated_key": "{{ ('%(a)s' * 50000) % {'a': 'x' * 100000} }}",
    "format_filter_width": "{{ '%999999999s' | format('x') }}",
    "str_format_width": "{{ '{:>999999999}'.format(1) }}",
    "str_format_nested_width": "{{ '{:>{}}'.format(1, 999999999) }}",
    "str_format_repeated_field": "{{ ('{0}' * 50000).format('x' * 100000) }}",
    "wordwrap_wrapstring": "{{ ('ab ' * 10000) | wordwrap(1, wrapstring='x' * 100000) }}",
    "indent_width": "{{ ('a\n' * 1000) | indent(10**6, true) }}",
    "replace_growth": "{{ ('a' * 100000).replace('a', 'b' * 1000) }}",
    "replace_filter_growth": "{{ ('a' * 100000) | replace('a', 'b' * 1000) }}",
    "join_separator": "{{ ('x' * 100000).join('abcdefgh') }}",
    "join_filter_separator": "{{ 'abcdefgh' | join('x' * 100000) }}",
    "expandtabs": "{{ ('\t' * 1000).expandtabs(10**6) }}",
    "translate_table": "{{ ('a' * 1000).translate({97: 'x' * 100000}) }}",
    "to_bytes_length": "{{ (1).to_bytes(10**9, 'big') }}",
    "batch_fill": "{{ [1] | batch(10**9, 'x') | list }}",
    "tojson_indent": "{{ {'a': [[[[1]]]]} | tojson(10**8) }}",
    "urlize_target": "{{ ('a.com ' * 10000) | urlize(target='x' * 100000) }}",
    "lipsum_size": "{{ lipsum(10**6) }}",
    "concat_doubling_loop": "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
    "plus_doubling_loop": "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
    "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
    "set_block_accumulates": "{% set s = 'x' * 200000 %}{% set b %}{% for i in range(100000) %}{{ s ~ i }}"
    "{% endfor %}{% endset %}{{ b | length }}",
    "macro_doubling": "{% macro f(n) %}{% if n %}{% set s = f(n - 1) %}{{ s }}{{ s }}{% else %}x{% endif %}"
    "{% endmacro %}{{ f(40) | length }}",
    "shared_list_doubling": "{% set ns = namespace(a=[1], b=[1]) %}{% for i in range(80) %}"
    "{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}{{ ns.a == ns.b }}",
    "shared_dict_doubling": "{% set ns = namespace(a={}) %}{% for i in range(80) %}"
    "{% set ns.a = dict(l=ns.a, r=ns.a) %}{% endfor %}{{ ns.a }}",
    "namespace_grows_after_sharing": "{% set ns = namespace() %}{% set l = [ns] * 8000 %}"
    "{% set ns.v = 'x' * 200000 %}{{ l }}",
    "sum_copies_quadratically": "{{ ([[1] * 10] * 2000) | sum(start=[]) | length }}",
    "method_through_attr": "{{ 'x' | attr('center')(10**9) }}",
    "filter_through_map": "{{ ['x'] | map('center', 10**9) | list }}",
    "output_stream": "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}",
}


@pytest.mark.parametrize("source", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_templates_are_refused(source: str) -> None:
    """Each class of resource abuse ends as template_limit, naming the template part, and soon."""
    error = render_error(R, sms(source))
    assert error.code == "template_limit", str(error)
    assert "t v1 sms/en sms_text" in str(error)


def test_big_repetition_is_refused_before_it_allocates() -> None:
    """'x' * 50000000 would take 50 MB: it is refused with a peak far below that."""
    renderer = Renderer()
    tracemalloc.start()
    try:
        error = render_error(renderer, sms("{{ 'x' * 50000000 }}"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.code == "template_limit"
    assert "'*' would make about 50000000 characters" in str(error)
    assert peak < 5_000_000


def test_sizes_up_to_the_limit_render() -> None:
    """The size limit is max_output_chars: exactly that much renders, one character more does not."""
    renderer = Renderer(max_output_chars=1000, max_sms_segments=10_000)
    assert renderer.render(sms("{{ 'x' * 1000 }}"), {}).sms_text == "x" * 1000
    assert renderer.render(sms("{{ 'x'.ljust(1000) }}"), {}).sms_text == "x" + " " * 999
    assert render_error(renderer, sms("{{ 'x' * 1001 }}")).code == "template_limit"
    assert render_error(renderer, sms("{{ 'x' * 600 }}{{ 'y' * 401 }}")).code == "template_limit"


def test_time_limit_on_the_main_thread() -> None:
    """A loop that outputs nothing is stopped by the time limit on the main thread."""
    assert threading.current_thread() is threading.main_thread()
    error = render_error(Renderer(render_timeout_s=0.2), sms(BUSY))
    assert error.code == "template_limit"
    assert "time limit" in str(error)


def test_time_limit_on_another_thread() -> None:
    """The same loop is stopped when the render runs on a thread of its own."""
    renderer = Renderer(render_timeout_s=0.2)
    error = in_thread(lambda: renderer.render(sms(BUSY), {}))
    assert isinstance(error, RenderError)
    assert error.code == "template_limit"
    assert "time limit" in str(error)


def test_interrupt_from_another_thread() -> None:
    """interrupt() from another thread stops a busy render with RenderInterrupted, long before its time
    limit; renders after it are refused too until resume()."""
    renderer = Renderer(render_timeout_s=60.0)
    timer = threading.Timer(0.2, renderer.interrupt)
    timer.start()
    with hang_guard(), pytest.raises(RenderInterrupted):
        renderer.render(sms(BUSY), {})
    timer.join()
    with pytest.raises(RenderInterrupted):
        renderer.render(sms("quick"), {})
    renderer.resume()
    assert renderer.render(sms("quick"), {}).sms_text == "quick"


def test_interrupt_from_a_signal_handler_on_the_rendering_thread() -> None:
    """The router's case: a signal handler runs on the main thread in the middle of a render there and
    calls interrupt(); the render stops with RenderInterrupted."""
    renderer = Renderer(render_timeout_s=60.0)
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: renderer.interrupt())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with hang_guard(), pytest.raises(RenderInterrupted):
            renderer.render(sms(BUSY), {})
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_interrupted_is_not_a_render_error() -> None:
    """RenderInterrupted must not be caught as RenderError (which dead-letters the request)."""
    assert not issubclass(RenderInterrupted, RenderError)


def test_many_quick_renders_never_raise() -> None:
    """20,000 ordinary renders: the watchdog never disturbs a render that is within its limits."""
    renderer = Renderer(render_timeout_s=1.0)
    template = sms("Code {{ code }} for {{ name }}{% for i in items %} {{ i }}{% endfor %}")
    params = {"code": 123456, "name": "Ada", "items": ["a", "b"]}
    for _ in range(20_000):
        assert renderer.render(template, params).sms_text == "Code 123456 for Ada a b"


def test_late_time_limit_never_lands_outside_a_render() -> None:
    """With a time limit of zero the watchdog fires at any point of a render, its end included: every
    render either succeeds or is template_limit, and nothing is raised afterwards."""
    renderer = Renderer(render_timeout_s=0.0)
    outcomes = {"ok": 0, "template_limit": 0}
    for _ in range(20_000):
        try:
            renderer.render(sms("Code {{ code }}"), {"code": 1})
            outcomes["ok"] += 1
        except RenderError as exc:
            outcomes[exc.code] += 1
    busy = sum(i for i in range(1_000_000))  # a late Aborted would land here
    assert busy > 0
    assert outcomes["ok"] + outcomes["template_limit"] == 20_000


def test_watchdog_race_at_the_end_of_a_guarded_call() -> None:
    """A watchdog polling every 50 us at calls lasting about a microsecond hits every instant of them,
    the exit path included: Aborted comes out of run() or not at all, never later."""
    watchdog, stop = Watchdog(poll_s=0.00005), StopFlag()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # let the watchdog in between almost any two bytecodes
    aborted = calls = 0
    try:
        started = time.monotonic()
        while calls < 20_000 or (aborted < 20 and time.monotonic() - started < 5.0):
            calls += 1
            try:
                watchdog.run(0.0, stop, sum, range(5))
            except Aborted:
                aborted += 1
        busy = sum(i for i in range(1_000_000))  # a late Aborted would land here
    finally:
        sys.setswitchinterval(interval)
    assert busy > 0
    assert aborted > 0  # the race was exercised


def test_containers_are_immutable_in_templates() -> None:
    """list.append and friends are refused (template_security): a shared structure cannot grow behind
    the size checks."""
    assert render_error(R, sms("{% set l = [] %}{{ l.append(1) }}")).code == "template_security"


LEGIT = [
    "{% macro row(a, b='x') %}<{{ a }}|{{ b }}>{% endmacro %}"
    "{% for k, v in d.items() %}{{ row(k, v) }}{% endfor %}",
    "{% macro wrap() %}[{{ caller() }}]{% endmacro %}{% call wrap() %}in {{ name }}{% endcall %}",
    "{% filter upper %}hello {{ name }}{% endfilter %}{% set x %}block {{ name }}{% endset %}{{ x }}",
    "{% for i in items %}{{ loop.cycle('odd', 'even') }}{{ loop.index + 1 }}{{ i ~ '!' }}{% endfor %}",
    "{{ '%s is %d' % (name, 3) }} {{ '{} {}'.format(name, 2) }} {{ '{n:>5}'.format_map({'n': name}) }}",
    "{{ items|join(', ') }} {{ d|tojson }} {{ d|dictsort }} {{ {'a': name, 'b': [1, 2]} }} {{ (name, 1) }}",
    "{% set a, b = 1, 2 %}{{ a + b }} {{ [a, b, name] }} {{ 2 ** 10 }} {{ 3 * 'ab' }} {{ items * 2 }}",
    "{{ name|center(11) }}|{{ 'ab cd ef'|wordwrap(3) }}|{{ 'a\nb'|indent(2, true) }}",
    "{{ items|batch(2, '-')|list }} {{ items|slice(2)|list }} {{ [[1], [2]]|sum(start=[]) }}",
    "{{ 'a.com'|urlize }} {{ items + ['z'] }}",
    "{{ name.ljust(6) }}|{{ name.replace('d', 'D') }}|{{ '-'.join(items) }}|{{ '%05.1f'|format(3.14159) }}",
    "{% set ns = namespace(total=0) %}{% for n in nums %}{% set ns.total = ns.total + n %}{% endfor %}"
    "{{ ns.total }} {{ -2 ** 2 }} {{ 10 // 4 }} {{ 10 % 4 }} {{ 1.5 * 2 }} {{ 'x' in name }}",
]
PARAMS = {"name": "Ada", "items": ["a", "b", "c"], "d": {"k1": "v1", "k2": "v2"}, "nums": [1, 2, 3]}


@pytest.mark.parametrize("source", LEGIT)
def test_ordinary_templates_render_as_in_the_plain_sandbox(source: str) -> None:
    """Macros, blocks, loops, operators, filters and formatting give exactly Jinja's own output."""
    expected = SandboxedEnvironment(undefined=jinja2.StrictUndefined).from_string(source).render(PARAMS)
    assert R.render(sms(source), PARAMS).sms_text == expected
