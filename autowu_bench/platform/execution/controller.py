"""The per-trial AutoWU controller: the one place where a trial's warmup is decided.

:class:`AutoWUController` is a thin ``Schedule`` (``autowu_bench.schedulers.schedule``) around
:class:`~autowu_bench.schedulers.AutoWUCore`. The trial driver starts it as a Ray actor
(:func:`start_controller`) whose lifetime is the driver's, and hands its handle to the trial's
workers in their config; rank 0 wraps it in :class:`ControllerClient` and calls it only at sync
points, never per step. The same class also runs in-process (no Ray), with the same methods.

Which calls wait. Through the client, ``observe`` returns at once (the GP test runs in the actor while
the workers train on) and ``plan`` waits. The plan says up to which step it holds (``next_switch``,
computed by the core from its patience), so rank 0 waits only there or at a divergent loss. The
actor runs its calls in order, so the core still tests exactly the history it would have seen.
"""

from __future__ import annotations

from typing import Any, Sequence

from autowu_bench.schedulers.autowu import AutoWUCore, AutoWUOptions
from autowu_bench.schedulers.lr_plan import AutoWUPlan
from autowu_bench.schedulers.switch_tests import SwitchTest


class AutoWUController:
    """AutoWU's state for one trial: losses in, :class:`AutoWUPlan` out.

    Args:
        options: the trial's AutoWU options (those not set keep AutoWU's defaults).
        decay: the decay after the warmup (None: AutoWU's default).
        seed: the detector's seed (the trial's).
        steps_per_epoch / total_epochs: may be given later through :meth:`configure`, since the driver
            that starts the controller does not load the data.
    """

    def __init__(
        self, options: AutoWUOptions, *, decay: str | None = None, seed: int = 0,
        steps_per_epoch: int | None = None, total_epochs: int | None = None,
    ) -> None:
        self._kwargs = {**options.kwargs(), **({} if decay is None else {"decay": decay}), "seed": seed}
        self._sizes: tuple[int, int] | None = None
        self.core: AutoWUCore | None = None
        if steps_per_epoch is not None and total_epochs is not None:
            self.configure(steps_per_epoch, total_epochs)

    def configure(self, steps_per_epoch: int, total_epochs: int) -> AutoWUPlan:
        """A new core for the run, always: a worker group that starts the trial over (a restart before
        any checkpoint) must not inherit an earlier attempt's decisions; a resume loads the state after."""
        if self._sizes is not None and self._sizes != (steps_per_epoch, total_epochs):
            raise ValueError(
                f"controller was configured for (steps_per_epoch, total_epochs)={self._sizes}, "
                f"not {(steps_per_epoch, total_epochs)}; start a new controller for a different trial"
            )
        self._sizes = (steps_per_epoch, total_epochs)
        self.core = AutoWUCore(steps_per_epoch, total_epochs, **self._kwargs)
        return self.core.plan()

    def _configured(self) -> AutoWUCore:
        if self.core is None:
            raise RuntimeError("controller used before configure(steps_per_epoch, total_epochs)")
        return self.core

    def observe(self, losses: Sequence[float]) -> None:
        self._configured().observe(list(losses))

    def plan(self) -> AutoWUPlan:
        return self._configured().plan()

    def tests_since(self, index: int) -> list[SwitchTest]:
        return list(self._configured().tests[index:])

    def state_dict(self) -> dict[str, Any]:
        return {"sizes": self._sizes, "core": self._configured().state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.configure(*state["sizes"])
        self.core.load_state_dict(state["core"])


def start_controller(options: AutoWUOptions, *, decay: str | None = None, seed: int = 0, name: str | None = None,
                     max_restarts: int = 0):
    """Start a trial's controller (:class:`AutoWUController`'s arguments) as a Ray actor owned by the calling
    process (the trial driver).

    The actor holds no CPU, so it never competes with the trial's workers for resources; it dies with
    its owner, and :func:`stop_controller` ends it normally. ``name`` names the actor in the job's
    namespace (the trial driver uses ``controller_name(trial_id)``).

    A controller whose process dies is restarted up to ``max_restarts`` times, empty: the call that
    was in flight fails on rank 0, Ray Train restarts the worker group from the last checkpoint, and
    its rank 0 configures the restarted controller and loads the schedule state from that checkpoint,
    so the trial goes on as if nothing had happened (tests/test_restarts.py). A call to a restarted
    controller before ``configure`` raises, so no decision is ever taken on a lost history.
    """
    import ray

    actor_cls = ray.remote(num_cpus=0, max_restarts=max_restarts, max_task_retries=0)(AutoWUController)
    handle = actor_cls.options(name=name).remote(options, decay=decay, seed=seed)
    ray.get(handle.__ray_ready__.remote())
    return handle


def controller_name(trial_id: str) -> str:
    """The Ray actor name of a trial's controller (``ray.get_actor(controller_name(trial_id))``)."""
    return f"autowu-controller:{trial_id}"


def stop_controller(handle) -> None:
    import ray

    ray.kill(handle, no_restart=True)


class ControllerClient:
    """A controller actor behind the ``Schedule`` methods: :meth:`observe` returns at once, the others
    wait. A waiting call first collects the outcomes of the observes before it, so that an error in
    one is raised, not lost."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self._inflight: list[Any] = []

    def _wait(self, ref) -> Any:
        import ray

        inflight, self._inflight = self._inflight, []
        ray.get(inflight)
        return ray.get(ref)

    def configure(self, steps_per_epoch: int, total_epochs: int) -> AutoWUPlan:
        return self._wait(self.handle.configure.remote(steps_per_epoch, total_epochs))

    def observe(self, losses: Sequence[float]) -> None:
        self._inflight.append(self.handle.observe.remote(list(losses)))

    def plan(self) -> AutoWUPlan:
        return self._wait(self.handle.plan.remote())

    def tests_since(self, index: int) -> list[SwitchTest]:
        return self._wait(self.handle.tests_since.remote(index))

    def state_dict(self) -> dict[str, Any]:
        return self._wait(self.handle.state_dict.remote())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._wait(self.handle.load_state_dict.remote(state))
