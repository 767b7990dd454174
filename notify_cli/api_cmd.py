"""``notify api run`` (the HTTP API) and ``notify keys create|list|revoke`` (its service keys)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from notify_core.settings import Settings

if TYPE_CHECKING:
    from api.keys import KeyStore

# The scopes of api.keys.Scope, spelled here so `notify --help` does not import the whole API.
SCOPES = ["send", "contacts", "status"]


def register(commands: Any) -> None:
    api = commands.add_parser("api", help="the HTTP API")
    actions = api.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="serve the HTTP API (NOTIFY_API_HOST, NOTIFY_API_PORT)")
    run.add_argument("--port", type=int, help="override NOTIFY_API_PORT")
    run.set_defaults(handler=run_api)

    keys = commands.add_parser("keys", help="the HTTP API's service keys")
    key_actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = key_actions.add_parser("create", help="make a key for a service; the key is printed once")
    create.add_argument("service", help="the service the key sends as (e.g. billing)")
    create.add_argument(
        "--scope", action="append", choices=SCOPES, help="send, contacts, status (repeat; default all)"
    )
    create.add_argument("--rate", type=float, help="quota units per second (default NOTIFY_API_RATE_PER_S)")
    create.add_argument("--burst", type=int, help="bucket size (default NOTIFY_API_RATE_BURST)")
    create.add_argument("--description", help="a note for whoever lists the keys")
    create.set_defaults(handler=create_key)
    listing = key_actions.add_parser("list", help="the keys (never their secrets)")
    listing.add_argument("--service", help="only this service's")
    listing.set_defaults(handler=list_keys)
    revoke = key_actions.add_parser("revoke", help="revoke a key by its id (the hex after nfy_)")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=revoke_key)


def run_api(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from api.app import create_app
    from notify_core.metrics_server import TargetFile, free_port
    from notify_core.tracing import setup_tracing

    settings.check_for_production()  # it verifies unsubscribe and tracking tokens
    setup_tracing(settings, "notify-api")
    port = settings.api_port if args.port is None else args.port
    if port == 0:
        port = free_port()  # named up front: the Prometheus target must say where to scrape
    # The API serves its own /metrics on its own port: registered like every process's endpoint.
    target = None
    if settings.metrics_enabled:
        target = TargetFile(settings, "notify-api", str(port), port, path="/metrics", host=settings.api_host)
    try:
        web.run_app(create_app(settings), host=settings.api_host, port=port, access_log=None, print=None)
    finally:
        if target is not None:
            target.remove()
    return 0


def _store(settings: Settings) -> KeyStore:
    from api.keys import KeyStore
    from notify_core.db.connect import make_pool

    return KeyStore(make_pool(settings, max_size=1))


def create_key(args: argparse.Namespace, settings: Settings) -> int:
    from api.keys import Scope

    scopes = [Scope(s) for s in (args.scope or SCOPES)]
    if (args.rate is not None and args.rate <= 0) or (args.burst is not None and args.burst < 1):
        print("error: --rate must be positive and --burst at least 1")
        return 2
    try:
        key, token = _store(settings).create(
            args.service, scopes, rate_per_s=args.rate, burst=args.burst, description=args.description
        )
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    print(json.dumps({"key_id": key.key_id, "service": key.service, "scopes": sorted(key.scopes)}))
    print(f"key (shown once, keep it secret): {token}")
    return 0


def list_keys(args: argparse.Namespace, settings: Settings) -> int:
    for key in _store(settings).list(args.service):
        row = {
            "key_id": key.key_id,
            "service": key.service,
            "scopes": sorted(key.scopes),
            "rate_per_s": key.rate_per_s,
            "burst": key.burst,
            "description": key.description,
            "created_at": key.created_at.isoformat() if key.created_at else None,
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        }
        print(json.dumps(row))
    return 0


def revoke_key(args: argparse.Namespace, settings: Settings) -> int:
    if not _store(settings).revoke(args.key_id):
        print(f"error: no live key {args.key_id!r}")
        return 1
    print(f"revoked {args.key_id}")
    return 0
