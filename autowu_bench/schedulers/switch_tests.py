"""AutoWU's switch tests: what one GP test (does the warmup switch to the decay now?) saw and decided
(``AutoWUCore.tests``, the ``tests`` table).

Kept apart from the state machine so that the ``Schedule`` protocol, the platform's results and MLflow logger and the
report can name a test without importing AutoWU itself.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Any, Mapping


class Decision(StrEnum):
    """What one AutoWU test decided (a ``SwitchTest``'s ``decision``)."""

    NEGATIVE = "negative"  # the vote was negative: the positive streak restarts
    POSITIVE = "positive"  # positive, the patience not yet reached
    SWITCH = "switch"  # positive for the patience-th time running: the decay starts
    DIVERGENCE = "divergence"  # a divergent loss: the decay starts at once


@dataclasses.dataclass(frozen=True)
class SwitchTest:
    """One AutoWU test, as ``AutoWUCore.tests`` keeps it and the ``tests`` table stores it.

    ``mu``, ``x_star`` and ``start_lr`` are set on the deciding test only (a switch or a divergence):
    the posterior mean on the grid, each vote's minimum and the LR the decay starts from.
    """

    __test__ = False  # its name starts with "Test", but it is not a pytest test class

    step: int
    epoch: float
    p: tuple[float, ...]  # the probability of each vote that the minimum is behind
    votes: tuple[bool, ...]
    positive: bool
    decision: Decision
    n_finite: int
    seconds: float
    mu: tuple[float, ...] | None = None
    x_star: tuple[float, ...] | None = None
    start_lr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, the decision as a string) for state.pt and the tests table; the deciding
        test's fields only where they are set, so other rows carry no empty columns."""
        row = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        row = {name: value for name, value in row.items() if value is not None}
        row.update({name: list(row[name]) for name in ("p", "votes", "mu", "x_star") if name in row})
        row["decision"] = str(self.decision)
        return row

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> SwitchTest:
        """The record back from ``to_dict``'s plain data (a checkpoint's ``tests``)."""
        values = dict(row)
        for name in ("p", "votes", "mu", "x_star"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        values["decision"] = Decision(values["decision"])
        return cls(**values)
