"""Ray's output during a suite goes to the run folder's logs/ray.log, not between the progress lines
(``platform/execution/ray_logs.py``); ``--verbose`` leaves it on the console."""

from __future__ import annotations

import logging
import time

import ray
from ray._private import worker as ray_worker

from autowu_bench.platform.execution import ray_cluster
from autowu_bench.platform.execution.ray_logs import format_ray_lines, ray_log_path, route_ray_output


def test_rays_lines_keep_the_process_that_printed_them():
    assert format_ray_lines({"lines": ["a", "b"], "pid": 12, "ip": "10.0.0.5", "actor_name": "RayTrainWorker",
                             "is_err": True}) == ["(RayTrainWorker pid=12, ip=10.0.0.5) stderr: a",
                                                  "(RayTrainWorker pid=12, ip=10.0.0.5) stderr: b"]
    assert format_ray_lines({"lines": ["x"], "pid": 7, "task_name": "f", "is_err": False}) == ["(f pid=7) x"]
    assert format_ray_lines({"lines": ["Warning: 12 PYTHON worker processes have been started"], "pid": "raylet",
                             "is_err": False}) == ["(raylet) Warning: 12 PYTHON worker processes have been started"]


def test_route_sends_the_processes_the_raylets_and_the_ray_loggers_lines_to_the_file(tmp_path, capsys):
    """Without starting Ray: what ray.init's handlers and the driver's error listener call."""
    path = ray_log_path(tmp_path)
    original = ray_worker.print_to_stdstream
    restore = route_ray_output(path)
    try:
        ray_worker.print_to_stdstream({"lines": ["Traceback (most recent call last):", "GetTimeoutError: x"],
                                       "pid": 3, "actor_name": "TrainController", "is_err": True}, ignore_prefix=False)
        ray_worker.print_to_stdstream({"lines": ["worker processes have been started"], "pid": "raylet",
                                       "is_err": False}, ignore_prefix=False)
        logging.getLogger("ray.tune").warning("Tune's warning")
    finally:
        restore()
    assert path == tmp_path / "logs" / "ray.log"
    text = path.read_text()
    assert "(TrainController pid=3) stderr: GetTimeoutError: x" in text
    assert "(raylet) worker processes have been started" in text and "Tune's warning" in text
    console = capsys.readouterr()
    assert console.out == "" and console.err == ""
    assert ray_worker.print_to_stdstream is original  # the console is Ray's again
    assert not any(getattr(h, "baseFilename", None) == str(path) for h in logging.getLogger("ray").handlers)


def test_a_ray_session_keeps_its_workers_output_off_the_console(tmp_path, capfd):
    def _shout() -> None:  # defined here: a Ray worker cannot import this test module, only unpickle this
        print("stdout of a Ray worker")
        try:
            raise SystemExit("worker traceback")
        except SystemExit:
            import traceback

            traceback.print_exc()

    path = ray_log_path(tmp_path)
    with ray_cluster.ray_session(None, num_cpus=1, object_store_memory=80 * 1024**2, log_path=path):
        ray.get(ray.remote(_shout).remote())
        deadline = time.time() + 30  # the workers' output reaches the driver within a second or so
        while "worker traceback" not in (path.read_text() if path.exists() else "") and time.time() < deadline:
            time.sleep(0.2)
    text = path.read_text()
    assert "stdout of a Ray worker" in text and "SystemExit: worker traceback" in text
    console = capfd.readouterr()
    assert "stdout of a Ray worker" not in console.out + console.err
    assert "Traceback" not in console.out + console.err

