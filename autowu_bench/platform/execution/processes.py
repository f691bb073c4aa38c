"""The processes a local Ray instance started, so that none outlives the suite (through psutil).

``ray.shutdown()`` stops the raylet and GCS, and their workers normally exit with them, but nothing
guarantees it: a process re-parented to init outlives the instance (tests/test_processes.py). The
``ray_cluster.ray_session`` notes every process under the local instance's own processes before shutting down and kills
whatever is still alive a few seconds later. A (pid, start time) pair names a process, so a reused PID
is never touched. A process that is gone, or that this user may not read, is left out.
"""

from __future__ import annotations

import time

import psutil

Process = tuple[int, float]  # (pid, start time: psutil's create_time(), seconds since the epoch)

# A process psutil cannot see, may not read, or that has exited (a zombie waits only to be reaped).
_GONE = (psutil.NoSuchProcess, psutil.AccessDenied)  # ZombieProcess is a NoSuchProcess
_DEAD = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def descendants(roots: list[int]) -> set[Process]:
    """The ``roots`` and every process below them, as (pid, start time)."""
    found: set[Process] = set()
    for root in roots:
        try:
            parent = psutil.Process(root)
            below = parent.children(recursive=True)
            found.add((root, parent.create_time()))
        except _GONE:
            continue
        for child in below:
            try:
                found.add((child.pid, child.create_time()))
            except _GONE:
                pass
    return found


def _same(pid: int, start: float) -> psutil.Process | None:
    """The process ``pid`` if it is still the one started at ``start`` and has not exited, else None."""
    try:
        proc = psutil.Process(pid)
        if proc.create_time() == start and proc.status() not in _DEAD:
            return proc
    except _GONE:
        pass
    return None


def alive(processes: set[Process]) -> set[Process]:
    """Those of ``processes`` still running (the same process: same pid and start time; not a zombie)."""
    return {(pid, start) for pid, start in processes if _same(pid, start) is not None}


def kill_now(processes: set[Process]) -> None:
    """SIGKILL ``processes`` (those still the same processes), without waiting."""
    for pid, start in processes:
        if (proc := _same(pid, start)) is not None:
            try:
                proc.kill()  # psutil checks again that the pid was not reused meanwhile
            except _GONE:
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
