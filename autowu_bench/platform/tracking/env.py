"""The environment every process that talks to MLflow needs, set where a process starts, never at import.

Rule: a process sets these before MLflow is imported, with :func:`apply_process_env` (a value already in
the environment wins, so ``MLFLOW_DISABLE_TELEMETRY=false`` turns telemetry back on). Importing a module
of this package never edits ``os.environ``.

* ``MLFLOW_DISABLE_TELEMETRY``: MLflow's usage-telemetry thread sets and unsets an environment variable
  while ``requests`` iterates ``os.environ`` in the logging thread, which can raise ``KeyError`` inside
  ``log_batch`` and kill a trial.
* ``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT``: MLflow prints a "View run" link per finished run, one line
  per trial of noise; ``run_suite.py`` prints where the runs are once.
* ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``_BACKOFF_FACTOR`` / ``_TIMEOUT``: MLflow's defaults (7 retries
  with a backoff doubling from 2 s, 120 s a request) make one call to a server that is away last
  minutes. Every tracking call here goes through a spool that tries again later (``spool``,
  ``tracking.delivery.send_spools``), so a request gives up after 2 quick retries (about 3 s when nothing
  listens) and 10 s without an answer. Raise them for a remote server that is slow to answer.

Who gets them: ``run_suite.py``'s main calls :func:`apply_process_env`; the local MLflow server gets
them from ``LocalMlflowServer`` (inherited, or these defaults); Ray trial drivers and workers through
``ray_cluster.ray_session``'s ``runtime_env``. A script of your own that logs (``TrialLogger``,
``start_trial_run``, ...) calls :func:`apply_process_env` first or sets the variables itself.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

MLFLOW_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def apply_process_env(environ: MutableMapping[str, str] | None = None) -> None:
    """Set every ``MLFLOW_ENV`` variable not already set in ``environ`` (default ``os.environ``)."""
    environ = os.environ if environ is None else environ
    for key, value in MLFLOW_ENV.items():
        environ.setdefault(key, value)
