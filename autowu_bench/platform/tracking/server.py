"""A local ``mlflow server`` for a suite run, under a watchdog that restarts it and outlives no owner.

With no tracking URI given, ``run_suite.py`` runs :class:`LocalMlflowServer`: ``mlflow server`` on
127.0.0.1 over ``sqlite:///<working folder>/mlflow.db`` with artifacts in ``<working folder>/
mlflow-artifacts``, so every trial process talks HTTP to one writer and the sqlite file is never locked
by two processes; ``make ui`` shows the same file afterwards. Its watchdog (``tracking.watchdog``)
restarts a server that dies on the same port (at most ``max_restarts`` times, a line in the server's log
each time), so the URI stays valid; meanwhile the trials' tracking waits in their spools. Standard
library only at import.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from autowu_bench.platform.tracking.env import MLFLOW_ENV
from autowu_bench.platform.tracking.watchdog import MAX_RESTARTS

WATCHDOG_MODULE = "autowu_bench.platform.tracking.watchdog"
# The folder holding the autowu_bench package: the watchdog runs with the server's working folder as
# its cwd, so ``-m`` finds the package only through PYTHONPATH.
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[3])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def watchdog_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The watchdog's (and so the server's) environment: ``environ`` (default ``os.environ``) with
    ``MLFLOW_ENV`` as defaults, job execution off and the package's folder first on PYTHONPATH."""
    env = {**MLFLOW_ENV, **(os.environ if environ is None else environ)}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if _PACKAGE_PARENT not in paths:
        env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_PARENT, *paths])
    return env


# What `make ui` serves afterwards over the same mlflow.db (the Makefile's `ui` target).
MAKE_UI_URL = "http://127.0.0.1:5000"
# A local store's layout in its folder: the suite's own server writes it, `--ui` opens it.
DB_FILE, ARTIFACTS_DIR = "mlflow.db", "mlflow-artifacts"


def mlflow_cli() -> list[str]:
    """MLflow's command line: the script beside this Python (a venv's), else ``python -m mlflow``."""
    script = Path(sys.executable).with_name("mlflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlflow"]


def store_options(folder: Path) -> list[str]:
    """``mlflow server`` / ``mlflow ui`` options over the local store in ``folder``."""
    return ["--backend-store-uri", f"sqlite:///{folder / DB_FILE}",
            "--artifacts-destination", str(folder / ARTIFACTS_DIR)]


class LocalMlflowServer:
    """``mlflow server`` on 127.0.0.1 over a sqlite file, for the duration of a ``with`` block.

    Args:
        workdir: the folder holding ``mlflow.db`` and ``mlflow-artifacts/`` (the working folder).
        log_path: where the server's output goes (default ``workdir/mlflow-server.log``).
        port: None picks a free port.
        startup_timeout: seconds to wait for the server to answer ``/health``.
        max_restarts: how many times the watchdog restarts a server that died (0: never).
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        log_path: str | os.PathLike | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 180.0,
        max_restarts: int = MAX_RESTARTS,
    ) -> None:
        self.workdir = Path(workdir).absolute()
        self.db_path = self.workdir / DB_FILE
        self.log_path = Path(log_path) if log_path else self.workdir / "mlflow-server.log"
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self.max_restarts = max_restarts
        self._process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The watchdog's pid, which is also the server's process group; None when not running."""
        return None if self._process is None else self._process.pid

    def command(self) -> list[str]:
        return mlflow_cli() + [
            "server", "--host", self.host, "--port", str(self.port), "--workers", "1", *store_options(self.workdir),
        ] + ([] if self.host == "127.0.0.1" else [
            # MLflow answers only Host headers of loopback and private addresses by default (DNS
            # rebinding): the address it listens on is the one the nodes use, whatever its range.
            "--allowed-hosts", f"{self.host}:{self.port},{self.host},localhost:*,127.0.0.1:*",
        ])

    def start(self) -> LocalMlflowServer:
        """Launch the server and wait until it answers."""
        return self.launch().wait_ready()

    def launch(self) -> LocalMlflowServer:
        """Launch the server without waiting (``wait_ready`` waits), so other start-up can overlap."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", WATCHDOG_MODULE, "--restarts", str(self.max_restarts), str(os.getpid()),
                 *self.command()],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=watchdog_env(),
                cwd=self.workdir, start_new_session=True,
            )
        return self

    def wait_ready(self) -> LocalMlflowServer:
        if self._process is None:
            raise RuntimeError("the MLflow server was not launched; call launch() or start() first")
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                self._process = None
                raise RuntimeError(f"the MLflow server exited at start (log {self.log_path}):\n{tail}")
            if self.answers():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"the MLflow server at {self.uri} did not answer within {self.startup_timeout:.0f} s; "
            f"see {self.log_path}, or pass --tracking-uri to use a running one"
        )

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server and everything it started (its process group); idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> LocalMlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
