"""Ray's output during a suite, in a file of the run folder instead of between the progress lines.

A driver of Ray prints what its cluster says: every Ray process's stdout and stderr (the trials' drivers,
Train controllers and workers: tracebacks of a controller's retries, ``SystemExit`` of a trial stopped at
shutdown), the raylet's warnings (``N worker processes have been started``) and the driver's own ``ray``
logger (Tune's warnings and errors). :func:`route_ray_output` sends all of it to ``<run_dir>/logs/ray.log``;
the console keeps the suite's own lines, where a failed trial is one line naming this file
(``progress.end_line``). ``--verbose`` leaves Ray's output on the console, as Ray prints it.

Ray 2.58 prints both the processes' output and the raylet's messages through
``ray._private.worker.print_to_stdstream`` (the processes' through a handler that ``ray.init`` binds to it,
the raylet's by name at each message): replaced before ``ray.init``, it is the one place to catch them.
It is Ray's private API: where it is missing, Ray's output stays on the console (said once).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable

LOG_DIR = "logs"
RAY_LOG = "ray.log"


def ray_log_path(run_dir: str | Path) -> Path:
    """Where :func:`route_ray_output` writes a run's Ray output."""
    return Path(run_dir) / LOG_DIR / RAY_LOG


def format_ray_lines(data: dict[str, Any]) -> list[str]:
    """One of Ray's output batches (``lines`` of one process: ``pid``, ``ip``, ``actor_name`` or
    ``task_name``, ``is_err``) as log lines prefixed like Ray's console: ``(RayTrainWorker pid=12, ip=...)``;
    the raylet's and the autoscaler's messages as ``(raylet) ...``."""
    pid = data.get("pid")
    if pid in ("raylet", "autoscaler"):
        prefix = f"({pid})"
    else:
        name = data.get("actor_name") or data.get("task_name") or ""
        ip = f", ip={data['ip']}" if data.get("ip") else ""
        prefix = f"({name + ' ' if name else ''}pid={pid}{ip})"
    stream = " stderr:" if data.get("is_err") else ""
    return [f"{prefix}{stream} {line}" for line in data.get("lines", [])]


def route_ray_output(path: Path) -> Callable[[], None]:
    """Send Ray's output in this driver to the file ``path`` (created with its folder; appended to, so a
    resumed run adds to it) from now until the returned function is called, which restores the console.
    Call it before ``ray.init``."""
    from ray._private import worker as ray_worker

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ray_logger = logging.getLogger("ray")
    console_handlers = list(ray_logger.handlers)
    for console in console_handlers:
        ray_logger.removeHandler(console)
    ray_logger.addHandler(handler)

    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None:
        print("warning: this Ray has no ray._private.worker.print_to_stdstream; its processes' output stays on "
              "the console", file=sys.stderr, flush=True)
    else:
        def to_file(data: dict[str, Any], ignore_prefix: bool = False) -> None:
            handler.acquire()  # the ray logger's records share the file
            try:
                if handler.stream is not None:  # None once restored (Ray's threads end before that)
                    handler.stream.write("".join(f"{line}\n" for line in format_ray_lines(data)))
                    handler.stream.flush()
            finally:
                handler.release()

        ray_worker.print_to_stdstream = to_file

    def restore() -> None:
        if original is not None:
            ray_worker.print_to_stdstream = original
        ray_logger.removeHandler(handler)
        for console in console_handlers:
            ray_logger.addHandler(console)
        handler.close()

    return restore
