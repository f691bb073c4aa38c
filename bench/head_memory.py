"""The memory a joined cluster's head node holds per running trial.

On a cluster every trial's driver (Tune's function trainable), its Ray Train controller and, for an
AutoWU trial, its AutoWU controller run on the head node (``execution.tuner_builder.RESOURCES``), beside Ray's
own head processes, the suite's driver and the MLflow server. cluster.yaml's head is an m6i.2xlarge
(32 GiB); this bench gives the figures to size it, or a smaller one, for N trials at once.

It builds a several-node Ray cluster on this machine (``autowu_bench.local_cluster.LocalCluster``: a head with 0
CPUs and one worker node of 1 CPU per concurrent trial), measures the head node's processes idle, then
runs ``run_suite.py --address`` on it (AutoWU and baseline trials on Fashion-MNIST, ``--concurrent`` at
once, with its own local MLflow server) and samples every second the proportional set size (PSS: a
shared page counted in parts among the processes that map it, so the sums are true) of every process of
the head node and of the suite's driver. Processes are told apart by the title Ray gives them
(``ray::ImplicitFunc``, ``ray::TrainController``, ...). A run of 1 trial at a time comes first, on a
cluster of its own: the per-trial figure of ``--concurrent`` trials at once is compared with it (1.00:
the head grows linearly with the trials running, so the figure extrapolates). It prints the figures and
asserts nothing.

    .venv/bin/python bench/head_memory.py                   # 1, then 2 trials at once (~4 min on 2 cores)
    .venv/bin/python bench/head_memory.py --concurrent 4    # 4 worker nodes: needs 4+ cores
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autowu_bench.platform.execution import processes  # noqa: E402
from autowu_bench.local_cluster import LocalCluster, Suite, wait_for_dashboard  # noqa: E402

MIB = 1024**2
HEAD_MIB = 32 * 1024  # cluster.yaml's head node, an m6i.2xlarge
SUITE = """
name: head-memory
workloads: [fmnist-mlp]
batch_sizes: [200]
epochs: {epochs}
seeds: {seeds}
arms:
  - {{name: autowu, kind: autowu, decay: cosine, optimizer: sgd, autowu: {{test_interval: 5, lr_max: 0.2}}}}
  - {{name: baseline, kind: baseline, optimizer: sgd, peak_lrs: [0.1], warmup_epochs: [1], include_default: false}}
resources: {{workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: {concurrent}, use_gpu: false}}
data: {{root: {root}, train_subset: 6000, val_size: 1000}}
"""


def label(proc: psutil.Process) -> str:
    """``ray::TrainController.run`` -> ``TrainController``; a process that is not a Ray worker: its name."""
    title = (proc.cmdline() or [""])[0]
    return title[5:].split(".", 1)[0].split(" ", 1)[0] if title.startswith("ray::") else proc.name()


def sample(roots: list[int]) -> dict[str, list[int]]:
    """The PSS in bytes of each process at or below ``roots``, by label."""
    found: dict[str, list[int]] = collections.defaultdict(list)
    for pid, start in processes.descendants(roots):
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == start:
                found[label(proc)].append(proc.memory_full_info().pss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass  # gone between the listing and the read
    return found


def total(found: dict[str, list[int]]) -> int:
    return sum(sum(v) for v in found.values())


class Sampler(threading.Thread):
    """Samples the head's and the suite driver's processes every second; keeps each one's peak sample."""

    def __init__(self, head_roots: list[int], driver_pid: int) -> None:
        super().__init__(daemon=True)
        self.head_roots, self.driver_pid = head_roots, driver_pid
        self.head_peak: dict[str, list[int]] = {}
        self.driver_peak = 0
        self.samples = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            head = sample(self.head_roots)
            # The peak that counts is the one with the most trials running, then the most memory.
            key = (len(head.get("ImplicitFunc", [])), total(head))
            if key > (len(self.head_peak.get("ImplicitFunc", [])), total(self.head_peak)):
                self.head_peak = head
            self.driver_peak = max(self.driver_peak, total(sample([self.driver_pid])))
            self.samples += 1


def head_processes(cluster: LocalCluster) -> list[int]:
    """The PIDs of the head node's own processes (GCS, raylet, dashboard, ...); its workers are below the raylet."""
    return [info.process.pid for infos in cluster.cluster.head_node.all_processes.values() for info in infos
            if info.process is not None]


def idle_head(roots: list[int], seconds: int = 10) -> dict[str, list[int]]:
    """The head's processes after it has settled: the sample of least memory in ``seconds``."""
    samples = []
    for _ in range(seconds):
        samples.append(sample(roots))
        time.sleep(1)
    return min(samples, key=total)


def mib(value: float) -> str:
    return f"{value / MIB:.0f} MiB"


def per_trial(idle: dict[str, list[int]], peak: dict[str, list[int]]) -> tuple[int, float]:
    """(trials running at the peak, the head's growth over idle per running trial, in bytes)."""
    running = len(peak.get("ImplicitFunc", []))
    if not running:
        sys.exit("no trial was seen running: the run was too short for the sampler (give more --epochs)")
    return running, (total(peak) - total(idle)) / running


def report(idle: dict[str, list[int]], peak: dict[str, list[int]], driver: int) -> None:
    running, each = per_trial(idle, peak)
    print(f"head node idle (Ray's head processes): {mib(total(idle))}; at its peak, {running} trials running: "
          f"{mib(total(peak))}; the suite's driver (run_suite.py and its MLflow server): {mib(driver)}")
    print(f"  per running trial: {mib(each)}; what grew, by process (PSS):")
    for name in sorted(peak, key=lambda n: -(sum(peak[n]) - sum(idle.get(n, [])))):
        now, before = peak[name], idle.get(name, [])
        if len(now) > len(before):
            print(f"    {name:>28}: {len(now) - len(before):2d} more, {mib(sum(now) - sum(before)):>9} "
                  f"({mib((sum(now) - sum(before)) / (len(now) - len(before)))} each)")
    grown = sum(sum(peak[n]) - sum(idle.get(n, [])) for n in peak if len(peak[n]) <= len(idle.get(n, [])))
    print(f"    {'the others (same count)':>28}: {mib(grown):>12}")


def measure(concurrent: int, epochs: int, data: str | None) -> tuple[dict, dict, int]:
    """One suite of ``concurrent`` trials at once on a fresh cluster: (idle head, peak head, driver peak)."""
    work = Path(tempfile.mkdtemp(prefix="autowu-head-memory-"))
    pairs = -(-concurrent // 2)  # an AutoWU and a baseline trial per seed
    suite_yaml = SUITE.format(epochs=epochs, seeds=list(range(pairs)), concurrent=concurrent,
                              root=data or "null")
    print(f"\n{concurrent} at once: a 0-CPU head and {concurrent} worker nodes of 1 CPU, {2 * pairs} trials "
          f"(work folder {work})", flush=True)
    cluster = LocalCluster(workers=concurrent)
    try:
        wait_for_dashboard(cluster.address)
        roots = head_processes(cluster)
        idle = idle_head(roots)
        suite = Suite(work, suite_yaml, cluster.address)
        sampler = Sampler(roots, suite.proc.pid)
        sampler.start()
        code, out, err = suite.wait(timeout=3600)
        sampler.done.set()
        sampler.join()
    finally:
        cluster.shutdown()
    if code != 0:
        sys.exit(f"run_suite.py exited {code}:\n{out[-3000:]}\n{err[-3000:]}")
    report(idle, sampler.head_peak, sampler.driver_peak)
    return idle, sampler.head_peak, sampler.driver_peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrent", type=int, default=2,
                        help="trials at once (one 1-CPU worker node each), after a baseline run of 1")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--data", default=None, help="Fashion-MNIST's folder (default: Debian's)")
    args = parser.parse_args()
    if args.concurrent < 2:
        sys.exit(f"--concurrent {args.concurrent}: give 2 or more (it is compared with a run of 1 at once)")

    idle1, peak1, _ = measure(1, args.epochs, args.data)
    idle, peak, driver = measure(args.concurrent, args.epochs, args.data)
    (_, each1), (running, each) = per_trial(idle1, peak1), per_trial(idle, peak)
    print(f"\nthe head's growth, {running} trials running / 1 running: "
          f"{(total(peak) - total(idle)) / (total(peak1) - total(idle1)):.2f} "
          f"(per trial {mib(each)} / {mib(each1)} = {each / each1:.2f}: 1.00 is linear)")
    for n in sorted({running, 8, 32}):
        need = total(idle) + driver + n * each
        print(f"  {n:3d} trials at once need about {need / MIB / 1024:5.1f} GiB on the head "
              f"({100 * need / MIB / HEAD_MIB:.0f}% of cluster.yaml's 32 GiB m6i.2xlarge)")


if __name__ == "__main__":
    main()
