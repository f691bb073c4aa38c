"""A trial's folder: its files' names, its summary's one writer and the rule of which end replaces which."""

import json

import pytest

from autowu_bench.platform.records.outcome import TrialOutcome, TrialStatus
from autowu_bench.platform.records.trial_folder import EndedBy, TrialFolder


def _outcome(status: TrialStatus, ended_at: float = 20.0, **more) -> TrialOutcome:
    return TrialOutcome(trial_id="t", arm="baseline", kind="baseline", status=status, ended_at=ended_at, **more)


def test_the_folder_names_the_files_of_every_run_folder(tmp_path):
    folder = TrialFolder.of(tmp_path, "t")
    assert folder.path == tmp_path / "trials" / "t" and folder.trial_id == "t"
    names = [folder.summary_path, folder.attempts_path, folder.restarts_path, folder.recorded_step_path,
             folder.fragments, folder.spool_dir, folder.worker_path(1), folder.lr_trace_path(0)]
    assert [p.relative_to(folder.path).as_posix() for p in names] == [
        "summary.json", "attempts", "restarts", "recorded_step", "fragments", "mlflow-spool", "worker-rank1.json",
        "lr_rank0.parquet"]
    assert TrialFolder.all(tmp_path) == []
    TrialFolder.of(tmp_path, "b").create()
    folder.create()
    (tmp_path / "trials" / "not-a-folder").write_text("")
    assert [f.trial_id for f in TrialFolder.all(tmp_path)] == ["b", "t"]


def test_the_driver_note_adds_up_and_reads_empty_when_absent(tmp_path):
    folder = TrialFolder.of(tmp_path, "t").create()
    assert folder.driver_note().started is None
    folder.note_driver(started=10.0)
    folder.note_driver(fit_started=12.0)
    note = folder.driver_note()
    assert (note.started, note.fit_started) == (10.0, 12.0)
    assert json.loads((folder.path / "driver.json").read_text()) == {"started": 10.0, "fit_started": 12.0}


def test_the_summary_is_written_as_it_always_was(tmp_path):
    folder = TrialFolder.of(tmp_path, "t")
    assert folder.summary() is None
    outcome = _outcome(TrialStatus.FINISHED, test_acc=0.8)
    assert folder.end(outcome, EndedBy.DRIVER)  # creates the folder
    assert json.loads(folder.summary_path.read_text()) == outcome.to_dict()
    assert folder.summary() == outcome
    assert [p.name for p in folder.path.iterdir()] == ["summary.json"]  # no temporary file left


@pytest.mark.parametrize("by, written, replaced", [
    (EndedBy.DRIVER, TrialStatus.FINISHED, True),  # the driver saw the fit end: always
    (EndedBy.DRIVER, TrialStatus.FAILED, True),
    (EndedBy.TUNE_COMPLETED, TrialStatus.FAILED, True),  # Tune completed it: it did not fail (ASHA's teardown)
    (EndedBy.TUNE_COMPLETED, TrialStatus.FINISHED, False),  # the driver's result stands
    (EndedBy.TUNE_COMPLETED, TrialStatus.DIVERGED, False),
    (EndedBy.SUITE_END, TrialStatus.FAILED, False),  # the suite's end writes only where there is none
])
def test_a_written_summary_is_replaced_only_by_the_rule(tmp_path, by, written, replaced):
    folder = TrialFolder.of(tmp_path, "t")
    folder.end(_outcome(written, error="first"), EndedBy.DRIVER)
    later = _outcome(TrialStatus.STOPPED, error="second")
    assert folder.end(later, by) is replaced
    assert folder.summary().error == ("second" if replaced else "first")


def test_every_end_writes_where_there_is_no_summary(tmp_path):
    for by in EndedBy:
        folder = TrialFolder.of(tmp_path, str(by))
        assert folder.end(_outcome(TrialStatus.FAILED), by) and folder.summary() is not None


def test_a_dead_process_replaces_only_an_earlier_runs_summary(tmp_path):
    folder = TrialFolder.of(tmp_path, "t")
    folder.end(_outcome(TrialStatus.FAILED, ended_at=20.0, error="this run's driver"), EndedBy.DRIVER)
    folder.note_driver(started=10.0)  # this run's driver started before that summary: it wrote it
    assert not folder.end(_outcome(TrialStatus.FAILED, error="died"), EndedBy.PROCESS_DIED)
    folder.note_driver(started=30.0)  # the summary is an earlier run's
    assert folder.end(_outcome(TrialStatus.FAILED, ended_at=31.0, error="died"), EndedBy.PROCESS_DIED)
    assert folder.summary().error == "died"


def test_an_interrupted_trial_is_a_field_and_old_summaries_read_back_interrupted(tmp_path):
    folder = TrialFolder.of(tmp_path, "t")
    folder.end(_outcome(TrialStatus.FAILED, error="SIGTERM stopped the suite (...)", interrupted=True),
               EndedBy.DRIVER)
    read = folder.summary()
    assert read.interrupted and not read.failed_by_error
    # A summary written before the field: the error's prefix said it.
    old = {k: v for k, v in _outcome(TrialStatus.FAILED).to_dict().items() if k != "interrupted"}
    folder.summary_path.write_text(json.dumps({**old, "error": "interrupted: SIGINT stopped the suite (x)"}))
    assert folder.summary().interrupted and not folder.summary().failed_by_error
    folder.summary_path.write_text(json.dumps({**old, "error": "ValueError: bad"}))
    assert not folder.summary().interrupted and folder.summary().failed_by_error


def test_no_other_module_names_a_trial_folders_files():
    """The names of a trial folder's files are trial_folder.py's alone: no other module of
    the package spells one in its code (docstrings aside), so no other module writes the summary."""
    import ast
    from pathlib import Path

    import autowu_bench
    from autowu_bench.platform.records import trial_folder

    # (Those that are also column or table names, such as restarts and fragments, cannot be told apart here.)
    names = {"summary.json", "driver.json", "recorded_step", "mlflow-spool", "state.pt"}
    package = Path(autowu_bench.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        if path == Path(trial_folder.__file__):
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
        found += [f"{path.relative_to(package)}:{node.lineno} {node.value!r}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings]
    assert found == []
