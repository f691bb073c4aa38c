"""SIGINT and SIGTERM during a suite run: a clean stop first, an immediate one on the second signal."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from autowu_bench.launch.exit_status import ExitStatus
from autowu_bench.platform.records.run_manifest import mark_interrupted


class SignalStop:
    """The first SIGINT or SIGTERM raises KeyboardInterrupt in the main thread (the trials are stopped, the
    tables of what finished written, the MLflow runs marked KILLED, exit 130); a second one, while that
    clean-up runs, stops at once: this process's children are killed and it exits 130 (the run folder
    can still be resumed; the MLflow runs stay RUNNING until then)."""

    def __init__(self, prog: str) -> None:
        self.prog = prog
        self.signals = 0
        self.session = None  # the RaySession whose processes a second signal kills
        self.run_dir: Path | None = None

    def install(self, session, run_dir: Path) -> None:
        """Take SIGINT and SIGTERM over; after ``ray.init``, which installs its own SIGTERM handler."""
        self.session, self.run_dir = session, run_dir
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            # First, before anything stops: the trials that fail from here on were interrupted.
            try:
                mark_interrupted(self.run_dir, name)
            except OSError as exc:  # a full disk: the stop goes on (their runs may then end FAILED)
                print(f"{self.prog}: {exc}", file=sys.stderr, flush=True)
            print(f"\n{self.prog}: {name}: stopping the trials (again to stop at once)", file=sys.stderr, flush=True)
            raise KeyboardInterrupt(name)
        if self.session is not None:
            self.session.kill()
        # The MLflow server's watchdog sees its owner gone and stops the server.
        print(f"{self.prog}: stopped at once", file=sys.stderr, flush=True)
        os._exit(ExitStatus.INTERRUPTED)
