"""No process of a local Ray instance outlives the suite."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from autowu_bench.platform.execution import processes

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals and a bash shell")


def test_descendants_follow_the_tree_and_survivors_are_killed():
    shell = subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 300 & wait"])
    try:
        deadline = time.monotonic() + 10
        while len(found := processes.descendants([shell.pid])) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {pid for pid, _ in found} >= {shell.pid} and len(found) == 2  # the shell and its sleep
        assert all(pid != os.getpid() for pid, _ in found)  # below the roots only
        killed = processes.kill_survivors(found, grace_s=0.3)
        assert killed == found
        shell.wait(timeout=5)
        assert processes.alive(found) == set()
    finally:
        shell.kill()


def test_a_reused_pid_is_not_the_same_process():
    me = next(p for p in processes.descendants([os.getpid()]) if p[0] == os.getpid())
    assert processes.alive({me}) == {me}
    assert processes.alive({(me[0], me[1] + 1)}) == set()  # same pid, another start time


def test_ray_session_ends_what_is_still_running_under_its_instance(monkeypatch):
    """Ray's own shutdown ends its workers and their children; once it did not (a Train controller was
    left, re-parented to init). A process noted under the instance that ignores SIGTERM stands in for it."""
    from autowu_bench.platform.execution import ray_cluster

    stray = subprocess.Popen(["bash", "-c", "trap '' TERM; exec sleep 300"])
    try:
        real = ray_cluster._local_ray_pids
        monkeypatch.setattr(ray_cluster, "_local_ray_pids", lambda: real() + [stray.pid])
        with ray_cluster.ray_session(None, num_cpus=1, object_store_memory=100 * 1024**2):
            assert len(real()) >= 2  # raylet and GCS at least: the private API still answers
        assert stray.wait(timeout=10) == -9  # SIGKILLed after the grace period
    finally:
        stray.kill()
