"""Helpers for the analytics sink's integration tests: events in, Parquet rows out, moto's S3.

``spread_events`` builds events over several dates; ``produce`` writes them through our codec (and
any raw garbage) to the events topic; ``local_files`` / ``s3_files`` collect what the sink wrote
(data files only, by key) and ``rows`` reads them back with pyarrow, each row with the key's date;
``moto_s3`` runs moto's S3 in server mode on 127.0.0.1 in this process, reachable from subprocesses.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import confluent_kafka
import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]
from moto.server import ThreadedMotoServer

from analytics_sink.layout import parse_file_key
from notify_core.codec import CONTENT_TYPE_HEADERS, EVENT, default_codec
from notify_core.events import event
from notify_core.kafka_clients import make_producer
from notify_core.settings import Settings
from notify_core.topics import Channel, topic_names

START = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


def spread_events(count: int, days: int, *, in_blocks: bool = False) -> list[dict[str, Any]]:
    """``count`` events over ``days`` consecutive UTC dates (round-robin, or ``in_blocks``: the
    first ``count / days`` on the first date and so on) and the four channels."""
    channels = list(Channel)
    return [
        event(
            "SENT",
            occurred_at=START
            + timedelta(days=i * days // count if in_blocks else i % days, seconds=i % 3600),
            notification_id=f"n-{i}",
            user_id=f"u-{i % 50}",
            delivery_id=f"d-{i}",
            channel=channels[i % len(channels)],
            service="shop",
            category="orders",
            provider="sandbox",
            attempt=1,
            latency_ms=float(i % 100),
            attributes={"i": str(i)},
        )
        for i in range(count)
    ]


def produce(
    settings: Settings,
    events: list[dict[str, Any]],
    *,
    garbage: Sequence[bytes] = (),
    version: int | None = None,
    partition: int | None = None,
) -> None:
    """Every event (encoded with ``version`` of the schema, default the newest), then ``garbage``;
    to ``partition`` when given, else by key."""
    codec = default_codec()
    topic = topic_names(settings).events
    producer = make_producer(settings)
    known = {f["name"] for f in codec.schema(EVENT, version)["fields"]}  # an older writer's fields only
    values = [
        (
            e["notification_id"].encode(),
            codec.encode(EVENT, {k: v for k, v in e.items() if k in known}, version=version),
        )
        for e in events
    ]
    values += [(b"garbage", raw) for raw in garbage]
    for key, value in values:
        while True:
            try:
                producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=CONTENT_TYPE_HEADERS,
                    partition=-1 if partition is None else partition,  # -1: by key
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(30) == 0, "events not acknowledged"


def local_files(root: Path) -> dict[str, bytes]:
    """Every data file under ``root``, by key (temporary files and manifests left out)."""
    found = {p.relative_to(root).as_posix(): p for p in root.rglob("*.parquet") if not p.name.startswith(".")}
    return {key: path.read_bytes() for key, path in sorted(found.items())}


def rows(files: dict[str, bytes]) -> list[dict[str, Any]]:
    """Every row of every file, with ``_key`` (the file's key) added."""
    out: list[dict[str, Any]] = []
    for key, data in files.items():
        assert parse_file_key(key) is not None, f"{key} breaks the layout"
        for row in pq.read_table(io.BytesIO(data)).to_pylist():
            out.append({**row, "_key": key})
    return out


class MotoS3:
    """moto's S3 in server mode on a loopback port; ``down()`` stops it for a while (its buckets and
    objects stay: moto keeps them in this process), on the same port."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, self.port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{self.port}"
        self.client: Any = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client("s3", endpoint_url=self.endpoint)

    def bucket(self) -> str:
        name = f"sink-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        return {
            "NOTIFY_S3_ENDPOINT": self.endpoint,
            "NOTIFY_AWS_ACCESS_KEY_ID": "testing",
            "NOTIFY_AWS_SECRET_ACCESS_KEY": "testing",
            "NOTIFY_AWS_REGION": "us-east-1",
        }

    def files(self, bucket: str, prefix: str) -> dict[str, bytes]:
        """Every data file under ``s3://bucket/prefix/``, by key relative to the prefix."""
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
            keys += [item["Key"] for item in page.get("Contents", [])]
        out = {}
        for key in sorted(keys):
            relative = key[len(prefix) + 1 :]
            if relative.endswith(".parquet"):
                out[relative] = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return out

    @contextmanager
    def down(self) -> Iterator[None]:
        """S3 refuses connections inside the block, and is back (same port, same data) after it."""
        self._server.stop()
        try:
            yield
        finally:
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
            self._server.start()

    def stop(self) -> None:
        self._server.stop()


@contextmanager
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 in server mode on a free loopback port, for this test."""
    s3 = MotoS3()
    try:
        yield s3
    finally:
        s3.stop()


def committed(settings: Settings, group: str) -> int:
    """How many records of the events topic ``group`` has committed, all partitions together."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    try:
        topic = topic_names(settings).events
        parts = [confluent_kafka.TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()
