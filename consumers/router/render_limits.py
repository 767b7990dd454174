"""Resource limits for sandboxed template rendering (pure: no I/O).

Jinja2's sandbox keeps a template away from Python's internals, not from burning CPU or memory.
One guard per class of abuse:

* **time** — ``Watchdog.run``: one daemon thread raises ``Aborted`` into a render that is past its
  deadline or whose ``StopFlag`` is set. It breaks pure-Python loops, even ones that output nothing.
* **size, before allocating** — ``LimitedEnvironment`` estimates the result of every operation that can
  make something much bigger than its inputs (``*`` ``**`` ``%`` ``+`` ``~``, widths, padding,
  separators, format specs, container literals) and refuses it before Python allocates it. A single
  C-level operation cannot be interrupted by the watchdog, so it must never be allowed to be big.
* **total work** — what operations make is charged to a per-render budget, so a loop of small
  allocations that are all kept (a ``{% set %}`` block, a macro) stops too. Output is streamed and cut
  as soon as it is over the limit. Lists and dicts are immutable in templates (Jinja's own
  ``ImmutableSandboxedEnvironment``): every container is made by a checked operation, so no structure
  that shares its parts can blow up when printed or compared.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import re
import sys
import threading
import time
import types
from collections.abc import Callable, ItemsView, Iterable, KeysView, Mapping, ValuesView
from typing import Any, ParamSpec, TypeVar

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import Namespace, generate_lorem_ipsum
from markupsafe import Markup

P = ParamSpec("P")
T = TypeVar("T")

WORK_FACTOR = 16  # a render may make this many times max_output_chars in all, temporaries included
POLL_S = 0.02  # watchdog period: the latency of a time limit or an interrupt


class LimitExceeded(Exception):
    """A template broke a size limit; the message says which."""


class Aborted(BaseException):
    """Raised asynchronously into a rendering thread by the watchdog.

    A ``BaseException``, so that no ``except Exception`` in Jinja or a filter can swallow it.
    """


# --- sizes -------------------------------------------------------------------------------------

_FLAT = (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)  # dict views print their items
_TEXT = (str, bytes)
_SEQUENCES = (str, bytes, list, tuple)


def digits(number: int) -> int:
    return (abs(number).bit_length() * 77 >> 8) + 1  # 77/256 ~ log10(2)


def weight(obj: object, cap: int) -> int:
    """About how many characters ``str(obj)`` takes; stops counting as soon as it is over ``cap``.

    A part shared N times counts N times, as ``str()`` expands it: so the cost of this walk is bounded by
    ``cap``, while the real size of a structure that shares its parts can be exponential.
    """
    if isinstance(obj, _TEXT):
        return len(obj)
    total = 0
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, _TEXT):
            total += len(item)
        elif isinstance(item, int):
            total += digits(item)
        elif isinstance(item, float):
            total += 24
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            if total <= cap:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, _FLAT):
            total += 2 + 2 * len(item)
            if total <= cap:
                stack.extend(item)
        elif isinstance(item, Namespace):  # printed with all its attributes
            total += 12
            stack.append(object.__getattribute__(item, "_Namespace__attrs"))
        else:
            total += 32  # anything else prints as a short repr
        if total > cap:
            return total
    return total


def _number(text: str, cap: int) -> int:
    return cap + 1 if len(text) > 12 else int(text)  # int() refuses thousands of digits: don't try


_PRINTF = re.compile(r"%(?:\(([^)]*)\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.DOTALL)
_DIGIT_RUNS = re.compile(r"\d+")


def printf_size(fmt: str | bytes, args: object, cap: int) -> int:
    """Upper bound of ``len(fmt % args)``: widths, precisions and every converted argument."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    mapping = args if isinstance(args, Mapping) else None
    positional = list(args) if isinstance(args, tuple) else [args]
    total, index = len(text), 0
    for key, width, precision, kind in _PRINTF.findall(text):
        if kind == "%":
            continue
        for number in (width, precision):
            if number == "*":  # the width is the next argument
                value = positional[index] if index < len(positional) else 0
                index += 1
                total += abs(value) if isinstance(value, int) else 0
            elif number:
                total += _number(number, cap)
        if key and mapping is not None:
            total += weight(mapping.get(key), cap)
        else:
            total += weight(positional[index] if index < len(positional) else None, cap)
            index += 1
        if total > cap:
            break
    return total


def spec_width(spec: str, cap: int) -> int:
    """Largest number in a ``format()`` spec: the width or the precision, whichever is larger."""
    return max((_number(run, cap) for run in _DIGIT_RUNS.findall(spec)), default=0)


def _param(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _length(value: object) -> int:
    return len(value) if isinstance(value, _TEXT) else 0


# --- the environment -----------------------------------------------------------------------------


class _Meter:
    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


class _Local(threading.local):
    meter: _Meter | None = None


_local = _Local()  # per thread: tests and the router may render on several threads at once


class LimitedEnvironment(ImmutableSandboxedEnvironment):
    """A sandbox that refuses results over ``max_chars`` characters before making them."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})  # also stops compile-time constant folding

    def __init__(self, max_chars: int, **options: Any) -> None:
        super().__init__(finalize=self.finalize_output, **options)
        self.max_chars = max_chars
        self.max_work = WORK_FACTOR * max_chars
        self.max_digits = min(max_chars, sys.get_int_max_str_digits() or max_chars)
        self.code_generator_class = _LimitedCodeGenerator
        self.filters = {name: self._limited_filter(name, func) for name, func in self.filters.items()}
        self.globals["lipsum"] = self._lipsum

    # -- accounting

    def _spend(self, size: int) -> None:
        meter = _local.meter
        if meter is not None:
            meter.left -= size
            if meter.left < 0:
                raise LimitExceeded(
                    f"the template made more than {self.max_work} characters in all (the work limit)"
                )

    def _refuse_over(self, estimate: int, what: str) -> None:
        if estimate > self.max_chars:
            about = estimate if estimate < 10**15 else "10**15 or more"  # not a 4000-digit message
            raise LimitExceeded(
                f"{what} would make about {about} characters, over the limit of {self.max_chars}"
            )

    def accept(self, result: T, what: str) -> T:
        """``result`` of an operation, checked and charged (its making was bounded by its inputs)."""
        size = weight(result, self.max_chars)
        if size > self.max_chars:
            raise LimitExceeded(f"{what} made more than the limit of {self.max_chars} characters")
        self._spend(size)
        return result

    # -- rendering

    def render_limited(self, load: Callable[[], jinja2.Template], params: Mapping[str, Any]) -> str:
        """``load()`` (compile, cached) and render with a fresh work budget; the output is streamed and
        cut as soon as it is too long."""
        _local.meter = _Meter(self.max_work)
        try:
            parts: list[str] = []
            total = 0
            for chunk in self._render_chunks(load(), params):
                if chunk:
                    total += len(chunk)
                    if total > self.max_chars:
                        raise LimitExceeded(f"the output is over the limit of {self.max_chars} characters")
                    parts.append(chunk)
            return "".join(parts)
        finally:
            _local.meter = None

    def _render_chunks(self, template: jinja2.Template, params: Mapping[str, Any]) -> Iterable[str]:
        """``template.generate(params)`` without its per-call copies (py-spy: a tenth of the router).

        ``generate`` merges the globals into a new dict through a ``ChainMap`` and lists them again for
        the ``Context``; these templates come from strings (no imports, no blocks to export), so the
        environment's own globals dict with the parameters over it is the whole context.
        """
        context = self.context_class(self, {**self.globals, **params}, template.name, template.blocks)
        try:
            yield from template.root_render_func(context)
        except Exception:
            self.handle_exception()  # re-raises, as ``generate`` does, with the template's traceback

    def finalize_output(self, value: Any) -> Any:
        """Every ``{{ ... }}``: its ``str()`` must not be huge (a shared structure prints expanded)."""
        kind = type(value)
        size = len(value) if kind is str else digits(value) if kind is int else weight(value, self.max_chars)
        if size > self.max_chars:
            raise LimitExceeded(f"an expression would print over the limit of {self.max_chars} characters")
        self._spend(size + 1)
        return value

    def concat(self, chunks: Iterable[str]) -> str:
        """Block bodies (``{% set %}``, macros, ``{% call %}``, ``{% filter %}``) are joined here."""
        buffered = chunks if isinstance(chunks, list) else list(chunks)
        total = sum(map(len, buffered))
        if total > self.max_chars:
            raise LimitExceeded(f"a block would be over the limit of {self.max_chars} characters")
        self._spend(total)
        return "".join(buffered)

    def limited_concat(self, markup: bool, parts: tuple[Any, ...]) -> str:
        """The ``~`` operator (the code generator routes it here)."""
        self._refuse_over(sum(weight(part, self.max_chars) for part in parts), "'~'")
        return self.accept(markup_join(parts) if markup else str_join(parts), "'~'")

    def checked_literal(self, value: T) -> T:
        """A list, tuple or dict literal: ``[x, x]`` in a loop would double its printed size each time."""
        return self.accept(value, "a list, tuple or dict literal")

    # -- operators and calls

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "+" and type(left) is int and type(right) is int:
            return left + right  # the usual case (loop.index + 1): no bigger than its inputs
        if operator == "*":
            seq, times = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(seq, _SEQUENCES) and isinstance(times, int):
                self._refuse_over(weight(seq, self.max_chars) * max(times, 0), "'*'")
            elif isinstance(left, int) and isinstance(right, int):
                self._refuse_digits(digits(left) + digits(right), "'*'")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                huge = right.bit_length() > 60  # right * log10(...) would not even fit a float
                self._refuse_digits(
                    self.max_digits + 1 if huge else math.ceil(right * math.log10(abs(left))), "'**'"
                )
        elif operator == "%":
            if isinstance(left, _TEXT):
                self._refuse_over(printf_size(left, right, self.max_chars), "'%' formatting")
        elif isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):  # "+"
            self._refuse_over(weight(left, self.max_chars) + weight(right, self.max_chars), "'+'")
        result = self.binop_table[operator](left, right)
        if isinstance(result, (int, float)):
            return result  # ints are bounded by the checks above, floats are small
        return self.accept(result, f"'{operator}'")

    def _refuse_digits(self, estimate: int, what: str) -> None:
        if estimate > self.max_digits:
            raise LimitExceeded(
                f"{what} would make a {estimate}-digit number, over the limit of {self.max_digits}"
            )

    def call(self, context: jinja2.runtime.Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Method and global calls; filters are wrapped separately (they are not called through here)."""
        receiver = getattr(obj, "__self__", None)
        name = getattr(obj, "__name__", None)
        if isinstance(receiver, _TEXT) and isinstance(name, str):
            args = self._check_text_method(receiver, name, args, kwargs)
        elif isinstance(receiver, int) and name == "to_bytes":
            self._refuse_over(_param(args, kwargs, 0, "length", 1), "to_bytes()")
        result = super().call(context, obj, *args, **kwargs)
        return self.accept(result, f"{name or 'a call'}()")

    def _check_text_method(
        self, text: str | bytes, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[Any, ...]:
        cap = self.max_chars
        if name in ("center", "ljust", "rjust", "zfill"):
            width = _param(args, kwargs, 0, "width", 0)
            self._refuse_over(width if isinstance(width, int) else 0, f"{name}()")
        elif name == "expandtabs":
            size = _param(args, kwargs, 0, "tabsize", 8)
            tabs = text.count("\t") if isinstance(text, str) else text.count(b"\t")
            self._refuse_over(len(text) + tabs * (size if isinstance(size, int) else 0), "expandtabs()")
        elif name == "replace" and len(args) >= 2:
            count = _param(args, kwargs, 2, "count", -1)
            self._refuse_over(_replace_size(text, args[0], args[1], count), "replace()")
        elif name == "join" and args:
            items = args[0] if isinstance(args[0], (list, tuple)) else list(args[0])
            self._refuse_over(weight(items, cap) + len(text) * len(items), "join()")
            args = (items, *args[1:])
        elif name == "translate" and args and isinstance(args[0], (dict, list, tuple)):
            table = args[0]
            longest = max(map(_length, table.values() if isinstance(table, dict) else table), default=1)
            self._refuse_over(len(text) * max(longest, 1), "translate()")
        return args

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` / ``format_map``, with a formatter that refuses huge fields and widths."""
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        template = value.__self__
        if not isinstance(template, str):
            return None
        is_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one positional argument")
                kwargs, args = args[0], ()
            formatter: _Fields = (
                _EscapeFields(self, escape=template.escape) if isinstance(template, Markup) else _Fields(self)
            )
            return type(template)(formatter.vformat(template, args, kwargs))

        return functools.update_wrapper(wrapper, value)

    def _lipsum(self, *args: Any, **kwargs: Any) -> str:
        paragraphs, longest = _param(args, kwargs, 0, "n", 5), _param(args, kwargs, 3, "max", 100)
        if isinstance(paragraphs, int) and isinstance(longest, int):
            self._refuse_over(paragraphs * longest * 8, "lipsum()")
        return generate_lorem_ipsum(*args, **kwargs)

    # -- filters

    def _limited_filter(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        check = _FILTER_CHECKS.get(name)
        skip = 1 if hasattr(func, "jinja_pass_arg") else 0  # environment, eval context or context
        prints_input = name not in _COLLECTION_FILTERS

        @functools.wraps(func)  # keeps jinja_pass_arg
        def limited(*args: Any, **kwargs: Any) -> Any:
            value = args[skip] if len(args) > skip else None
            if prints_input:
                self._refuse_over(weight(value, self.max_chars), f"the input of |{name}")
            if check is not None:
                args = (*args[:skip], *check(self, args[skip:], kwargs))
            result = func(*args, **kwargs)
            return result if result is value else self.accept(result, f"|{name}")

        return limited


class _Fields(SandboxedFormatter):
    """The sandbox's ``str.format`` formatter, counting the size of the fields it formats."""

    def __init__(self, env: LimitedEnvironment, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self._limits = env
        self._total = 0

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        self._limits._refuse_over(weight(value, self._limits.max_chars), "a format field")
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        cap = self._limits.max_chars
        self._total += weight(value, cap) + spec_width(format_spec, cap)
        self._limits._refuse_over(self._total, "str.format()")
        return self._limits.accept(super().format_field(value, format_spec), "str.format()")


class _EscapeFields(_Fields, SandboxedEscapeFormatter):
    pass


def _replace_size(text: str | bytes, old: Any, new: Any, count: Any) -> int:
    if not isinstance(old, type(text)) or not isinstance(new, type(text)):
        return len(text)  # a TypeError is coming
    found = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(text) + found * max(len(new) - len(old), 0)


def _wordwrap_size(text: str, width: int, wrapstring: int) -> int:
    """Lines end at whitespace or every ``width`` characters of a long word; tabs become 8 spaces."""
    lines = min(len(text), len(text) // max(width, 1) + text.count(" ") + text.count("\n") + 1)
    return len(text) + 7 * text.count("\t") + lines * wrapstring


def _json_size(value: object, step: int, cap: int) -> int:
    """``weight``, plus one line indented ``depth * step`` per element when ``json.dumps`` indents."""
    total = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack and total <= cap:
        item, depth = stack.pop()
        if isinstance(item, dict):
            total += 2 + (depth + 1) * step + len(item) * (4 + (depth + 1) * step)
            if total <= cap:
                stack.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif isinstance(item, (list, tuple)):
            total += 2 + (depth + 1) * step + len(item) * (2 + (depth + 1) * step)
            if total <= cap:
                stack.extend((part, depth + 1) for part in item)
        else:
            total += weight(item, cap)
    return total


def _check_center(env: LimitedEnvironment, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    width = _param(args, kwargs, 1, "width", 80)
    env._refuse_over(width if isinstance(width, int) else 0, "|center")
    return args


def _check_indent(env: LimitedEnvironment, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    text, width = args[0], _param(args, kwargs, 1, "width", 4)
    step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    lines = text.count("\n") + 1 if isinstance(text, str) else 1
    env._refuse_over(weight(text, env.max_chars) + (lines + 1) * step, "|indent")
    return args


def _check_wordwrap(
    env: LimitedEnvironment, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    text, width = args[0], _param(args, kwargs, 1, "width", 79)
    wrap = _param(args, kwargs, 3, "wrapstring", None)
    if isinstance(text, str) and isinstance(width, int):
        wrap_size = len(wrap) if isinstance(wrap, str) else len(env.newline_sequence)
        env._refuse_over(_wordwrap_size(text, width, wrap_size), "|wordwrap")
    return args


def _check_count(name: str, keyword: str) -> Callable[..., tuple[Any, ...]]:
    def check(env: LimitedEnvironment, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        count = _param(args, kwargs, 1, keyword, 0)  # the number of rows or columns it makes
        env._refuse_over(count if isinstance(count, int) else 0, f"|{name}")
        return args

    return check


def _check_tojson(env: LimitedEnvironment, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    indent = _param(args, kwargs, 1, "indent", None)
    step = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
    env._refuse_over(_json_size(args[0], max(step, 0), env.max_chars), "|tojson")
    return args


def _check_format(env: LimitedEnvironment, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    if isinstance(args[0], _TEXT):
        env._refuse_over(printf_size(args[0], kwargs or args[1:], env.max_chars), "|format")
    return args


def _check_join(env: LimitedEnvironment, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    items = args[0] if isinstance(args[0], (list, tuple, str)) else list(args[0])
    separator = _param(args, kwargs, 1, "d", "")
    env._refuse_over(weight(items, env.max_chars) + weight(separator, env.max_chars) * len(items), "|join")
    return (items, *args[1:])


def _check_replace(env: LimitedEnvironment, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    text = args[0] if isinstance(args[0], str) else str(args[0])  # its size was checked
    old, new = str(_param(args, kwargs, 1, "old", "")), str(_param(args, kwargs, 2, "new", ""))
    count = _param(args, kwargs, 3, "count", None)
    env._refuse_over(_replace_size(text, old, new, -1 if count is None else count), "|replace")
    return args


def _check_sum(env: LimitedEnvironment, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    start = _param(args, kwargs, 2, "start", 0)
    if isinstance(start, (int, float)):
        return args
    items = args[0] if isinstance(args[0], (list, tuple)) else list(args[0])
    size = weight(start, env.max_chars) + weight(items, env.max_chars)
    env._refuse_over(size, "|sum")
    if size * len(items) // 2 > env.max_work:  # each step copies the sum so far, in one C call
        raise LimitExceeded(f"|sum of {len(items)} sequences would copy over {env.max_work} items")
    return (items, *args[1:])


def _check_urlize(env: LimitedEnvironment, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    text = args[0] if isinstance(args[0], str) else ""
    extra = sum(_length(_param(args, kwargs, i, name, "")) for i, name in ((3, "target"), (4, "rel")))
    words = text.count(" ") + text.count("\n") + 1
    env._refuse_over(3 * len(text) + words * (extra + 64), "|urlize")
    return args


_FILTER_CHECKS: dict[
    str, Callable[[LimitedEnvironment, tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]
] = {
    "center": _check_center,
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "batch": _check_count("batch", "linecount"),
    "slice": _check_count("slice", "slices"),
    "tojson": _check_tojson,
    "format": _check_format,
    "join": _check_join,
    "replace": _check_replace,
    "sum": _check_sum,
    "urlize": _check_urlize,
}
# Filters that iterate or pick from their input without printing it: a big input is fine.
_COLLECTION_FILTERS = frozenset(
    {
        *("attr", "batch", "count", "d", "default", "dictsort", "first", "groupby", "items", "join"),
        *("last", "length", "list", "map", "max", "min", "random", "reject", "rejectattr", "reverse"),
        *("select", "selectattr", "slice", "sort", "sum", "unique"),
    }
)


class _LimitedCodeGenerator(CodeGenerator):
    """Routes ``~`` and container literals through the environment's checks."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            markup = "context.eval_ctx.volatile"
        else:
            markup = repr(bool(frame.eval_ctx.autoescape))
        self.write(f"environment.limited_concat({markup}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def _checked(self, visit: Callable[[Any, Frame], None], node: nodes.Expr, frame: Frame) -> None:
        if getattr(node, "ctx", "load") != "load":
            visit(node, frame)  # an assignment target such as {% for a, b in ... %}
            return
        try:
            node.as_const(frame.eval_ctx)
        except nodes.Impossible:
            self.write("environment.checked_literal(")
            visit(node, frame)
            self.write(")")
        else:
            visit(node, frame)  # a constant: no bigger than the source

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._checked(super().visit_List, node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        self._checked(super().visit_Tuple, node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._checked(super().visit_Dict, node, frame)


# --- the time limit ------------------------------------------------------------------------------
# Why a watchdog thread and PyThreadState_SetAsyncExc: it interrupts any thread, the main one included,
# at its next bytecode, so a loop that outputs nothing still stops; signal.setitimer works on the main
# thread only and would take SIGALRM from the whole process. Per render it costs two lock round trips
# and no thread start. It cannot break one long C call: the size checks above make those small.

_raise_in = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
)
_clear_in = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(  # NULL clears
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
)


class StopFlag:
    """Set from anywhere, a signal handler included (a plain attribute write, no lock)."""

    __slots__ = ("requested",)

    def __init__(self) -> None:
        self.requested = False


class _Slot:
    __slots__ = ("deadline", "fired", "stop", "thread_id")

    def __init__(self, thread_id: int, deadline: float, stop: StopFlag) -> None:
        self.thread_id = thread_id
        self.deadline = deadline
        self.stop = stop
        self.fired = False


class Watchdog:
    """One daemon thread that raises ``Aborted`` into guarded calls past their deadline or stopped."""

    def __init__(self, poll_s: float = POLL_S, park_after_s: float = 1.0) -> None:
        self.poll_s = poll_s
        self._park_after = max(1, round(park_after_s / poll_s))
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._slots: set[_Slot] = set()
        self._wake = threading.Event()
        self._parked = False
        self._thread: threading.Thread | None = None

    def run(
        self, timeout_s: float, stop: StopFlag, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``fn(...)``, or ``Aborted`` raised inside it; never an ``Aborted`` after this returns."""
        slot = _Slot(threading.get_ident(), time.monotonic() + timeout_s, stop)
        try:
            self._add(slot)  # nothing can be raised at us before the slot is registered
            return fn(*args, **kwargs)
        finally:
            while True:  # a late Aborted may land in this very block: swallow it and finish leaving
                try:
                    self._remove(slot)
                    break
                except Aborted:
                    continue

    def _add(self, slot: _Slot) -> None:
        with self._lock:
            self._slots.add(slot)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="render-watchdog", daemon=True)
                self._thread.start()
        if self._parked:
            self._wake.set()

    def _remove(self, slot: _Slot) -> None:
        with self._lock:  # the watchdog fires only under this lock, only at registered slots
            self._slots.discard(slot)
            fired = slot.fired
        if fired:
            _clear_in(slot.thread_id, None)  # one may be pending still: it must not land after us

    def _watch(self) -> None:
        try:
            self._loop()
        finally:
            self._thread = None  # should it ever die, the next render starts another

    def _loop(self) -> None:
        idle = 0
        while True:
            time.sleep(self.poll_s)
            now = time.monotonic()
            with self._lock:
                for slot in self._slots:
                    if slot.stop.requested or now >= slot.deadline:
                        slot.fired = True  # again each period: an Aborted caught in a __del__ is lost
                        _raise_in(slot.thread_id, Aborted)
                idle = 0 if self._slots else idle + 1
            if idle >= self._park_after:  # nothing to watch for a while: sleep until a render starts
                self._parked = True
                if not self._slots:  # a render registered after this check sees _parked and wakes us
                    self._wake.wait(timeout=1.0)
                self._parked = False
                self._wake.clear()
                idle = 0


WATCHDOG = Watchdog()
os.register_at_fork(after_in_child=WATCHDOG._reset)  # the thread does not survive a fork
