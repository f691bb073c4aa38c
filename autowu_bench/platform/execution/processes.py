"""The processes a local Ray instance started, so that none outlives the suite (Linux /proc).

``ray.shutdown()`` stops the raylet and GCS, and their workers normally exit with them, but nothing
guarantees it: a process re-parented to init outlives the instance (tests/test_processes.py). The
``ray_cluster.ray_session`` notes every process under the local instance's own processes before shutting down and kills
whatever is still alive a few seconds later. A (pid, start time) pair names a process, so a reused PID
is never touched. Elsewhere than Linux this finds nothing and does nothing.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

Process = tuple[int, int]  # (pid, start time in clock ticks since boot)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of ``pid``, or None when it is gone or unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[1]), int(fields[19])


def descendants(roots: list[int]) -> set[Process]:
    """The ``roots`` and every process below them, as (pid, start time)."""
    parent_of: dict[int, int] = {}
    started: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*") if Path("/proc").is_dir() else []:
        info = _stat(int(entry.name))
        if info is not None:
            _, parent_of[int(entry.name)], started[int(entry.name)] = info
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_of.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [pid for pid in roots if pid in started]
    while todo:
        pid = todo.pop()
        found.add((pid, started[pid]))
        todo += children.get(pid, [])
    return found


def alive(processes: set[Process]) -> set[Process]:
    """Those of ``processes`` still running (the same process: same pid and start time; not a zombie)."""
    out = set()
    for pid, start in processes:
        info = _stat(pid)
        if info is not None and info[2] == start and info[0] != "Z":
            out.add((pid, start))
    return out


def kill_now(processes: set[Process]) -> None:
    """SIGKILL ``processes`` (those still the same processes), without waiting."""
    for pid, _ in alive(processes):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def kill_survivors(processes: set[Process], *, grace_s: float = 5.0) -> set[Process]:
    """Wait up to ``grace_s`` for ``processes`` to exit, then SIGKILL the rest and see them gone (up to
    2 s more); returns those killed."""
    deadline = time.monotonic() + grace_s
    while (left := alive(processes)) and time.monotonic() < deadline:
        time.sleep(0.2)
    kill_now(left)
    deadline = time.monotonic() + 2.0  # SIGKILL is delivered asynchronously: see them gone
    while alive(left) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
