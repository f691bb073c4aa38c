"""The per-trial AutoWU controller: the one place where a trial's warmup is decided.

:class:`AutoWUController` is a thin wrapper around :class:`~autowu_bench.schedulers.AutoWUCore`. The trial
driver starts it as a named Ray actor (:func:`start_controller`), so its lifetime is the driver's;
rank 0 of the trial's workers looks it up by name (:func:`connect`) and calls it only at test points,
never per step. The same class also runs in-process (no Ray), with the same methods.

Which calls must wait. A test can only switch the schedule when the tests before it leave the run of
positive tests one short of the patience; so with ``positives`` positive tests so far, the next
``patience - positives - 1`` tests cannot change any LR, and neither can anything before the longest
warmup W. :meth:`AutoWUController.status` gives that horizon as ``decide_at``: rank 0 hands the losses
of earlier test points over with :meth:`feed`, which does not wait (the GP test runs in the actor
while the workers train on), and waits for the plan only at ``decide_at``. The core still runs every
test on exactly the history it would have seen, in order, so the LR trace is unchanged.
"""

from __future__ import annotations

from typing import Any

from autowu_bench.platform.spec import TrialSpec

NAMESPACE = "autowu-bench"


def actor_name(trial_id: str) -> str:
    return f"autowu-controller-{trial_id}"


class AutoWUController:
    """AutoWU's state for one trial: losses in, :class:`SchedulePlan` out.

    Args:
        autowu: keyword arguments of ``AutoWUCore`` other than the step counts (decay, lr_min, lr_max,
            test_interval, ...).
        steps_per_epoch / total_epochs: may be given later through :meth:`setup`, since the driver
            that starts the controller does not load the data.
    """

    def __init__(
        self,
        autowu: dict[str, Any],
        steps_per_epoch: int | None = None,
        total_epochs: int | None = None,
    ) -> None:
        self._kwargs = dict(autowu)
        self.core = None
        if steps_per_epoch is not None and total_epochs is not None:
            self.setup(steps_per_epoch, total_epochs)

    def setup(self, steps_per_epoch: int, total_epochs: int):
        """Build the core for this many steps (idempotent for the same sizes); returns the plan."""
        from autowu_bench.schedulers import AutoWUCore

        if self.core is None:
            self._sizes = (steps_per_epoch, total_epochs)
            self.core = AutoWUCore(steps_per_epoch, total_epochs, **self._kwargs)
        elif self._sizes != (steps_per_epoch, total_epochs):
            raise ValueError(
                f"controller was set up for (steps_per_epoch, total_epochs)={self._sizes}, "
                f"not {(steps_per_epoch, total_epochs)}; start a new controller for a different trial"
            )
        return self.core.plan()

    def _require_core(self):
        if self.core is None:
            raise RuntimeError("controller used before setup(steps_per_epoch, total_epochs)")
        return self.core

    def advance(self, losses: list[float]):
        """Observe the step losses since the last call and return the plan up to the next decision."""
        core = self._require_core()
        core.observe(list(losses))
        return core.plan()

    def plan(self):
        return self._require_core().plan()

    def feed(self, losses: list[float]) -> None:
        """:meth:`advance` for a caller that does not need the plan (a test point before ``decide_at``)."""
        self._require_core().observe(list(losses))

    def decide_at(self) -> int:
        """The first step after which the plan may change: the first test that could complete the
        patience, or the longest warmup W, whichever comes first (the plan's own ``next_decision``
        when that is sooner, e.g. step 1, whose loss sets the explosion threshold)."""
        core = self._require_core()
        plan = core.plan()
        if core.switch_step is not None or core.loss_reference is None:
            return plan.next_decision
        interval = core.test_interval
        next_test = (core.t // interval + 1) * interval
        tests_to_switch = max(1, core.patience - core.positives)
        return max(plan.next_decision, min(next_test + (tests_to_switch - 1) * interval, core.warmup_steps))

    def status(self) -> dict[str, Any]:
        """Phase and switch facts for the worker's rollback rule and metrics; ``decide_at`` and
        ``test_interval`` for the worker's calling pattern (module docstring)."""
        core = self._require_core()
        return {
            "t": core.t,
            "decide_at": self.decide_at(),
            "test_interval": core.test_interval,
            "phase": core.phase,
            "switch_step": core.switch_step,
            "switch_reason": core.switch_reason,
            "decay_start_lr": core.decay_start_lr,
            "divergence_step": getattr(core, "divergence_step", None),
        }

    def advance_with_status(self, losses: list[float]) -> tuple[Any, dict[str, Any]]:
        """:meth:`advance` and :meth:`status` in one call (one round trip at a decision point)."""
        plan = self.advance(losses)
        return plan, self.status()

    def tests_since(self, index: int) -> list[dict[str, Any]]:
        """Test records from ``index`` on (the worker logs each record once)."""
        return list(self._require_core().tests[index:])

    def state_dict(self) -> dict[str, Any]:
        return {"sizes": self._sizes, "core": self._require_core().state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.core = None
        self.setup(*state["sizes"])
        self.core.load_state_dict(state["core"])


def start_controller(spec: TrialSpec):
    """Start the trial's controller as a named actor owned by the calling process (the trial driver).

    The actor holds no CPU, so it never competes with the trial's workers for resources; it is
    killed with its owner if the driver dies, and :func:`stop_controller` ends it normally.
    """
    import ray

    actor_cls = ray.remote(num_cpus=0, max_restarts=0)(AutoWUController)
    handle = actor_cls.options(name=actor_name(spec.trial_id), namespace=NAMESPACE).remote(spec.autowu_kwargs())
    ray.get(handle.__ray_ready__.remote())
    return handle


def stop_controller(handle) -> None:
    import ray

    ray.kill(handle, no_restart=True)


class ControllerClient:
    """Calls to a controller actor with :class:`AutoWUController`'s method names.

    :meth:`feed` returns at once; every other call waits for its result. An actor runs its calls in
    order, so a waiting call sees every earlier feed, and it first collects the feeds' outcomes so that
    an error in one is raised, not lost.
    """

    def __init__(self, handle) -> None:
        self.handle = handle
        self._inflight: list[Any] = []

    def feed(self, losses: list[float]) -> None:
        self._inflight.append(self.handle.feed.remote(list(losses)))

    def __getattr__(self, name: str):
        import ray

        method = getattr(self.handle, name)

        def call(*args, **kwargs):
            result = method.remote(*args, **kwargs)
            inflight, self._inflight = self._inflight, []
            ray.get(inflight)
            return ray.get(result)

        return call


def connect(trial_id: str) -> ControllerClient:
    """The controller of ``trial_id`` started by the trial driver, looked up by name."""
    import ray

    return ControllerClient(ray.get_actor(actor_name(trial_id), namespace=NAMESPACE))
