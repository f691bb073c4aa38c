"""Atomic writes: the target holds the old content or the new, never part of either; no temp left."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autowu_bench.platform.records.files import replacing, write_atomic, write_parquet_atomic


def test_write_atomic_replaces_text_and_bytes_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "summary.json"
    assert write_atomic(path, '{"status": "running"}') == path
    assert path.read_text() == '{"status": "running"}'
    write_atomic(path, b"\x00\xffdone")
    assert path.read_bytes() == b"\x00\xffdone"
    write_atomic(path, "é")
    assert path.read_bytes() == "é".encode("utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_the_target_keeps_its_old_content_until_the_new_one_is_whole(tmp_path):
    path = tmp_path / "table.parquet"
    path.write_text("old")
    with replacing(path) as tmp:
        tmp.write_text("half of the n")
        assert path.read_text() == "old"  # a reader now still sees the old file
        assert tmp.parent == path.parent and tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        tmp.write_text("new")
    assert path.read_text() == "new" and not tmp.exists()


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "curves-000001.parquet"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with replacing(path) as tmp:
            tmp.write_text("par")
            raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["curves-000001.parquet"]


def test_write_parquet_atomic_round_trips(tmp_path):
    table = pa.table({"step": [1, 2], "lr": [0.1, 0.2]})
    path = write_parquet_atomic(table, tmp_path / "lr_rank0.parquet")
    assert pq.read_table(path).equals(table)
    assert [p.name for p in tmp_path.iterdir()] == ["lr_rank0.parquet"]
