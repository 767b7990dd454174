from __future__ import annotations

from notify_core.burst import BurstStop


def test_a_slow_group_join_does_not_use_up_the_idle_budget() -> None:
    stop = BurstStop(idle_s=2.0, now=0.0)
    # No partitions for 5 s (a slow join): idle, but nothing to stop on.
    assert stop.idle(5.0)
    assert not stop.should_stop(5.0, has_partitions=False)
    # Partitions arrive at 6 s: the idle clock starts there, not at 0.
    assert stop.idle(8.0)
    assert not stop.should_stop(8.0, has_partitions=True)
    assert not stop.idle(9.0)
    assert stop.idle(10.5)
    assert stop.should_stop(10.5, has_partitions=True)


def test_activity_keeps_it_running() -> None:
    stop = BurstStop(idle_s=2.0, now=0.0)
    assert stop.idle(2.5)
    assert not stop.should_stop(2.5, has_partitions=True)
    stop.activity(4.0)
    assert not stop.idle(5.9)
    assert stop.idle(6.1)
    assert stop.should_stop(6.1, has_partitions=True)


def test_losing_the_partitions_restarts_the_count() -> None:
    stop = BurstStop(idle_s=1.0, now=0.0)
    assert not stop.should_stop(1.5, has_partitions=True)
    assert not stop.should_stop(3.0, has_partitions=False)  # revoked in a rebalance
    assert not stop.should_stop(4.5, has_partitions=True)  # reassigned: a whole idle period again
    assert stop.should_stop(6.0, has_partitions=True)


def test_not_idle_before_idle_s() -> None:
    stop = BurstStop(idle_s=3.0, now=10.0)
    assert not stop.idle(13.0)
    assert stop.idle(13.01)


def test_records_consumed_prove_the_partitions_so_the_stop_is_not_delayed() -> None:
    stop = BurstStop(idle_s=2.0, now=0.0)
    stop.activity(1.0, consumed=True)
    assert stop.idle(3.5)
    assert stop.should_stop(3.5, has_partitions=True)


def test_other_activity_proves_nothing_about_partitions() -> None:
    stop = BurstStop(idle_s=2.0, now=0.0)
    stop.activity(1.0)  # say, a deferred message released from the database
    assert stop.idle(3.5)
    assert not stop.should_stop(3.5, has_partitions=True)
