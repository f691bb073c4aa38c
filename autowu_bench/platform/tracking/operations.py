"""The operations a spool holds: one frozen dataclass per kind, each written as one JSON line of the
spool's ops.jsonl (``to_json``), read back from it (:func:`read_line`, which ``Spool.pending`` yields)
and carried out against MLflow by itself (``send``).

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

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autowu_bench.platform.records.spec import TrialSpec
from autowu_bench.platform.tracking import client
from autowu_bench.platform.tracking.client import METRICS_PER_CALL, PARAMS_PER_CALL, RunStatus

if TYPE_CHECKING:  # the spool reads its lines through this module
    from autowu_bench.platform.tracking.spool import Spool


@dataclass(frozen=True)
class Operation:
    """One spooled MLflow operation. A subclass names its ``KIND`` (the line's ``"op"``), the JSON key of
    each of its fields (``KEYS``, in the line's order; those in ``OPTIONAL`` may be missing from a line:
    None) and carries itself out in ``apply``."""

    KIND: ClassVar[str]
    KEYS: ClassVar[dict[str, str]]  # field -> the line's key
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()
    # Whether the spool must already name its MLflow run (every kind but the run's creation).
    NEEDS_RUN: ClassVar[bool] = True

    def to_json(self) -> dict[str, Any]:
        """The spool line: ``{"op": KIND, key: value, ...}``, plain JSON values (a status as its string)."""
        line: dict[str, Any] = {"op": self.KIND}
        for name, key in self.KEYS.items():
            value = getattr(self, name)
            line[key] = str(value) if isinstance(value, StrEnum) else value
        return line

    @classmethod
    def parse(cls, line: dict[str, Any]) -> Operation:
        """The operation of a line of this kind; KeyError for a key it must have."""
        return cls(**{name: line.get(key) if key in cls.OPTIONAL else line[key]
                      for name, key in cls.KEYS.items()})

    def send(self, tracking_uri: str, mlflow: Any, spool: Spool) -> int:
        """Carry the operation out for ``spool`` (``mlflow``: an ``MlflowClient`` of ``tracking_uri``);
        returns the metric values it logged. Raises ValueError when it needs the spool's run before the
        spool names one."""
        run_id = spool.run_id
        if self.NEEDS_RUN and run_id is None:
            raise ValueError("the spool names no MLflow run and has no 'create' operation before this one")
        return self.apply(tracking_uri, mlflow, spool, run_id)

    def apply(self, tracking_uri: str, mlflow: Any, spool: Spool, run_id: str | None) -> int:
        """``send`` once the run is known (``run_id``: the spool's run, None only for ``CreateRun``)."""
        raise NotImplementedError


@dataclass(frozen=True)
class CreateRun(Operation):
    """The trial's child run under ``parent``, from its spec (``TrialSpec.to_dict()``, kept as written)."""

    KIND: ClassVar[str] = "create"
    KEYS: ClassVar[dict[str, str]] = {"parent": "parent", "spec": "spec"}
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"parent"})
    NEEDS_RUN: ClassVar[bool] = False
    parent: str | None
    spec: dict[str, Any]

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
    KEYS: ClassVar[dict[str, str]] = {"points": "m"}
    points: list[list]

    def apply(self, tracking_uri: str, mlflow: Any, spool: Spool, run_id: str | None) -> int:
        from mlflow.entities import Metric

        mlflow.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in self.points], synchronous=True)
        return len(self.points)


@dataclass(frozen=True)
class SetTags(Operation):
    """Tags ``{key: value}`` (at most ``PARAMS_PER_CALL``)."""

    KIND: ClassVar[str] = "tags"
    KEYS: ClassVar[dict[str, str]] = {"tags": "t"}
    tags: dict[str, str]

    def apply(self, tracking_uri: str, mlflow: Any, spool: Spool, run_id: str | None) -> int:
        from mlflow.entities import RunTag

        mlflow.log_batch(run_id, tags=[RunTag(k, v) for k, v in self.tags.items()], synchronous=True)
        return 0


@dataclass(frozen=True)
class SetStatus(Operation):
    """The run's status: RUNNING again, or its end (one of ``client.STATUSES``)."""

    KIND: ClassVar[str] = "status"
    KEYS: ClassVar[dict[str, str]] = {"status": "status"}
    status: str  # a RunStatus; read from a spool, the string as written (``end_run`` checks it)

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
    KEYS: ClassVar[dict[str, str]] = {"paths": "paths", "dir": "dir"}
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"dir"})
    paths: list[str]
    dir: str | None

    def apply(self, tracking_uri: str, mlflow: Any, spool: Spool, run_id: str | None) -> int:
        client.log_artifacts(tracking_uri, run_id, [Path(p) for p in self.paths], self.dir)
        return 0


@dataclass(frozen=True)
class CloseChildren(Operation):
    """The parent run's children still RUNNING, ended with ``status`` (``client.close_open_children``)."""

    KIND: ClassVar[str] = "close_children"
    KEYS: ClassVar[dict[str, str]] = {"status": "status"}
    status: str  # a RunStatus, as for SetStatus

    def apply(self, tracking_uri: str, mlflow: Any, spool: Spool, run_id: str | None) -> int:
        client.close_open_children(tracking_uri, run_id, self.status)
        return 0


KINDS: dict[str, type[Operation]] = {kind.KIND: kind for kind in
                                     (CreateRun, LogMetrics, SetTags, SetStatus, LogArtifacts, CloseChildren)}


@dataclass(frozen=True)
class Unreadable:
    """A line of ops.jsonl that holds no operation: a write a crash cut short, or a kind or layout this
    code does not know. The sender sets it aside in rejected.jsonl (``record``, ``reason``)."""

    record: dict[str, Any]
    reason: str


def from_json(line: dict[str, Any]) -> Operation:
    """The operation a spool line holds; ValueError for an unknown kind, KeyError for a missing key."""
    kind = KINDS.get(line.get("op"))
    if kind is None:
        raise ValueError(f"unknown spooled operation {line.get('op')!r}")
    return kind.parse(line)


def read_line(line: bytes, end: int) -> Operation | Unreadable:
    """The operation of one whole line of ops.jsonl, which ends at byte ``end``."""
    try:
        value = json.loads(line)
    except ValueError:
        return Unreadable({"ends_at_byte": end}, "a line that does not parse (a write cut short by a crash)")
    if not isinstance(value, dict):
        return Unreadable({"ends_at_byte": end}, f"a line that holds no operation: {value!r}"[:2000])
    try:
        return from_json(value)
    except (KeyError, TypeError, ValueError) as exc:
        return Unreadable(value, f"{type(exc).__name__}: {exc}"[:2000])


def batches(points: list[list], tags: dict[str, str]) -> list[Operation]:
    """Metric points ``[key, value, timestamp, step]`` and tags as operations, each within MLflow's
    per-request limits."""
    items = list(tags.items())
    return ([LogMetrics(points[i : i + METRICS_PER_CALL]) for i in range(0, len(points), METRICS_PER_CALL)]
            + [SetTags(dict(items[i : i + PARAMS_PER_CALL])) for i in range(0, len(items), PARAMS_PER_CALL)])
