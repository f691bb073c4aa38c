"""AutoWU's state machine with a scripted detector: step conventions, patience, fallback, plans, errors.

The detector is replaced by one that answers from a script, so these tests pin down the decision rule
alone (as a pure function of the losses and the test answers), without any GP.
"""

import math
import warnings
from types import SimpleNamespace

import pytest
import torch

from autowu_bench.schedulers import AutoWU, AutoWUCore, Decision
from autowu_bench.schedulers.lr_plan import NEVER


class ScriptedDetector:
    """Answers test i with script[i] (positive or not) and x_star = 0.5; records what it was asked."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = []

    def test(self, losses, *, lr_min, lr_now, warmup):
        self.calls.append({"n": len(losses), "lr_now": lr_now, "losses": list(losses)})
        positive = self.script[len(self.calls) - 1] if len(self.calls) <= len(self.script) else False
        start = lr_min * (lr_now / lr_min) ** 0.5
        return SimpleNamespace(
            p=[0.99 if positive else 0.1] * 5, votes=[positive] * 5, positive=positive,
            x_star=[0.5] * 5, start_lr=start, mu=[0.0] * 3, n_finite=sum(map(math.isfinite, losses)),
            seconds=0.001,
        )

    def state_dict(self):
        return {"calls": len(self.calls)}

    def load_state_dict(self, state):
        self.calls = [None] * state["calls"]


def make_core(script=(), **kwargs):
    kwargs.setdefault("divergence_factor", None)
    kwargs.setdefault("test_interval", 10)
    return AutoWUCore(10, 20, detector=ScriptedDetector(script), **kwargs)


def test_lr_after_t_calls_is_the_lr_of_step_t_plus_one():
    core = make_core()
    assert core.warmup_steps == 100
    g = (1.0 / 1e-5) ** (1 / 100)
    assert core.lr() == pytest.approx(1e-5)  # lr_0, the first step's LR
    core.observe([1.0] * 7)
    assert core.t == 7
    assert core.lr() == pytest.approx(1e-5 * g**7)


def test_tests_run_at_multiples_of_the_interval_with_lr_now_of_the_last_step():
    core = make_core(script=[False, False, False])
    core.observe([1.0] * 25)
    det = core.detector
    assert [c["n"] for c in det.calls] == [10, 20]
    assert det.calls[0]["lr_now"] == pytest.approx(core.lr(9))
    assert [r.step for r in core.tests] == [10, 20]
    assert [r.epoch for r in core.tests] == [1.0, 2.0]


def test_switch_after_patience_consecutive_positives_and_negative_resets():
    core = make_core(script=[True, True, False, True, True, True], patience=3)
    core.observe([1.0] * 50)
    assert core.phase == "warmup"
    core.observe([1.0] * 10)
    assert core.phase == "decay"
    assert core.switch_step == 60 and core.switch_reason == "test"
    assert [r.decision for r in core.tests] == [
        "positive", "positive", "negative", "positive", "positive", "switch"]
    # start LR comes from the detector's x_star mapped through eq. 5 with lr_now = lr_59
    lr_59 = 1e-5 * (1e5) ** (59 / 100)
    assert core.decay_start_lr == pytest.approx(1e-5 * (lr_59 / 1e-5) ** 0.5)
    assert core.tests[-1].start_lr == core.decay_start_lr
    # const-cos: the switch call already holds the start LR
    assert core.lr() == pytest.approx(core.decay_start_lr)


def test_fallback_at_the_longest_warmup_from_the_current_lr():
    core = make_core(script=[False] * 100)
    core.observe([1.0] * 99)
    assert core.phase == "warmup"
    core.observe([1.0])
    assert (core.switch_step, core.switch_reason) == (100, "fallback")
    assert core.decay_start_lr == pytest.approx(1e-5 * 1e5 ** (99 / 100))
    assert len(core.tests) == 10  # the test at t = W ran before the fallback


def test_zero_warmup_decays_from_lr_max_at_once():
    core = make_core(max_warmup_fraction=0.0, decay="cosine")
    assert (core.switch_step, core.switch_reason, core.decay_start_lr) == (0, "fallback", 1.0)
    assert core.lr() == pytest.approx(1.0)
    core.observe([1.0] * 100)
    assert core.lr() == pytest.approx(0.5)


def test_non_finite_loss_switches_at_once_never_above_the_breaking_lr():
    core = make_core(script=[False] * 10)
    core.observe([1.0] * 33 + [math.nan] + [1.0] * 5)
    assert (core.switch_step, core.switch_reason, core.divergence_step) == (34, "divergence", 34)
    assert core.decay_start_lr <= core.plan().lr_min * 1e5 ** (33 / 100)
    assert core.tests[-1].decision == "divergence"
    # the detector saw the history with the bad point masked
    assert math.isnan(core.detector.calls[-1]["losses"][-1])


def test_finite_explosion_counts_as_divergence():
    core = make_core(script=[False] * 10, divergence_factor=3.0)
    assert core.plan().next_test == 1  # the first loss sets the explosion threshold
    core.observe([2.3])
    assert core.plan().divergence_threshold == pytest.approx(6.9)
    core.observe([2.0] * 20 + [7.5])
    assert (core.switch_reason, core.switch_step) == ("divergence", 22)


def test_plan_next_test_and_exactness():
    core = make_core(script=[False] * 10)
    plan = core.plan()
    assert plan.next_test == 10
    core.observe([1.0] * 10)
    assert core.plan().next_test == 20
    assert all(plan.lr(t) == core.lr(t) for t in range(10))
    core.observe([1.0] * 90)
    assert core.plan().next_test == NEVER


def test_calls_past_the_end_keep_lr_zero_and_warn_once():
    core = make_core(script=[False] * 10)
    core.observe([1.0] * 200)
    assert core.lr() == 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        core.observe([1.0] * 3)
    assert core.lr() == 0.0
    assert len([w for w in caught if "past the planned" in str(w.message)]) == 1


def test_test_interval_epoch_warns_when_growth_is_large_and_auto_is_w_over_100():
    with pytest.warns(UserWarning, match="test_interval='auto'"):
        AutoWUCore(100, 20, test_interval="epoch", detector=ScriptedDetector([]))  # x3.16 per epoch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AutoWUCore(10, 200, test_interval="epoch", detector=ScriptedDetector([]))  # x1.12 per epoch
    core = AutoWUCore(100, 20, test_interval="auto", detector=ScriptedDetector([]))
    assert core.test_interval == 10  # W = 1000


def test_too_short_a_warmup_warns_even_when_testing_every_step():
    with pytest.warns(UserWarning, match=r"only 5 steps \(1 per epoch, 10 in all\).*more steps"):
        AutoWUCore(1, 10, test_interval="auto", detector=ScriptedDetector([]))  # x10 per step
    with pytest.warns(UserWarning, match="x3.16 between tests.*test_interval='auto'"):
        AutoWUCore(50, 20, test_interval=50, detector=ScriptedDetector([]))
    with pytest.warns(UserWarning, match="x10.00 between tests.*only 15 steps"):
        AutoWUCore(3, 10, test_interval="epoch", detector=ScriptedDetector([]))  # 'auto' would be x2.15 too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AutoWUCore(3, 20, test_interval="auto", detector=ScriptedDetector([]))  # W = 30: x1.47 per step


def test_autowu_writes_lr_into_every_group_with_its_scale():
    a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr_scale": 0.25}], lr=5.0)
    sched = AutoWU(opt, 10, 20, test_interval=10, detector=ScriptedDetector([]), divergence_factor=None)
    assert sched.get_last_lr() == pytest.approx([1e-5, 2.5e-6])
    for _ in range(30):
        opt.step()
        sched.step(torch.tensor(1.0))
    lrs = sched.get_last_lr()
    assert lrs[1] / lrs[0] == pytest.approx(0.25)
    assert lrs[0] == pytest.approx(1e-5 * 1e5 ** 0.3)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"steps_per_epoch": 0}, "steps_per_epoch"),
        ({"total_epochs": 1.5}, "total_epochs"),
        ({"decay": "step"}, "decay"),
        ({"warmup": "cubic"}, "warmup"),
        ({"lr_min": 0.0}, "lr_min"),
        ({"lr_max": 1e-6}, "lr_max"),
        ({"max_warmup_fraction": 1.5}, "max_warmup_fraction"),
        ({"confidence": 1.0}, "confidence"),
        ({"patience": 0}, "patience"),
        ({"const_fraction": -0.1}, "const_fraction"),
        ({"test_interval": 0}, "test_interval"),
        ({"test_interval": "daily"}, "test_interval"),
        ({"divergence_factor": 0.5}, "divergence_factor"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(kwargs, name):
    args = {"steps_per_epoch": 10, "total_epochs": 20, **kwargs}
    with pytest.raises(ValueError, match=name):
        AutoWUCore(args.pop("steps_per_epoch"), args.pop("total_epochs"), detector=ScriptedDetector([]), **args)


def test_autowu_rejects_a_non_optimizer():
    with pytest.raises(ValueError, match="optimizer"):
        AutoWU([torch.nn.Parameter(torch.ones(1))], 10, 20)


def test_load_state_dict_refuses_another_configuration():
    core = make_core()
    other = make_core(patience=4)
    with pytest.raises(ValueError, match="patience"):
        other.load_state_dict(core.state_dict())


def test_the_test_records_are_saved_as_plain_dicts_in_the_checkpoint_layout_and_read_back_equal():
    core = make_core(script=[False, True, True, True], patience=3)
    core.observe([1.0] * 40)
    assert [r.decision for r in core.tests] == ["negative", "positive", "positive", "switch"]
    saved = core.state_dict()["tests"]
    # state.pt's layout, which checkpoints written before SwitchTest also have: resuming them depends on it
    plain_keys = {"step", "epoch", "p", "votes", "positive", "decision", "n_finite", "seconds"}
    assert [set(row) for row in saved[:3]] == [plain_keys] * 3
    assert set(saved[3]) == plain_keys | {"mu", "x_star", "start_lr"}
    assert saved[3]["decision"] == "switch" and type(saved[3]["decision"]) is str
    assert saved[3]["x_star"] == [0.5] * 5 and saved[3]["start_lr"] == core.decay_start_lr
    resumed = make_core(script=[False, True, True, True], patience=3)
    resumed.load_state_dict(core.state_dict())
    assert resumed.tests == core.tests
    assert all(isinstance(r.decision, Decision) for r in resumed.tests)
