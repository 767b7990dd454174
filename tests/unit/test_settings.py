"""Settings render librdkafka configuration and keep secrets secret."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from notify_core.settings import Settings


def test_producer_config_is_idempotent_acks_all_and_bounded() -> None:
    conf = Settings(produce_timeout_s=3).kafka_producer()
    assert conf["acks"] == "all"
    assert conf["enable.idempotence"] is True
    assert conf["message.timeout.ms"] == 3000
    assert "transactional.id" not in conf


def test_transactional_producer_carries_its_id() -> None:
    assert Settings().kafka_producer(transactional_id="router-0")["transactional.id"] == "router-0"


def test_consumer_commits_manually_and_reads_committed() -> None:
    conf = Settings().kafka_consumer("g1")
    assert conf["group.id"] == "g1"
    assert conf["enable.auto.commit"] is False
    assert conf["isolation.level"] == "read_committed"


def test_sasl_settings_pass_through_with_secret_revealed_only_in_the_dict() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password=SecretStr("hunter2"),
        kafka_extra={"socket.keepalive.enable": "true"},
    )
    conf = settings.kafka_common()
    assert conf["security.protocol"] == "sasl_ssl"
    assert conf["sasl.password"] == "hunter2"
    assert conf["socket.keepalive.enable"] == "true"
    assert "hunter2" not in repr(settings)


def test_environment_is_read_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_KAFKA_BOOTSTRAP", "broker:9999")
    monkeypatch.setenv("NOTIFY_TOPIC_PARTITIONS", "12")
    settings = Settings()
    assert settings.kafka_bootstrap == "broker:9999"
    assert settings.topic_partitions == 12


@pytest.mark.parametrize("prefix", ["", "has space", "slash/no"])
def test_illegal_topic_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValidationError, match="topic_prefix"):
        Settings(topic_prefix=prefix)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.kafka_bootstrap = "elsewhere:9092"
