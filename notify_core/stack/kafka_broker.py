"""A single-node KRaft Kafka broker of our own, from Maven Central jars, on 127.0.0.1.

The jars are fetched once by Maven (``stack/kafka-pom.xml``) into ``<cache>/kafka-<version>/libs``;
storage is formatted on first start; the broker runs detached and is ready when it answers a
metadata request. Only a broker we started (pid file + our config path in its command line) is
ever stopped. Facts behind each setting: ``shared/notes/kafka-from-maven-central.md``.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from notify_core.exceptions import StackError
from notify_core.settings import Settings
from notify_core.stack.processes import our_pid, port_open, spawn, stop_pid, tail

POM = Path(__file__).resolve().parents[2] / "stack" / "kafka-pom.xml"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class KafkaPaths:
    root: Path
    libs: Path
    data: Path
    logs: Path
    config: Path
    log_config: Path
    pid: Path

    @classmethod
    def of(cls, settings: Settings) -> KafkaPaths:
        root = settings.cache_dir / "kafka"
        return cls(
            root=root,
            libs=settings.cache_dir / f"kafka-{settings.kafka_version}" / "libs",
            data=root / "data",
            logs=root / "logs",
            config=root / "server.properties",
            log_config=root / "log4j2.properties",
            pid=root / "kafka.pid",
        )


def server_properties(settings: Settings, data_dir: Path) -> str:
    """The broker config: one combined broker+controller node that can run transactions."""
    port, controller = settings.kafka_port, settings.kafka_controller_port
    lines = [
        "process.roles=broker,controller",
        "node.id=1",
        # Static voter: the same `format` command works on 3.9, 4.0 and 4.1 (no --standalone).
        f"controller.quorum.voters=1@{HOST}:{controller}",
        f"listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller}",
        f"advertised.listeners=PLAINTEXT://{HOST}:{port}",
        "inter.broker.listener.name=PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={data_dir}",
        # Topics are created by `notify topics apply` with their config, never by accident.
        "auto.create.topics.enable=false",
        "num.partitions=1",
        # One node: the internal topics must not ask for 3 replicas, or groups and transactions fail.
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        # Tests create many short-lived groups: no 3 s wait before each first rebalance.
        "group.initial.rebalance.delay.ms=0",
    ]
    return "\n".join(lines) + "\n"


LOG4J2 = """status = error
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
"""


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def answering(settings: Settings, timeout_s: float = 3.0) -> bool:
    if not port_open(HOST, settings.kafka_port):
        return False
    try:
        AdminClient(settings.kafka_admin()).list_topics(timeout=timeout_s)
        return True
    except Exception:  # any librdkafka failure means "not (yet) a working broker"
        return False


def ensure_jars(settings: Settings, paths: KafkaPaths) -> str | None:
    return fetch_jars(POM, paths.libs, settings.kafka_version, "kafka")


def fetch_jars(pom: Path, libs: Path, version: str, what: str) -> str | None:
    """Maven copies ``pom``'s runtime classpath into ``libs`` once; None when it is there already."""
    complete = libs / ".complete"
    if complete.exists():
        return None
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise StackError(
            "Java 17+ and Maven are needed to fetch and run Kafka (apt-get install openjdk-17-jre maven)"
        )
    libs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    done = subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(pom),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise StackError(
            f"Maven could not fetch {what} {version}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
        )
    complete.write_text("ok\n")
    jars = len(list(libs.glob("*.jar")))
    return f"{what}: fetched {jars} jars from Maven Central in {time.monotonic() - started:.1f}s"


def start(settings: Settings) -> list[str]:
    paths = KafkaPaths.of(settings)
    address = f"{HOST}:{settings.kafka_port}"
    if our_pid(paths.pid, str(paths.config)) is not None and answering(settings):
        return [f"kafka: already running on {address}"]
    if our_pid(paths.pid, str(paths.config)) is None and answering(settings):
        return [f"kafka: something else already answers on {address}; using it, not starting ours"]
    lines = [line for line in [ensure_jars(settings, paths)] if line]
    for folder in (paths.root, paths.logs):
        folder.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(server_properties(settings, paths.data))
    paths.log_config.write_text(LOG4J2.format(log_file=paths.logs / "server.log"))
    classpath = f"{paths.libs}/*"
    log_opt = f"-Dlog4j2.configurationFile={paths.log_config}"
    if not (paths.data / "meta.properties").exists():
        shutil.rmtree(paths.data, ignore_errors=True)
        formatted = subprocess.run(
            [
                "java",
                log_opt,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                new_cluster_id(),
                "-c",
                str(paths.config),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if formatted.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{formatted.stdout}{formatted.stderr}")
        lines.append(f"kafka: formatted storage in {paths.data}")
    out = paths.logs / "broker.out"
    started = time.monotonic()
    process = spawn(
        [
            "java",
            f"-Xms{settings.kafka_heap}",
            f"-Xmx{settings.kafka_heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            log_opt,
            f"-Dkafka.logs.dir={paths.logs}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(paths.config),
        ],
        out,
        paths.pid,
    )
    deadline = started + settings.stack_start_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            paths.pid.unlink(missing_ok=True)
            raise StackError(
                f"Kafka exited with {process.returncode} while starting. Last log lines:\n"
                f"{tail(out)}\n{tail(paths.logs / 'server.log')}"
            )
        if answering(settings, timeout_s=1.0):
            lines.append(
                f"kafka: started on {address} (pid {process.pid}) in {time.monotonic() - started:.1f}s"
            )
            return lines
        time.sleep(0.5)
    stop_pid(process.pid, timeout_s=10)
    paths.pid.unlink(missing_ok=True)
    raise StackError(
        f"Kafka did not answer on {address} within {settings.stack_start_timeout_s:g}s. "
        f"Last log lines:\n{tail(out)}\n{tail(paths.logs / 'server.log')}"
    )


def stop(settings: Settings) -> list[str]:
    paths = KafkaPaths.of(settings)
    pid = our_pid(paths.pid, str(paths.config))
    if pid is None:
        return ["kafka: not started by us, nothing to stop"]
    gentle = stop_pid(pid, timeout_s=30)
    paths.pid.unlink(missing_ok=True)
    return [f"kafka: stopped (pid {pid}){'' if gentle else ' with SIGKILL after 30s'}"]


def status(settings: Settings) -> str:
    paths = KafkaPaths.of(settings)
    pid = our_pid(paths.pid, str(paths.config))
    address = f"{HOST}:{settings.kafka_port}"
    if pid is not None:
        state = "answering" if answering(settings) else "NOT answering"
        return f"kafka     ours, pid {pid}, {address}, {state}"
    if answering(settings):
        return f"kafka     not ours, {address}, answering"
    return f"kafka     stopped ({address})"
