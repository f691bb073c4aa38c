"""Runs the MLflow server and takes it down when its owner dies, so a killed ``run_suite.py`` (even by
SIGKILL) leaves no server behind.

    python -m autowu_bench.platform.server_watchdog <owner pid> <server command ...>

The watchdog leads its own process group, which the server and everything it starts join. It stops the
group when its parent is no longer the owner (the owner died and it was reparented) or when the server
exits: SIGTERM, then SIGKILL after 5 s for anything left (itself included). ``LocalMlflowServer.stop``
stops the same group. Standard library only, so it starts fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

POLL_SECONDS = 0.2
GRACE_SECONDS = 5.0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: python -m autowu_bench.platform.server_watchdog <owner pid> <command ...>", file=sys.stderr)
        return 2
    owner, command = int(argv[0]), argv[1:]
    if os.getpgrp() != os.getpid():
        # Lead a group of its own: the group it stops must never be its caller's.
        os.setsid()
    server = subprocess.Popen(command)
    # Installed after the server starts (an ignored signal would be inherited by it), so the group's
    # SIGTERM stops the server while the watchdog stays to SIGKILL any straggler.
    signal.signal(signal.SIGTERM, lambda *_: None)
    while server.poll() is None and os.getppid() == owner:
        time.sleep(POLL_SECONDS)
    os.killpg(0, signal.SIGTERM)
    try:
        server.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    os.killpg(0, signal.SIGKILL)
    return 0  # not reached: the SIGKILL above includes this process


if __name__ == "__main__":
    sys.exit(main())
