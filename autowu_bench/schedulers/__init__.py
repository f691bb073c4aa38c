"""Learning-rate schedules: AutoWU, its GP minimum detector, the linear-warmup baseline, scaling rules.

Plain PyTorch + GPyTorch; nothing here knows about Ray. The plainly written GPyTorch detector, the
reference the fast one is tested against, is imported from ``autowu_bench.schedulers.reference_detector``
(not here, so that training processes do not pay for importing GPyTorch).
"""

from autowu_bench.schedulers.autowu import AutoWU, AutoWUCore
from autowu_bench.schedulers.detector import GPMinimumDetector
from autowu_bench.schedulers.gp_common import DetectorResult
from autowu_bench.schedulers.baseline import LinearWarmupCosine, baseline_plan
from autowu_bench.schedulers.lr_functions import (
    const_cos_lr,
    cosine_lr,
    exp_warmup_lr,
    linear_warmup_cosine_lr,
    scaled_peak_lr,
)
from autowu_bench.schedulers.plans import BaselinePlan, SchedulePlan

__all__ = [
    "AutoWU",
    "AutoWUCore",
    "BaselinePlan",
    "DetectorResult",
    "GPMinimumDetector",
    "LinearWarmupCosine",
    "SchedulePlan",
    "baseline_plan",
    "const_cos_lr",
    "cosine_lr",
    "exp_warmup_lr",
    "linear_warmup_cosine_lr",
    "scaled_peak_lr",
]
