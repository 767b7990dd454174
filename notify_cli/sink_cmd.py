"""``notify sink run``: the analytics sink (consumer group ``NOTIFY_SINK_GROUP``, default ``notify-sink``).

It writes ``<prefix>.events`` as Parquet under ``NOTIFY_SINK_OUTPUT`` (a directory, or
``s3://bucket/prefix`` with ``NOTIFY_S3_ENDPOINT`` and ``NOTIFY_AWS_*``; unset: ``<cache>/analytics``).
Prints what it did as one JSON line when it stops.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from analytics_sink.sink import Sink
from notify_core.metrics_server import served_instruments
from notify_core.settings import Settings
from notify_core.tracing import setup_tracing

# The sink has no instance id of its own (nothing fences it): a stable one, as file_sd wants a label.
SINK_INSTANCE = "0"


def register(commands: Any) -> None:
    parser = commands.add_parser("sink", help="the analytics sink: events to Parquet, local or S3")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="consume the analytics topic into date-partitioned Parquet files")
    run.add_argument("--burst", action="store_true", help="stop once idle, after flushing (tests, scripts)")
    run.add_argument("--idle", type=float, default=3.0, help="seconds without records that count as idle")
    run.set_defaults(handler=run_sink)


def run_sink(args: argparse.Namespace, settings: Settings) -> int:
    setup_tracing(settings, "notify-sink")
    with served_instruments(settings, job="notify-sink", instance=SINK_INSTANCE) as instruments:
        sink = Sink(settings, instruments=instruments)
        sink.install_signal_handlers()
        stats = sink.run(stop_when_idle=args.burst, idle_s=args.idle)
    print(
        json.dumps(
            {
                "output": sink.store.location,
                "records": stats.records,
                "rows": stats.rows,
                "files": stats.files,
                "dead_letters": stats.dead_letters,
                "flushes": dict(stats.flushes),
                "recovered_files": stats.recovered_files,
            }
        )
    )
    return 0
