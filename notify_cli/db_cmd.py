"""``notify db migrate|seed``: the database schema and demo data."""

from __future__ import annotations

import argparse
from typing import Any

from notify_core.db.connect import connect, make_pool
from notify_core.db.migrate import migrate
from notify_core.settings import Settings
from notify_core.userdata.repository import UserDataRepository
from notify_core.userdata.seed import seed_demo


def register(commands: Any) -> None:
    parser = commands.add_parser("db", help="database schema and demo data")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("migrate", help="apply pending SQL migrations (idempotent)").set_defaults(handler=run)
    actions.add_parser(
        "seed", help="create the demo users, categories and templates (idempotent)"
    ).set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "migrate":
        with connect(settings) as conn:
            lines = migrate(conn)
        for line in lines or ["nothing to apply: the schema is up to date"]:
            print(line)
        return 0
    pool = make_pool(settings, min_size=1, max_size=1)
    try:
        seed_demo(UserDataRepository(pool))
    finally:
        pool.close()
    print("demo data in place")
    return 0
