"""The application's typed state (``web.AppKey``): one key per long-lived dependency.

``app.py`` fills them in its ``cleanup_ctx`` lifecycles; handlers only read them.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import ConnectionPool

from api.keys import KeyStore
from api.metrics import ApiMetrics
from api.rate_limit import RateLimiter
from notify_core.kafka_async import AsyncProducer
from notify_core.settings import Settings
from notify_core.tracking import TrackingSigner
from notify_core.userdata.changes import ChangePublisher
from notify_core.userdata.repository import UserDataRepository
from producer.client import NotificationClient

SETTINGS = web.AppKey("settings", Settings)
CLIENT = web.AppKey("client", NotificationClient)
POOL = web.AppKey("pool", ConnectionPool[psycopg.Connection[Any]])
USERS = web.AppKey("users", UserDataRepository)
KEYS = web.AppKey("keys", KeyStore)
LIMITER = web.AppKey("limiter", RateLimiter)
SIGNER = web.AppKey("signer", TrackingSigner)
EVENTS = web.AppKey("events", AsyncProducer)
CHANGES = web.AppKey("changes", ChangePublisher)
METRICS = web.AppKey("metrics", ApiMetrics)
ID_NAMESPACE = web.AppKey("id_namespace", uuid.UUID)  # where Idempotency-Key ids are derived
