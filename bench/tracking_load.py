"""The tracking load of a large suite, replayed through the platform's tracking path (no training).

Each simulated trial is what a real one does to MLflow: the trial driver's ``open_trial`` (its child run
under a parent run), rank 0's ``TrialLogger`` logging ``lr`` and ``train_loss`` for every step and a few
epoch metrics, a ``flush`` every epoch (the spool; the logger's sender thread sends it), ``close`` and
the driver's ``close_trial``. ``--concurrent`` processes replay trials at once, as fast as they can, so
the rate printed is what the server sustains, not what a suite's training would ask of it. At the end
MLflow's store is counted: every step of every trial must be there exactly once. It prints its figures
and asserts nothing.

    .venv/bin/python bench/tracking_load.py                             # 20 trials x 5,000 steps (~a few min)
    .venv/bin/python bench/tracking_load.py --trials 200 --steps 20000  # a large suite: 8 M points
    .venv/bin/python bench/tracking_load.py --tracking-uri http://mlflow:5000   # a real server

Without ``--tracking-uri`` it starts a ``LocalMlflowServer`` (the one ``run_suite.py`` starts) over a
temporary folder (``--store`` to choose it), and counts the points in its sqlite file directly; with one,
it counts through MLflow's API.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

KEYS = ("lr", "train_loss")
SUITE = "tracking-load"


def _spec(trial_id: str, epochs: int):
    from autowu_bench.platform.records.spec import TrialSpec

    return TrialSpec(trial_id=trial_id, suite=SUITE, arm="baseline", kind="baseline", workload="fmnist-mlp",
                     batch_size=64, epochs=epochs, seed=0, optimizer="sgd", weight_decay=0.0, peak_lr=0.1,
                     warmup_epochs=1.0)


def replay_trials(job: tuple) -> dict:
    """One process: replay the trials ``trial_ids`` one after the other; returns its timings."""
    tracking_uri, parent, run_dir, trial_ids, steps, steps_per_epoch = job
    from autowu_bench.platform.tracking.env import apply_process_env

    apply_process_env()
    from autowu_bench.platform.tracking.client import RunStatus
    from autowu_bench.platform.tracking.lifecycle import close_trial, open_trial
    from autowu_bench.platform.tracking.trial_logger import TrialLogger

    epochs = max(1, -(-steps // steps_per_epoch))
    flushes, unsent = [], 0
    began = time.time()  # after the imports: the window measured is the logging itself
    for trial_id in trial_ids:
        folder = Path(run_dir) / "trials" / trial_id
        run_id = open_trial(tracking_uri, parent, _spec(trial_id, epochs), folder, wait=120)
        logger = TrialLogger(tracking_uri, run_id, folder)
        for epoch in range(1, epochs + 1):
            first, last = (epoch - 1) * steps_per_epoch + 1, min(epoch * steps_per_epoch, steps)
            chunk = list(range(first, last + 1))
            logger.log_steps(chunk, [1e-3 * min(1.0, s / steps) for s in chunk], [2.0 / (1 + s) for s in chunk])
            logger.log_epoch(epoch, last, {"val_loss": 1.0 / epoch, "val_acc": epoch / epochs,
                                             "epoch_seconds": 1.0, "images_per_second": 1000.0})
            started = time.perf_counter()
            logger.flush()  # what a training epoch waits for
            flushes.append(time.perf_counter() - started)
        # Wait for the sender (the bench measures what the server takes), then end the trial as the driver does.
        logger.wait(None)
        logger.close()
        if not close_trial(tracking_uri, folder, RunStatus.FINISHED, {"test_acc": 0.5}, wait=120):
            unsent += 1
    return {"flushes": flushes, "unsent": unsent, "began": began, "ended": time.time()}


def count_local(db_path: Path, parent: str) -> dict[str, list[tuple[int, int]]]:
    """Per key, (rows, distinct steps) of every child run of ``parent``, read from the sqlite store."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=60) as db:
        runs = [r for (r,) in db.execute(
            "SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = ?", (parent,))]
        counts = {key: [] for key in KEYS}
        for run in runs:
            for key in KEYS:
                counts[key].append(db.execute(
                    "SELECT COUNT(*), COUNT(DISTINCT step) FROM metrics WHERE run_uuid = ? AND key = ?",
                    (run, key)).fetchone())
    return counts


def count_remote(tracking_uri: str, parent: str) -> dict[str, list[tuple[int, int]]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_run(parent).info.experiment_id
    counts = {key: [] for key in KEYS}
    token = None
    while True:
        page = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'", max_results=1000,
                                  page_token=token)
        for run in page:
            for key in KEYS:
                history = client.get_metric_history(run.info.run_id, key)
                counts[key].append((len(history), len({m.step for m in history})))
        token = page.token
        if not token:
            return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20, help="trials to replay (default 20; a large suite: 200)")
    p.add_argument("--steps", type=int, default=5000, help="steps per trial (default 5000; a large suite: 20000)")
    p.add_argument("--steps-per-epoch", type=int, default=500, help="steps between flushes (default 500)")
    p.add_argument("--concurrent", type=int, default=2, help="trials replayed at once, one process each (default 2)")
    p.add_argument("--tracking-uri", default=None, help="a running MLflow server (default: a local one, as run_suite.py)")
    p.add_argument("--store", default=None, help="the local server's folder (default: a temporary one, removed)")
    args = p.parse_args(argv)

    from autowu_bench.platform.tracking.env import apply_process_env

    apply_process_env()
    from mlflow.tracking import MlflowClient

    from autowu_bench.platform.tracking.client import experiment_id
    from autowu_bench.platform.tracking.server import LocalMlflowServer
    from autowu_bench.platform.tracking.delivery import send_spools

    work = Path(tempfile.mkdtemp(prefix="tracking-load-"))
    store = Path(args.store) if args.store else work / "store"
    server = None
    try:
        if args.tracking_uri is None:
            server = LocalMlflowServer(store, log_path=work / "mlflow-server.log").start()
        uri = args.tracking_uri or server.uri
        client = MlflowClient(uri)
        parent = client.create_run(experiment_id(uri, SUITE), run_name=f"load {time.strftime('%H%M%S')}",
                                   tags={"role": "suite"}).info.run_id
        ids = [f"load{i:04d}" for i in range(args.trials)]
        jobs = [(uri, parent, str(work / "run"), ids[i :: args.concurrent], args.steps, args.steps_per_epoch)
                for i in range(min(args.concurrent, args.trials))]
        where = f"{uri} ({'local server, sqlite' if server else 'given'})"
        print(f"tracking load: {args.trials} trials x {args.steps} steps ({' and '.join(KEYS)}, flushed every "
              f"{args.steps_per_epoch} steps), {len(jobs)} at a time, into {where}", flush=True)
        with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
            done = pool.map(replay_trials, jobs)
        seconds = max(d["ended"] for d in done) - min(d["began"] for d in done)
        left = send_spools(work / "run", uri)  # anything a trial's end left (none when all went well)
        counts = count_local(store / "mlflow.db", parent) if server else count_remote(uri, parent)

        expected = args.trials * args.steps * len(KEYS)
        rows = sum(n for key in KEYS for n, _ in counts[key])
        distinct = sum(d for key in KEYS for _, d in counts[key])
        runs = len(counts[KEYS[0]])
        flushes = sorted(f for d in done for f in d["flushes"])
        print(f"  sent       {expected} step points in {seconds:.1f} s: {expected / seconds:,.0f} points/s sustained "
              f"({expected / seconds / len(jobs):,.0f} per concurrent trial), run creation and trial ends included")
        print(f"  flush      median {flushes[len(flushes) // 2] * 1e3:.1f} ms, max {flushes[-1] * 1e3:.1f} ms "
              f"(what an epoch end waits: the spool and the Parquet fragments, never the network)")
        print(f"  MLflow     {runs} of {args.trials} runs; {distinct} of {expected} step points, {rows - distinct} "
              f"duplicated, {expected - distinct} lost; spools left {left.left}, trial ends unsent "
              f"{sum(d['unsent'] for d in done)}")
        if server:
            size = sum(f.stat().st_size for f in store.glob("mlflow.db*"))
            print(f"  store      {size / 1e6:.0f} MB of sqlite ({size / max(rows, 1):.0f} bytes a point)")
        print("  nothing lost" if distinct == expected and rows == distinct and left.complete else "  INCOMPLETE")
        return 0
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
