"""Every topic name the pipeline uses, and the spec each is created with.

Names hang off one prefix (``notifications`` by default) so tests can run a whole pipeline on
uniquely named topics. Topics are created by ``notify topics apply``, never by broker auto-create.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from notify_core.settings import Settings


class Channel(StrEnum):
    IOS = "ios"
    ANDROID = "android"
    SMS = "sms"
    EMAIL = "email"


@dataclass(frozen=True)
class TopicNames:
    """The names, derived from one prefix."""

    prefix: str = "notifications"

    @property
    def requests(self) -> str:
        return f"{self.prefix}.requests"

    @property
    def requests_dlq(self) -> str:
        return f"{self.prefix}.requests.dlq"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    def channel(self, channel: Channel) -> str:
        return f"{self.prefix}.{channel.value}"

    def retry(self, channel: Channel) -> str:
        return f"{self.prefix}.{channel.value}.retry"

    def dlq(self, channel: Channel) -> str:
        return f"{self.prefix}.{channel.value}.dlq"

    def all(self) -> list[str]:
        names = [self.requests, self.requests_dlq, self.events]
        for channel in Channel:
            names += [self.channel(channel), self.retry(channel), self.dlq(channel)]
        return names


@dataclass(frozen=True)
class TopicSpec:
    """What a topic should look like on the cluster."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def topic_names(settings: Settings) -> TopicNames:
    return TopicNames(settings.topic_prefix)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The desired state of every topic, from settings."""
    names = topic_names(settings)
    dead_letters = {names.requests_dlq} | {names.dlq(c) for c in Channel}

    def spec(name: str) -> TopicSpec:
        if name in dead_letters:
            retention = settings.dlq_retention_ms
        elif name == names.events:
            retention = settings.events_retention_ms
        else:
            retention = settings.topic_retention_ms
        return TopicSpec(
            name=name,
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            config={
                "retention.ms": str(retention),
                "min.insync.replicas": str(settings.topic_min_insync_replicas),
                # Keys are user ids; deleting (not compacting) keeps every message.
                "cleanup.policy": "delete",
            },
        )

    return [spec(name) for name in names.all()]
