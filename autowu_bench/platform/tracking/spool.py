"""The tracking spool: an append-only log of MLflow operations in a folder, sent in order by whoever
can reach the server, so that tracking never waits on the network and nothing is dropped while it is
away.

A spool folder (``<trial>/mlflow-spool/`` for a trial's child run, ``<run>/mlflow-spool/`` for the
suite's parent run) holds:

    ops.jsonl      the operations, one JSON object a line, appended whole (``{"op": "metrics", ...}``)
    sent           the byte offset in ops.jsonl up to which the operations were acknowledged by MLflow
    run_id         the MLflow run the operations belong to, once known
    rejected.jsonl operations MLflow refused outright (a 4xx answer), kept rather than retried forever

Writers append operations (``append``, the typed operations of ``operations``) under a short lock; a
sender (``sending``) holds another lock, reads the operations after ``sent`` (``pending``, typed again)
and acknowledges each once MLflow took it (``ack``). A crash
between the two makes the next sender send that operation again, so every operation must be
idempotent: metrics carry their own timestamp and MLflow's SQL store ignores a metric row it already
holds, tags and statuses overwrite, a run is looked up before one is created. Once everything is
acknowledged the sender empties the file (``compact``). No MLflow here: the operations call it when sent.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autowu_bench.platform.records.files import write_atomic
from autowu_bench.platform.records.trial_folder import SPOOL_DIR
from autowu_bench.platform.tracking.operations import Operation, Unreadable, read_line
OPS_FILE = "ops.jsonl"
SENT_FILE = "sent"
RUN_ID_FILE = "run_id"
REJECTED_FILE = "rejected.jsonl"


class Spool:
    """The spool in ``folder`` (created on the first write).

    Safe across threads and processes: appends are whole lines under an exclusive lock; only one
    sender at a time (``sending``)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.ops_path = self.folder / OPS_FILE
        self.sent_path = self.folder / SENT_FILE

    @classmethod
    def of(cls, owner_dir: str | os.PathLike) -> Spool:
        """The spool of a trial folder or a run folder."""
        return cls(Path(owner_dir) / SPOOL_DIR)

    def __repr__(self) -> str:
        return f"Spool({str(self.folder)!r})"

    # -- state --------------------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether anything was ever written here (operations or the run id)."""
        return self.ops_path.exists() or (self.folder / RUN_ID_FILE).exists()

    @property
    def run_id(self) -> str | None:
        try:
            return (self.folder / RUN_ID_FILE).read_text().strip() or None
        except FileNotFoundError:
            return None

    def set_run_id(self, run_id: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.run_id != run_id:
            write_atomic(self.folder / RUN_ID_FILE, run_id)

    def offset(self) -> int:
        try:
            return int(self.sent_path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def size(self) -> int:
        try:
            return self.ops_path.stat().st_size
        except FileNotFoundError:
            return 0

    def empty(self) -> bool:
        """Nothing left to send."""
        return self.size() <= self.offset() or next(self.pending(), None) is None

    def left(self) -> int:
        """How many operations are left to send."""
        return sum(1 for _ in self.pending())

    # -- writing ------------------------------------------------------------------------------------

    def append(self, ops: Sequence[Operation]) -> None:
        """Append ``ops``, in order, each as one whole line (``Operation.to_json``; NaN and infinities
        allowed)."""
        if not ops:
            return
        data = "".join(json.dumps(op.to_json(), separators=(",", ":")) + "\n" for op in ops).encode()
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock("append"):
            fd = os.open(self.ops_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                end = os.fstat(fd).st_size
                if end and os.pread(fd, 1, end - 1) != b"\n":
                    data = b"\n" + data  # end the line a crash cut short, so it cannot swallow these
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)

    # -- sending ------------------------------------------------------------------------------------

    @contextmanager
    def sending(self) -> Iterator[bool]:
        """Hold the sender's lock for the block; yields False (and holds nothing) when another sender,
        in this process or another, has it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "send.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def pending(self) -> Iterator[tuple[int, Operation | Unreadable]]:
        """``(end offset, operation)`` for each whole line after ``sent``, in order; a line that holds no
        operation (a write a crash cut short, an unknown kind) comes as ``Unreadable``, to be set aside
        and acknowledged like any other."""
        start = self.offset()
        if not self.ops_path.exists():
            return
        with open(self.ops_path, "rb") as handle:
            handle.seek(start)
            position = start
            for line in handle:
                if not line.endswith(b"\n"):
                    return  # being written now: the next pass reads it
                position += len(line)
                yield position, read_line(line, position)

    def ack(self, offset: int) -> None:
        """Everything up to byte ``offset`` of ops.jsonl is in MLflow (only the lock holder calls this)."""
        write_atomic(self.sent_path, str(offset))

    def reject(self, op: Operation | Unreadable, reason: str) -> None:
        """Keep ``op``, which MLflow refused or which holds no operation, in rejected.jsonl."""
        record = op.record if isinstance(op, Unreadable) else op.to_json()
        with open(self.folder / REJECTED_FILE, "a") as f:
            f.write(json.dumps({"reason": reason, "op": record}) + "\n")

    def compact(self) -> None:
        """Empty ops.jsonl once everything in it is acknowledged (only the lock holder calls this). ``sent``
        goes to 0 before the file is cut, so a crash in between only resends operations."""
        with self._lock("append"):
            size = self.size()
            if size == 0 or size != self.offset():
                return
            self.ack(0)
            os.truncate(self.ops_path, 0)

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        # A file opened per use: flock then also excludes the other threads of this process.
        with open(self.folder / f"{name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
