"""Atomic file writes: a reader (another process, or the next run after a crash) sees the old file or the
new one, never a part of one.

The data goes to a temporary file beside the target, which ``os.replace`` then puts in its place
(atomic within one filesystem). The temporary name starts with a dot and ends in ``.tmp``, so globs for
the target's kind (``*.parquet``, ``summary.json``) never match it. Not durable across a power loss
(no fsync): the files guarded here are results a run can rewrite, not a database.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write instead of ``path``: on leaving the block it replaces ``path``; on an
    error it is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns the path."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with replacing(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


def write_parquet_atomic(table: Any, path: str | os.PathLike) -> Path:
    """Write the ``pyarrow.Table`` ``table`` as a Parquet file at ``path`` atomically; returns the path."""
    import pyarrow.parquet as pq  # here, not at import: the trial driver imports this module in every Ray worker

    with replacing(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_count(path: str | os.PathLike) -> int:
    """The counter in ``path`` (0 when there is none yet)."""
    path = Path(path)
    return int(path.read_text()) if path.is_file() else 0


def count_up(path: str | os.PathLike) -> int:
    """Add one to the counter in ``path`` (written atomically); returns the new count. One writer only."""
    count = read_count(path) + 1
    write_atomic(path, str(count))
    return count
