"""Instance slots in PostgreSQL: distinct between live processes, the same again after a restart."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import pytest

from notify_core.identity import Slot
from notify_core.settings import Settings

pytestmark = pytest.mark.integration

HOLD = """
import sys, time
from notify_core.identity import Slot
slot = Slot(sys.argv[1], sys.argv[2])
print("SLOT", slot.number, flush=True)
time.sleep(120)
"""


def test_live_processes_get_distinct_slots_and_a_freed_slot_is_taken_again(stack_settings: Settings) -> None:
    """Two holders get 0 and 1; when 0 is released, the next process gets 0, not 2."""
    url, kind = stack_settings.database_url.get_secret_value(), f"test:{uuid.uuid4().hex}"
    first, second = Slot(url, kind, watch=False), Slot(url, kind, watch=False)
    assert (first.number, second.number) == (0, 1)
    first.release()
    third = Slot(url, kind, watch=False)
    assert third.number == 0
    second.release()
    third.release()


def test_a_killed_process_frees_its_slot_for_its_replacement(stack_settings: Settings) -> None:
    """SIGKILL drops the session and with it the lock: the restarted process gets the same identity."""
    url, kind = stack_settings.database_url.get_secret_value(), f"test:{uuid.uuid4().hex}"
    peer = Slot(url, kind, watch=False)  # slot 0 stays taken by a live peer throughout
    child = subprocess.Popen([sys.executable, "-c", HOLD, url, kind], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        lines = (line.split() for line in child.stdout)
        assert next(words[1] for words in lines if words[:1] == ["SLOT"]) == "1"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    # The killed session's backend ends a moment after the process: retry briefly, never for long.
    deadline = time.monotonic() + 10
    replacement = Slot(url, kind, watch=False)
    while replacement.number != 1 and time.monotonic() < deadline:
        replacement.release()
        time.sleep(0.2)
        replacement = Slot(url, kind, watch=False)
    assert replacement.number == 1, "the killed process's slot was not freed"
    replacement.release()
    peer.release()
