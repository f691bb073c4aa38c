"""The exit statuses of a suite run and of ``--sync`` (``cli``'s help text says what each means)."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0  # every trial ran to its end (finished, or diverged: a loss that blew up is a result)
    INVALID = 2  # the suite, a flag or this machine cannot run it: nothing started
    TRIALS_FAILED = 3  # some trials failed with an error
    TRACKING_INCOMPLETE = 4  # MLflow did not take everything; it waits in the run folder's spools
    INTERRUPTED = 130  # SIGINT or SIGTERM
