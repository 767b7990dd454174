"""Topic names, specs, and the drift/plan logic behind `notify topics`."""

from __future__ import annotations

from notify_core.settings import Settings
from notify_core.topic_admin import ObservedTopic, drift, format_table, plan
from notify_core.topics import RETRY_TIERS_S, Channel, TopicNames, TopicSpec, retry_tier, topic_specs

TIERS = (".retry.1s", ".retry.10s", ".retry.60s", ".retry.300s")


def test_every_topic_the_pipeline_uses_is_named() -> None:
    """Each channel has its topic, one retry topic per tier, and a dead-letter topic."""
    names = TopicNames("notifications")
    assert names.all() == [
        "notifications.requests",
        "notifications.requests.dlq",
        "notifications.events",
        "notifications.events.dlq",
        *(f"notifications.{c}{suffix}" for c in Channel for suffix in ("", *TIERS, ".dlq")),
        "notifications.user-changes",
    ]
    assert len(set(names.all())) == 29
    assert names.retries(Channel.SMS)["notifications.sms.retry.60s"] == 60


def test_a_retry_goes_to_the_smallest_tier_that_covers_its_wait() -> None:
    """No retry waits behind a longer one than its tier's delay; waits past the largest are clamped."""
    cases = {0.0: 1, 0.2: 1, 1.0: 1, 1.01: 10, 9.9: 10, 10.0: 10, 59.0: 60, 61.0: 300, 300.0: 300}
    assert {wait: retry_tier(wait) for wait in cases} == cases
    assert retry_tier(10**9) == max(RETRY_TIERS_S)
    assert retry_tier(-5) == min(RETRY_TIERS_S)


def test_specs_take_partitions_and_retention_from_settings() -> None:
    settings = Settings(
        topic_partitions=4, topic_retention_ms=1000, dlq_retention_ms=2000, events_retention_ms=3000
    )
    specs = {s.name: s for s in topic_specs(settings)}
    assert specs["notifications.ios"].partitions == 4
    assert specs["notifications.ios"].config["retention.ms"] == "1000"
    assert specs["notifications.sms.dlq"].config["retention.ms"] == "2000"
    assert specs["notifications.events"].config["retention.ms"] == "3000"
    assert specs["notifications.requests"].config["min.insync.replicas"] == "1"


def test_only_the_user_changes_topic_is_compacted() -> None:
    """Routers need only each user's latest change, so that topic is compacted (with segments that
    close, or compaction never runs); every other topic keeps every record until its retention."""
    specs = {s.name: s for s in topic_specs(Settings(topic_partitions=4))}
    changes = specs.pop("notifications.user-changes")
    assert changes.partitions == 4
    assert changes.config["cleanup.policy"] == "compact"
    assert int(changes.config["segment.ms"]) <= 3600 * 1000
    assert "retention.ms" not in changes.config  # a compact-only topic ignores it
    assert {s.config["cleanup.policy"] for s in specs.values()} == {"delete"}


SPEC = TopicSpec("t", 6, 1, {"retention.ms": "100", "cleanup.policy": "delete"})


def observed(partitions: int = 6, rf: int = 1, config: dict[str, str] | None = None) -> ObservedTopic:
    return ObservedTopic(
        "t", partitions, rf, {"retention.ms": "100", "cleanup.policy": "delete", **(config or {})}
    )


def test_no_drift_when_cluster_matches() -> None:
    assert drift(SPEC, observed()) == []
    assert plan([SPEC], {"t": observed()}) == plan([], {})


def test_missing_topic_is_created() -> None:
    assert plan([SPEC], {}).create == [SPEC]


def test_more_partitions_are_added_fewer_cannot_be_fixed() -> None:
    assert plan([SPEC], {"t": observed(partitions=3)}).grow_partitions == {"t": 6}
    shrink = plan([SPEC], {"t": observed(partitions=12)})
    assert shrink.grow_partitions == {}
    assert [d.setting for d in shrink.unfixable] == ["partitions"]


def test_config_drift_is_altered_and_replication_is_reported() -> None:
    todo = plan([SPEC], {"t": observed(rf=3, config={"retention.ms": "5"})})
    assert todo.alter_config == {"t": {"retention.ms": "100"}}
    assert str(todo.unfixable[0]) == "t: replication.factor is 3, config says 1"


def test_table_aligns_columns() -> None:
    lines = format_table(["a", "bb"], [["xxx", "y"]])
    assert lines == ["a    bb", "---  --", "xxx  y"]
