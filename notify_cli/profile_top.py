"""``notify profile top FILE``: the top of a py-spy profile (``py-spy record --format raw``), as text.

The collapsed format is one stack a line, ``frame;frame;...;frame COUNT``, outermost first. Self time
is the count of the innermost frame; inclusive time counts a frame once per stack it appears in.
Frames are ``function (file:line)``: the line is dropped so one function is one row.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

_LINE = re.compile(r" \(([^()]*?):\d+\)$")


def _frame(raw: str) -> str:
    """``send (producer/client.py:120)`` as ``send (producer/client.py)``, site-packages shortened."""
    name = _LINE.sub(lambda m: f" ({m.group(1)})", raw.strip())
    return re.sub(r"\(.*?site-packages/", "(", name)


def top(
    collapsed: str, count: int = 15, within: str | None = None
) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, self-time rows, inclusive rows), the largest first. ``within`` keeps the stacks
    through a frame containing that text (one stage of a process), or all when None."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";") if f]
        if within is not None and not any(within in f for f in frames):
            continue
        samples = int(number)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    return total, own.most_common(count), inclusive.most_common(count)


def render(collapsed: str, count: int = 15, within: str | None = None) -> str:
    total, own, inclusive = top(collapsed, count, within)
    if not total:
        return "no samples"
    lines = [f"{total} samples; self time:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own]
    lines.append("inclusive time:")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive]
    return "\n".join(lines)


def register(commands: Any) -> None:
    parser = commands.add_parser("profile", help="read profiles taken under the benchmarks")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("top", help="the top of a py-spy raw (collapsed) profile")
    show.add_argument("file", type=Path)
    show.add_argument("--count", type=int, default=15)
    show.add_argument("--within", help="only stacks through a frame containing this text")
    show.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: object) -> int:
    try:
        text = args.file.read_text("utf-8")
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc}")
        return 2
    print(render(text, args.count, args.within))
    return 0
