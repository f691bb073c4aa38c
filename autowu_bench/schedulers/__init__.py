"""Learning-rate schedules: AutoWU, its GP minimum detector, the linear-warmup baseline, scaling rules.

Plain PyTorch + GPyTorch; nothing here knows about Ray. The plainly written GPyTorch detector, the
reference the fast one is tested against, is imported from ``autowu_bench.schedulers.reference_detector``
(not here, so that training processes do not pay for importing GPyTorch). The algorithm is described in
docs/autowu.md.
"""

from autowu_bench.schedulers.autowu import AutoWU, AutoWUCore, AutoWUOptions
from autowu_bench.schedulers.baseline import FixedSchedule, LinearWarmupCosine, fixed_plan
from autowu_bench.schedulers.detector import GPMinimumDetector
from autowu_bench.schedulers.gp_common import DetectorResult
from autowu_bench.schedulers.lr_functions import (
    const_cos_lr,
    cosine_lr,
    exp_warmup_lr,
    linear_warmup_cosine_lr,
    linear_warmup_decay_lr,
    polynomial_lr,
    scaled_peak_lr,
)
from autowu_bench.schedulers.lr_plan import NEVER, AutoWUPlan, FixedPlan, LRPlan, Phase, SwitchReason
from autowu_bench.schedulers.schedule import Schedule, set_lr
from autowu_bench.schedulers.switch_tests import Decision, SwitchTest

__all__ = [
    "NEVER",
    "AutoWU",
    "AutoWUCore",
    "AutoWUOptions",
    "AutoWUPlan",
    "Decision",
    "DetectorResult",
    "FixedPlan",
    "FixedSchedule",
    "GPMinimumDetector",
    "LRPlan",
    "LinearWarmupCosine",
    "Phase",
    "Schedule",
    "SwitchReason",
    "SwitchTest",
    "const_cos_lr",
    "cosine_lr",
    "exp_warmup_lr",
    "fixed_plan",
    "linear_warmup_cosine_lr",
    "linear_warmup_decay_lr",
    "polynomial_lr",
    "scaled_peak_lr",
    "set_lr",
]
