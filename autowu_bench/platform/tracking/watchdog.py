"""Runs the MLflow server, restarts it when it dies, and takes it down when its owner dies, so a killed
``run_suite.py`` (even by SIGKILL) leaves no server behind.

    python -m autowu_bench.platform.tracking.watchdog [--restarts N] <owner pid> <server command ...>

The watchdog leads its own process group, which the server and everything it starts join. When the
server exits while the owner lives and nobody asked the watchdog to stop, it kills what is left of
that server (the rest of its group: ``mlflow server`` runs uvicorn as a child, which could keep the
port) and starts the same command again, so the server comes back on the same port and the URI the
trials hold stays valid; it prints a line to its output (the server's log) each time, and gives up
after ``N`` restarts (default :data:`MAX_RESTARTS`; 0: never restart). It stops the group when its
parent is no longer the owner (the owner died and it was reparented), when it gives up, or on SIGTERM
(which ``LocalMlflowServer.stop`` sends to the whole group): SIGTERM, then SIGKILL after 5 s for
anything left (itself included). The standard library and psutil only, so it starts fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

POLL_SECONDS = 0.2
GRACE_SECONDS = 5.0
MAX_RESTARTS = 5
RESTART_PAUSE_SECONDS = 1.0
USAGE = "usage: python -m autowu_bench.platform.tracking.watchdog [--restarts N] <owner pid> <command ...>"


def _log(message: str) -> None:
    print(f"server_watchdog {time.strftime('%Y-%m-%d %H:%M:%S')}: {message}", flush=True)


def _rest_of_group() -> list[int]:
    """The other live processes of this group (a zombie has exited: it only waits to be reaped)."""
    me, group = os.getpid(), os.getpgrp()
    pids = []
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD) and os.getpgid(proc.pid) == group:
                pids.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):  # gone meanwhile (ZombieProcess included)
            continue
    return pids


def _kill_leftovers() -> None:
    """SIGKILL what the dead server left in the group and wait (up to 5 s) until it is gone."""
    deadline = time.monotonic() + GRACE_SECONDS
    while (left := _rest_of_group()) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    max_restarts = MAX_RESTARTS
    if argv[:1] == ["--restarts"]:
        if len(argv) < 2 or not argv[1].isdigit():
            print(USAGE, file=sys.stderr)
            return 2
        max_restarts, argv = int(argv[1]), argv[2:]
    if len(argv) < 2 or not argv[0].isdigit():
        print(USAGE, file=sys.stderr)
        return 2
    owner, command = int(argv[0]), argv[1:]
    if os.getpgrp() != os.getpid():
        # Lead a group of its own: the group it stops must never be its caller's.
        os.setsid()
    stopping = []
    server = subprocess.Popen(command)
    # Installed after the server starts (an ignored signal would be inherited by it; a handler is not),
    # so the group's SIGTERM stops the server while the watchdog stays to SIGKILL any straggler.
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    restarts = 0
    while not stopping and os.getppid() == owner:
        if server.poll() is None:
            time.sleep(POLL_SECONDS)
            continue
        if stopping:
            break
        if restarts >= max_restarts:
            _log(f"the server exited with status {server.returncode}; not restarted "
                 f"({restarts} restarts, the most allowed is {max_restarts})")
            break
        restarts += 1
        _log(f"the server exited with status {server.returncode}; restart {restarts} of at most "
             f"{max_restarts}: {' '.join(command)}")
        _kill_leftovers()
        time.sleep(RESTART_PAUSE_SECONDS)
        if stopping or os.getppid() != owner:
            break
        server = subprocess.Popen(command)
    os.killpg(0, signal.SIGTERM)
    try:
        server.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    os.killpg(0, signal.SIGKILL)
    return 0  # not reached: the SIGKILL above includes this process


if __name__ == "__main__":
    sys.exit(main())
