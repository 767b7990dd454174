"""What the local stack writes before it starts anything (pure)."""

from __future__ import annotations

import base64
from pathlib import Path

from notify_core.settings import Settings
from notify_core.stack.kafka_broker import KafkaPaths, new_cluster_id, server_properties
from notify_core.stack.processes import our_pid


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_broker_config_uses_configured_ports_and_allows_transactions_on_one_node() -> None:
    conf = properties(server_properties(Settings(kafka_port=19092, kafka_controller_port=19093), Path("/d")))
    assert conf["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert conf["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert conf["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert conf["transaction.state.log.replication.factor"] == "1"
    assert conf["transaction.state.log.min.isr"] == "1"
    assert conf["offsets.topic.replication.factor"] == "1"
    assert conf["auto.create.topics.enable"] == "false"
    assert conf["log.dirs"] == "/d"


def test_cluster_id_is_16_bytes_and_never_starts_with_a_dash() -> None:
    for _ in range(200):
        cid = new_cluster_id()
        assert not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_paths_live_in_the_cache_and_jars_per_version(tmp_path: Path) -> None:
    paths = KafkaPaths.of(Settings(cache_dir=tmp_path, kafka_version="4.1.1"))
    assert paths.libs == tmp_path / "kafka-4.1.1" / "libs"
    assert paths.data.is_relative_to(tmp_path)


def test_a_stale_pid_file_is_not_ours_and_is_cleaned(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    pid_file.write_text("1\n")  # pid 1 exists but is not our broker
    assert our_pid(pid_file, "/no/such/marker") is None
    assert not pid_file.exists()
    pid_file.write_text("garbage")
    assert our_pid(pid_file, "x") is None
