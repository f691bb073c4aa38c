"""The operations a spool holds: one frozen dataclass per kind, each written as one JSON line of the
spool's ops.jsonl (``to_json``), read back from it (:func:`from_json`) and carried out against MLflow
by itself (``apply``).

A line is ``{"op": KIND, ...}``; the kinds and their keys (a run folder written by an earlier version
of this code must still be sent, so these never change):

    create          parent, spec       the trial's child run (``client.start_trial_run``), or, when the
                                        spool already names a run, that run RUNNING again
    metrics         m                  ``[[key, value, timestamp ms, step], ...]``, one ``log_batch``
    tags            t                  ``{key: value}``, one ``log_batch``
    status          status             RUNNING, or the run's end (``client.end_run``)
    artifacts       paths, dir         files uploaded as they are when sent (``client.log_artifacts``)
    close_children  status             the parent run's children still RUNNING ended with ``status``

Every operation must be idempotent (see ``spool``): a crash between MLflow taking it and its
acknowledgement sends it again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.tracking import client
from autowu_bench.platform.tracking.client import METRICS_PER_CALL, PARAMS_PER_CALL, RunStatus
from autowu_bench.platform.tracking.spool import Spool


@dataclass(frozen=True)
class Operation:
    """One spooled MLflow operation. Subclasses name their ``KIND`` (the line's ``"op"``) and carry out
    themselves in ``apply``."""

    KIND: ClassVar[str]
    # Whether the spool must already name its MLflow run (every kind but the run's creation).
    NEEDS_RUN: ClassVar[bool] = True

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def parse(cls, line: dict[str, Any]) -> Operation:
        raise NotImplementedError

    def apply(self, tracking_uri: str, mlflow: Any, spool: Spool, run_id: str | None) -> int:
        """Carry the operation out (``mlflow``: an ``MlflowClient`` of ``tracking_uri``; ``run_id``: the
        spool's run); returns the metric values it logged."""
        raise NotImplementedError


@dataclass(frozen=True)
class CreateRun(Operation):
    """The trial's child run under ``parent``, from its spec (``TrialSpec.to_dict()``, kept as written)."""

    KIND: ClassVar[str] = "create"
    NEEDS_RUN: ClassVar[bool] = False
    parent: str | None
    spec: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"op": self.KIND, "parent": self.parent, "spec": self.spec}

    @classmethod
    def parse(cls, line: dict[str, Any]) -> CreateRun:
        return cls(parent=line.get("parent"), spec=line["spec"])

    def apply(self, tracking_uri: str, mlflow: Any, spool: Spool, run_id: str | None) -> int:
        if run_id is None:
            spool.set_run_id(client.start_trial_run(tracking_uri, self.parent, TrialSpec.from_dict(self.spec)))
        else:  # the trial's run exists: a restarted trial takes it up again
            mlflow.update_run(run_id, status=str(RunStatus.RUNNING))
        return 0


@dataclass(frozen=True)
class LogMetrics(Operation):
    """Metric points ``[key, value, timestamp ms, step]`` (at most ``METRICS_PER_CALL``)."""

    KIND: ClassVar[str] = "metrics"
    points: list[list]

    def to_json(self) -> dict[str, Any]:
        return {"op": self.KIND, "m": self.points}

    @classmethod
    def parse(cls, line: dict[str, Any]) -> LogMetrics:
        return cls(points=line["m"])

    def apply(self, tracking_uri: str, mlflow: Any, spool: Spool, run_id: str | None) -> int:
        from mlflow.entities import Metric

        mlflow.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in self.points], synchronous=True)
        return len(self.points)


@dataclass(frozen=True)
class SetTags(Operation):
    """Tags ``{key: value}`` (at most ``PARAMS_PER_CALL``)."""

    KIND: ClassVar[str] = "tags"
    tags: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"op": self.KIND, "t": self.tags}

    @classmethod
    def parse(cls, line: dict[str, Any]) -> SetTags:
        return cls(tags=line["t"])

    def apply(self, tracking_uri: str, mlflow: Any, spool: Spool, run_id: str | None) -> int:
        from mlflow.entities import RunTag

        mlflow.log_batch(run_id, tags=[RunTag(k, v) for k, v in self.tags.items()], synchronous=True)
        return 0


@dataclass(frozen=True)
class SetStatus(Operation):
    """The run's status: RUNNING again, or its end (one of ``client.STATUSES``)."""

    KIND: ClassVar[str] = "status"
    status: str  # a RunStatus; read from a spool, the string as written (``end_run`` checks it)

    def to_json(self) -> dict[str, Any]:
        return {"op": self.KIND, "status": str(self.status)}

    @classmethod
    def parse(cls, line: dict[str, Any]) -> SetStatus:
        return cls(status=line["status"])

    def apply(self, tracking_uri: str, mlflow: Any, spool: Spool, run_id: str | None) -> int:
        if self.status == RunStatus.RUNNING:
            mlflow.update_run(run_id, status=str(RunStatus.RUNNING))
        else:
            client.end_run(tracking_uri, run_id, self.status)
        return 0


@dataclass(frozen=True)
class LogArtifacts(Operation):
    """Files uploaded to the run under ``dir`` (None: its root), as they are when sent."""

    KIND: ClassVar[str] = "artifacts"
    paths: list[str]
    dir: str | None

    def to_json(self) -> dict[str, Any]:
        return {"op": self.KIND, "paths": self.paths, "dir": self.dir}

    @classmethod
    def parse(cls, line: dict[str, Any]) -> LogArtifacts:
        return cls(paths=line["paths"], dir=line.get("dir"))

    def apply(self, tracking_uri: str, mlflow: Any, spool: Spool, run_id: str | None) -> int:
        client.log_artifacts(tracking_uri, run_id, [Path(p) for p in self.paths], self.dir)
        return 0


@dataclass(frozen=True)
class CloseChildren(Operation):
    """The parent run's children still RUNNING, ended with ``status`` (``client.close_open_children``)."""

    KIND: ClassVar[str] = "close_children"
    status: str  # a RunStatus, as for SetStatus

    def to_json(self) -> dict[str, Any]:
        return {"op": self.KIND, "status": str(self.status)}

    @classmethod
    def parse(cls, line: dict[str, Any]) -> CloseChildren:
        return cls(status=line["status"])

    def apply(self, tracking_uri: str, mlflow: Any, spool: Spool, run_id: str | None) -> int:
        client.close_open_children(tracking_uri, run_id, self.status)
        return 0


KINDS: dict[str, type[Operation]] = {kind.KIND: kind for kind in
                                     (CreateRun, LogMetrics, SetTags, SetStatus, LogArtifacts, CloseChildren)}


def from_json(line: dict[str, Any]) -> Operation:
    """The operation a spool line holds; ValueError for an unknown kind, KeyError for a missing key."""
    kind = KINDS.get(line.get("op"))
    if kind is None:
        raise ValueError(f"unknown spooled operation {line.get('op')!r}")
    return kind.parse(line)


def apply(tracking_uri: str, mlflow: Any, spool: Spool, line: dict[str, Any]) -> int:
    """Carry out the spool line ``line``; returns the metric values it logged. Raises ValueError for a
    line that needs the spool's run before the spool names one, or of an unknown kind."""
    kind = KINDS.get(line.get("op"))
    run_id = spool.run_id
    if (kind is None or kind.NEEDS_RUN) and run_id is None:
        raise ValueError("the spool names no MLflow run and has no 'create' operation before this one")
    return from_json(line).apply(tracking_uri, mlflow, spool, run_id)


def append(spool: Spool, operations: Iterable[Operation]) -> None:
    """Append ``operations`` to ``spool``, in order."""
    spool.append([operation.to_json() for operation in operations])


def batches(points: list[list], tags: dict[str, str]) -> list[Operation]:
    """Metric points ``[key, value, timestamp, step]`` and tags as operations, each within MLflow's
    per-request limits."""
    items = list(tags.items())
    return ([LogMetrics(points[i : i + METRICS_PER_CALL]) for i in range(0, len(points), METRICS_PER_CALL)]
            + [SetTags(dict(items[i : i + PARAMS_PER_CALL])) for i in range(0, len(items), PARAMS_PER_CALL)])
