"""``--ui [RUN_DIR]`` (``make ui RUN=RUN_DIR``): the MLflow UI over the tracking store a run wrote to.

A suite with no tracking URI runs its own MLflow server over ``mlflow.db`` in the folder it was started
from, which ``run.json`` records (``mlflow_store``): the UI must open that file, wherever the command
is typed. Without a run folder the UI opens ``./mlflow.db`` (what every suite started from here wrote).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from autowu_bench.launch.exit_status import ExitStatus
from autowu_bench.platform.records.run_manifest import RunManifest
from autowu_bench.platform.tracking.server import MAKE_UI_URL, mlflow_cli, store_options

# Where the UI listens: the address that the reports of suites that ran their own server link to.
UI_HOST, UI_PORT = urlparse(MAKE_UI_URL).hostname, urlparse(MAKE_UI_URL).port


def open_ui(run_dir: str | None, prog: str) -> ExitStatus:
    """``--ui [RUN_DIR]``: this process becomes ``mlflow ui`` over the run's store (until Ctrl-C); a run
    that logged to a server is told where to browse (0), a folder that is no run folder exits 2."""
    try:
        command = ui_command(run_dir)
    except ValueError as exc:
        print(f"{prog} --ui: {exc}", file=sys.stderr)
        return ExitStatus.INVALID
    if isinstance(command, str):
        print(f"{prog} --ui: {command}")
        return ExitStatus.OK
    print(f"{prog} --ui: MLflow UI over {command[command.index('--backend-store-uri') + 1]} at {MAKE_UI_URL} "
          "(Ctrl-C stops it)", flush=True)
    os.execv(command[0], command)  # does not return: Ctrl-C ends mlflow's process, which is this one
    raise AssertionError("os.execv returned")


def ui_command(run_dir: str | Path | None) -> list[str] | str:
    """The ``mlflow ui`` command line over ``run_dir``'s tracking store (None: ``./mlflow.db``), or, when
    the run logged to an MLflow server, where to browse instead (a sentence). ValueError when
    ``run_dir`` is not a run folder."""
    if run_dir is None:
        return _mlflow_ui(store_options(Path.cwd()))
    record = RunManifest.read(Path(run_dir).expanduser().absolute())
    if record.mlflow_store is not None:
        return _mlflow_ui(store_options(Path(record.mlflow_store)))
    if record.tracking_uri is None:
        raise ValueError(f"{run_dir}/run.json names no tracking store (the run stopped before MLflow started)")
    if urlparse(record.tracking_uri).scheme in ("http", "https"):
        return f"the run logged to the MLflow server {record.tracking_uri}: open it in a browser"
    return _mlflow_ui(["--backend-store-uri", record.tracking_uri])


def _mlflow_ui(store: list[str]) -> list[str]:
    return mlflow_cli() + ["ui", "--host", UI_HOST, "--port", str(UI_PORT), *store]
