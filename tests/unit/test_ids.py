"""Pooled random ids: never shared with a forked child."""

from __future__ import annotations

import os

import pytest

from notify_core.ids import random_uuid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_does_not_mint_its_parents_next_ids() -> None:
    """After fork the child refills its own pool: its next id is not the one the parent mints next."""
    random_uuid()  # the pool is filled, with ids left in it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave without running pytest's teardown
        os.write(write, str(random_uuid()).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert child
    assert child != str(random_uuid())
