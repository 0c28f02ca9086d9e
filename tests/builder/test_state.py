"""The state file and the run lock."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from builder.errors import LockedError, StateError
from builder.state import FORMAT, RunLock, State

if TYPE_CHECKING:
    from pathlib import Path


def test_lock_excludes_a_second_holder(state_path: Path) -> None:
    """While one run holds the lock another one is refused with LockedError (exit 4)."""
    lock_path = State.lock_path(state_path)
    with RunLock(lock_path):
        with pytest.raises(LockedError, match=str(os.getpid())) as info, RunLock(lock_path):
            pass
        assert info.value.exit_code == 4
    with RunLock(lock_path):
        pass  # released on exit


def test_lock_of_a_killed_process_is_released(state_path: Path) -> None:
    """A holder that dies (here: exits without cleanup) does not block the next run."""
    lock_path = State.lock_path(state_path)
    lock_path.parent.mkdir(parents=True)
    code = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(lock_path)], check=True)
    with RunLock(lock_path):
        pass


def test_state_is_bound_to_one_namespace(state_path: Path) -> None:
    """A state file written for one namespace refuses to diff against another."""
    with State(state_path) as state:
        state.bind("https://api/accounts/a/ns1")
        state.bind("https://api/accounts/a/ns1")
        with pytest.raises(StateError, match="another --state"):
            state.bind("https://api/accounts/a/ns2")


def test_corrupt_state_file_is_a_clear_error(state_path: Path) -> None:
    """A file that is not SQLite is reported, not a traceback."""
    state_path.parent.mkdir(parents=True)
    state_path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StateError, match="not a usable state file"):
        State(state_path)


def test_counts_group_keys_by_kind(state_path: Path) -> None:
    """Status counts profiles, segments per schema and unconfirmed keys."""
    with State(state_path) as state:
        state.confirm_written([("u:a", b"h", 1), ("seg:x:v3", b"h", 1), ("seg:y:v12", b"h", 1)])
        state.mark_unconfirmed(["u:b"])
        assert state.counts() == {"u": 2, "seg:v3": 1, "seg:v12": 1, "unconfirmed": 1}


def test_a_format_1_state_is_upgraded_and_a_newer_one_refused(state_path: Path) -> None:
    """A format-1 state opens as format 2 with its rows as they were; an unknown format stops."""
    with State(state_path) as state:
        state.set_meta("format", "1")
        state.confirm_written([("u:a", b"\x01" * 16, 99)])
    with State(state_path) as state:
        assert state.get_meta("format") == FORMAT == "2"
        assert list(state.scan(["u:*"])) == [("u:a", b"\x01" * 16, 99)]
        state.set_meta("format", "3")
    with pytest.raises(StateError, match="state format '3'"):
        State(state_path)
