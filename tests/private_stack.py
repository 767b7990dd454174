"""A Kafka and a PostgreSQL of one test module's own, for tests that stop and start them.

Stopping the shared stack would break every other test, so a module that takes the broker or the
database away makes its fixture here, in a folder of its own (``OUTAGE``, ``EFFECTS``) and on ports
reserved for it while it runs. The fixture is module-scoped, so each stack is started once for its
module and stopped when the module ends.

Several such stacks can be up at once: one per pytest-xdist worker, and others from another checkout
on the same machine (whose folders differ, but not their ports). So the ports are not fixed: each
fixture reserves free ones for its lifetime (``reserve_ports``), from a range below the kernel's
ephemeral ports, so that while a test has a server stopped no outgoing connection can be handed its
port and keep it from starting again. The folder is locked for the fixture's lifetime too: a second
run of the same module in the same checkout waits for the first instead of sharing its data.
"""

from __future__ import annotations

import contextlib
import fcntl
import random
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from notify_core.settings import Settings
from notify_core.stack import kafka_broker, postgres
from notify_core.stack.kafka_broker import KafkaPaths

# Below Linux's default ephemeral range (32768-60999), and above the ports the private stacks had
# fixed before (19192-19293, 25532, 25632), so a checkout still on those never meets these.
PORT_RANGE = range(26_000, 32_000)
# Machine-wide, not per checkout: every run on this machine sees every other's reservations.
RESERVATIONS = Path(tempfile.gettempdir()) / "notify-test-ports"


@dataclass(frozen=True)
class PrivateStack:
    """Where one module's stack lives; its ports are reserved when its fixture starts."""

    folder: str  # under the cache dir: the broker's and the cluster's data
    prefix: str  # topic prefix stem, for telling the modules' topics apart


OUTAGE = PrivateStack("outage-stack", "o")
EFFECTS = PrivateStack("effects-stack", "e")


@dataclass(frozen=True)
class Ports:
    kafka: int
    kafka_controller: int
    postgres: int


def _hold(path: Path, *, wait: bool) -> IO[str] | None:
    """``path`` opened and flock-ed, held until closed; None when another holds it and not ``wait``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _wait_for(path: Path) -> IO[str]:
    handle = _hold(path, wait=True)
    assert handle is not None  # only a non-waiting hold gives up
    return handle


def _bindable(port: int) -> bool:
    """Nothing listens on (or holds) 127.0.0.1:``port`` now; SO_REUSEADDR as servers bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def reserve_ports(count: int) -> Iterator[list[int]]:
    """``count`` distinct free loopback ports from ``PORT_RANGE``, reserved until the block ends.

    A reservation is an flock on ``RESERVATIONS/<port>.lock``, so two runs never pick the same port,
    even while the server on it is stopped; the bind check skips ports something else listens on.
    """
    with ExitStack() as held:
        ports: list[int] = []
        for port in random.sample(PORT_RANGE, len(PORT_RANGE)):
            if len(ports) == count:
                break
            handle = _hold(RESERVATIONS / f"{port}.lock", wait=False)
            if handle is None:
                continue
            held.callback(handle.close)
            if _bindable(port):
                ports.append(port)
        if len(ports) < count:
            raise RuntimeError(f"no {count} free ports in {PORT_RANGE}")
        yield ports


def private_settings(base: Settings, stack: PrivateStack, ports: Ports) -> Settings:
    return base.model_copy(
        update={
            "kafka_port": ports.kafka,
            "kafka_controller_port": ports.kafka_controller,
            "kafka_bootstrap": f"127.0.0.1:{ports.kafka}",
            "kafka_heap": "512m",
            "postgres_port": ports.postgres,
            "database_url": base.database_url.__class__(
                f"postgresql://notify@127.0.0.1:{ports.postgres}/notify"
            ),
            "cache_dir": base.cache_dir / stack.folder,
            "topic_prefix": f"{stack.prefix}-{uuid.uuid4().hex[:8]}",
            "topic_partitions": 3,
            "produce_timeout_s": 10.0,
        }
    )


def private_stack_fixture(stack: PrivateStack) -> Callable[..., Iterator[Settings]]:
    """A module-scoped ``private_stack`` fixture: assign it to that name in the test module."""

    @pytest.fixture(scope="module", name="private_stack")
    def fixture(base_settings: Settings) -> Iterator[Settings]:
        """A Kafka and a PostgreSQL of this module's own, started here and stopped after."""
        folder = base_settings.cache_dir / stack.folder
        with ExitStack() as held:
            held.callback(_wait_for(folder.parent / f".{stack.folder}.lock").close)
            kafka, controller, database = held.enter_context(reserve_ports(3))
            own = private_settings(base_settings, stack, Ports(kafka, controller, database))
            _share_kafka_jars(base_settings, own)
            # Ours, in our folder, which we now hold: a server a killed run left behind (on ports
            # that are not reserved any more) is stopped, so that the new ports are the ones used.
            kafka_broker.stop(own)
            postgres.stop(own)
            postgres.start(own)
            kafka_broker.start(own)
            try:
                yield own
            finally:
                kafka_broker.stop(own)
                postgres.stop(own)

    return fixture


def _share_kafka_jars(base: Settings, own: Settings) -> None:
    """The shared stack's Kafka jars for the private broker too, when they are complete: a fresh
    checkout (CI's) would otherwise have Maven copy the same jars once more for each private stack."""
    shared = KafkaPaths.of(base).libs.parent
    mine = KafkaPaths.of(own).libs.parent
    if (shared / "libs" / ".complete").exists() and not mine.exists() and not mine.is_symlink():
        mine.parent.mkdir(parents=True, exist_ok=True)
        mine.symlink_to(shared, target_is_directory=True)
