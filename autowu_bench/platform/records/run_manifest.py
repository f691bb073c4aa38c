"""What a later command needs to pick a run folder up again: ``run.json`` in the run folder.

``run_suite.py`` writes it when a suite starts (and again once the parent MLflow run exists);
``--resume RUN_DIR`` and ``--sync RUN_DIR`` read it to reach the same tracking store and the same parent
run. A suite that ran its own local MLflow server records the folder holding that server's
``mlflow.db`` (``mlflow_store``), not the server's URI: that server's port dies with the suite, and a
later command starts a new server over the same file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from autowu_bench.platform.records.files import write_atomic

RUN_FILE = "run.json"
# Written by run_suite.py the moment a signal stops the suite, before it stops Ray: a trial whose training
# fails after that was interrupted, not broken (its MLflow run ends KILLED, --resume runs it again).
INTERRUPTED_FILE = "interrupted.json"


@dataclass(frozen=True)
class RunManifest:
    """Attributes:
        suite: the suite's name.
        tracking_uri: the tracking URI the suite was given; None when it ran its own local server.
        mlflow_store: that local server's folder (``mlflow.db``, ``mlflow-artifacts/``), or None.
        parent_run_id: the suite's parent MLflow run, once created.
        address: the Ray address the suite joined (None: it started a local Ray).
    """

    suite: str
    tracking_uri: str | None = None
    mlflow_store: str | None = None
    parent_run_id: str | None = None
    address: str | None = None

    def write(self, run_dir: str | os.PathLike) -> Path:
        path = Path(run_dir) / RUN_FILE
        write_atomic(path, json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> "RunManifest":
        """The record of ``run_dir``; ValueError naming the folder when it is not a suite's run folder."""
        path = Path(run_dir) / RUN_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(
                f"{run_dir} is not a run folder of run_suite.py (it has no {RUN_FILE}); pass the folder that "
                "run_suite.py printed as 'results: ...'"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} cannot be read ({exc}); the run folder cannot be picked up again") from None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def mark_interrupted(run_dir: str | os.PathLike, signal_name: str) -> None:
    """Record that ``signal_name`` stopped the suite of ``run_dir`` now (see ``INTERRUPTED_FILE``)."""
    write_atomic(Path(run_dir) / INTERRUPTED_FILE, json.dumps({"at": time.time(), "signal": signal_name}) + "\n")


def interrupted_since(run_dir: str | os.PathLike, started: float) -> str | None:
    """The signal that stopped the suite of ``run_dir`` at or after ``started`` (a Unix time), or None; an
    interruption of an earlier run of the folder, before ``started``, does not count."""
    try:
        mark = json.loads((Path(run_dir) / INTERRUPTED_FILE).read_text())
        return str(mark["signal"]) if float(mark["at"]) >= started else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
