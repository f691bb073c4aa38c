"""A trial's training state at one step, as the worker captures it: the in-memory snapshot that a
divergence rolls back to, and (written by rank 0 as ``state.pt``) the checkpoint that a restart or a
resumed suite continues from.

Its dict form is tensors and plain data only (the plan as its dict, numpy's RNG key as a list), so a
checkpoint loads with ``torch.load(weights_only=True)``: nothing in it runs code when loaded. The layout
is that of every checkpoint written so far; keep it, or old run folders stop resuming.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from autowu_bench.schedulers.lr_plan import LRPlan


@dataclass
class LoopPosition:
    """How far the trial is: what the loop needs besides the weights to go on from a state."""

    step: int
    epoch: int
    rollbacks: int
    best_val_acc: float
    val_history: list[dict[str, float]] = field(default_factory=list)
    tests_logged: int = 0  # the AutoWU tests already handed to the results


@dataclass
class TrainingState:
    """Everything to go on from one step, identical on every rank but ``schedule`` (rank 0's only).

    Attributes:
        model / optimizer: the state dicts (the model's weights are those to evaluate: Schedule-Free's
            average).
        rng: every rank's RNG states (torch, python, numpy; cuda on a GPU), by rank.
        progress: :class:`LoopPosition`.
        trace: the (step, lr) pairs applied so far.
        plan: the schedule's plan in force.
        schedule: rank 0's schedule state (the AutoWU controller's, or the baseline's); None elsewhere.
    """

    model: dict[str, Any]
    optimizer: dict[str, Any]
    rng: list[dict[str, Any]]
    progress: LoopPosition
    trace: list[tuple[int, float]]
    plan: LRPlan
    schedule: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's plain form (see the module docstring)."""
        return {"model": self.model, "optimizer": self.optimizer, "rng": self.rng,
                "progress": dataclasses.asdict(self.progress), "trace": list(self.trace),
                "plan": self.plan.to_dict(), "schedule": self.schedule}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainingState":
        """A checkpoint's state (its other keys, such as the ``spec`` rank 0 saves beside it, are not read)."""
        missing = sorted({f.name for f in dataclasses.fields(cls)} - set(values))
        if missing:
            raise ValueError(f"not a trial checkpoint: it lacks {missing} (keys: {sorted(values)})")
        return cls(model=values["model"], optimizer=values["optimizer"], rng=list(values["rng"]),
                   progress=LoopPosition(**values["progress"]), trace=list(values["trace"]),
                   plan=LRPlan.from_dict(values["plan"]), schedule=values["schedule"])
