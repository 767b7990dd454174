"""Where the sink's objects live: a local directory or an S3 bucket, behind one small interface.

``put(key, data)`` returns only once the object is durable, and never leaves a partial object
under ``key``: ``LocalStore`` writes a temporary file in the same directory, fsyncs it, renames it
over the key (atomic on POSIX) and fsyncs the directory, so the rename itself survives a power
cut; ``S3Store`` does one ``PutObject`` (an S3 object appears whole when the PUT completes, and a
completed PUT is durable). ``get`` returns None for a missing key, ``delete`` of a missing key is
not an error, and ``list(prefix)`` returns keys in order. Keys are ``/``-separated and relative to
the root (see ``layout``).

Every failure is translated here into ``StoreUnavailable``: the sink treats it as an outage, keeps
the offsets uncommitted and tries the same flush again.
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from analytics_sink.exceptions import StoreUnavailable
from notify_core.exceptions import ConfigError
from notify_core.settings import Settings

_TEMP_SUFFIX = ".tmp"


class Store(Protocol):
    @property
    def location(self) -> str:
        """Where the root is, for logs and reports (a path or an ``s3://`` URL)."""
        ...

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> builtins.list[str]: ...


class LocalStore:
    """A directory. Temporary files are ``.<name>.tmp`` beside their key: hidden from readers, and
    the same name for the same key, so a put repeated after a crash reuses it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        temp = path.with_name(f".{path.name}{_TEMP_SUFFIX}")
        try:
            self._make_dirs(path.parent)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise StoreUnavailable(f"writing {path}: {exc}", key=key) from exc

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"reading {path}: {exc}", key=key) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreUnavailable(f"deleting {path}: {exc}", key=key) from exc
        try:
            _fsync_dir(path.parent)
        except OSError as exc:
            raise StoreUnavailable(f"deleting {path}: {exc}", key=key) from exc

    def list(self, prefix: str = "") -> builtins.list[str]:
        keys = []
        try:
            for folder, dirs, files in os.walk(self.root):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                base = Path(folder).relative_to(self.root)
                for name in files:
                    if name.startswith("."):
                        continue  # a temporary file
                    key = (base / name).as_posix()
                    if key.startswith(prefix):
                        keys.append(key)
        except OSError as exc:
            raise StoreUnavailable(f"listing {self.root}: {exc}") from exc
        return sorted(keys)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{key!r} is not a relative key")
        return self.root.joinpath(*parts)

    def _make_dirs(self, folder: Path) -> None:
        """``folder`` and its parents; each new one is made durable in its parent."""
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for new in reversed(missing):
            new.mkdir(exist_ok=True)
            _fsync_dir(new.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3Store:
    """``s3://bucket/prefix`` on AWS or any S3-compatible endpoint (moto's server in tests)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        options: dict[str, Any] = {}
        if endpoint:  # path-style addressing: a loopback server has no per-bucket DNS names
            options["s3"] = {"addressing_style": "path"}
        config = Config(
            connect_timeout=5,
            read_timeout=60,
            # botocore retries throttling and 5xx a few times itself; past that the sink backs off.
            retries={"total_max_attempts": 3, "mode": "standard"},
            **options,
        )
        # A session of its own: boto3's default session is shared global state.
        session = boto3.session.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
        )
        self._client: Any = session.client("s3", endpoint_url=endpoint, config=config)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def put(self, key: str, data: bytes) -> None:
        full = self._key(key)
        try:
            self._client.put_object(Bucket=self.bucket, Key=full, Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnavailable(f"PUT s3://{self.bucket}/{full}: {exc}", key=key) from exc

    def get(self, key: str) -> bytes | None:
        full = self._key(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=full)
            body: bytes = response["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise StoreUnavailable(f"GET s3://{self.bucket}/{full}: {exc}", key=key) from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"GET s3://{self.bucket}/{full}: {exc}", key=key) from exc
        return body

    def delete(self, key: str) -> None:
        full = self._key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=full)  # a missing key is no error
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnavailable(f"DELETE s3://{self.bucket}/{full}: {exc}", key=key) from exc

    def list(self, prefix: str = "") -> builtins.list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        keys = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=root + prefix
            )
            for page in pages:
                keys += [str(item["Key"])[len(root) :] for item in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnavailable(f"LIST s3://{self.bucket}/{root}{prefix}: {exc}") from exc
        return sorted(keys)

    def _key(self, key: str) -> str:
        if not key or key.startswith("/"):
            raise ValueError(f"{key!r} is not a relative key")
        return f"{self.prefix}/{key}" if self.prefix else key


def store_for(settings: Settings) -> LocalStore | S3Store:
    """The store ``settings.sink_location()`` names: ``s3://bucket[/prefix]``, else a directory."""
    location = settings.sink_location()
    if location.startswith("s3://"):
        parts = urlsplit(location)
        if not parts.netloc:
            raise ConfigError(f"NOTIFY_SINK_OUTPUT={location!r} names no bucket (s3://bucket/prefix)")
        return S3Store(
            parts.netloc,
            parts.path,
            endpoint=settings.s3_endpoint,
            region=settings.aws_region,
            access_key_id=settings.aws_access_key_id.get_secret_value(),
            secret_access_key=settings.aws_secret_access_key.get_secret_value(),
        )
    if "://" in location:
        raise ConfigError(f"NOTIFY_SINK_OUTPUT={location!r}: a directory or s3://bucket/prefix")
    return LocalStore(Path(location))
