"""The GP minimum detector: fast path against the GPyTorch reference, decisions, warm start, resume, errors."""

from __future__ import annotations

import io
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from autowu_bench.schedulers.detector import GPMinimumDetector, feature_count, rbf_features
from autowu_bench.schedulers.gp_common import history_points
from autowu_bench.schedulers.lr_functions import lr_at_fraction
from autowu_bench.schedulers.reference_detector import ReferenceGPMinimumDetector

LR_MIN, LR_NOW = 1e-5, 0.3
DETECTORS = [GPMinimumDetector, ReferenceGPMinimumDetector]


def u_curve(n: int, x_min: float = 0.6, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """A warmup loss curve: falls, bottoms out at ``x_min``, climbs back up; Gaussian noise."""
    x = np.arange(n) / n
    rng = np.random.default_rng(seed)
    return 2.3 - 1.5 * np.exp(-(((x - x_min) / 0.3) ** 2)) + 10 * np.maximum(x - x_min - 0.2, 0) ** 2 \
        + noise * rng.standard_normal(n)


def monotone_curve(n: int, seed: int = 1) -> np.ndarray:
    x = np.arange(n) / n
    return 2.3 * np.exp(-2.0 * x) + 0.3 + 0.03 * np.random.default_rng(seed).standard_normal(n)


def late_upturn_curve(n: int, seed: int = 2) -> np.ndarray:
    """Decreasing until 95% of the history, then a sharp rise in the last 5%."""
    x = np.arange(n) / n
    rise = 400.0 * np.maximum(x - 0.95, 0) ** 2
    return 2.0 - 1.2 * x + rise + 0.02 * np.random.default_rng(seed).standard_normal(n)


def with_nans(y: np.ndarray, seed: int = 3) -> np.ndarray:
    y = y.copy()
    rng = np.random.default_rng(seed)
    y[rng.choice(len(y), size=len(y) // 10, replace=False)] = np.nan
    y[rng.choice(len(y), size=3, replace=False)] = np.inf
    return y


CURVES = {
    "u_shaped": u_curve(300),
    "monotone": monotone_curve(300),
    "late_upturn": late_upturn_curve(400),
    "nans_mixed_in": with_nans(u_curve(300, seed=5)),
    "long_u_votes_differ": u_curve(1500, x_min=0.55, seed=6),
}


def run_growing(detector, y: np.ndarray, tests: int = 3):
    """Test on growing prefixes of ``y``, like consecutive tests of a real warmup."""
    n = len(y)
    return [detector.test(y[: n * (k + 1) // tests], lr_min=LR_MIN, lr_now=LR_NOW) for k in range(tests)]


def hyper(result) -> tuple[float, float, float]:
    return result.constant, result.outputscale, result.noise


SMALL = {"fit_points": 50, "vote_points": 100, "grid_points": 100}  # cheap sizes for the slow reference

CASES = {name: (y, {}) for name, y in CURVES.items()} | {
    "other_settings": (u_curve(600, x_min=0.7, seed=8), {"lengthscale": 0.1, "votes": 3, "confidence": 0.9, **SMALL}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fast_matches_reference(name):
    y, kwargs = CASES[name]
    fast_results = run_growing(GPMinimumDetector(seed=7, **kwargs), y)
    ref_results = run_growing(ReferenceGPMinimumDetector(seed=7, **kwargs), y)
    grid_step = 1.0 / (kwargs.get("grid_points", 500) - 1)
    for fast, ref in zip(fast_results, ref_results):
        assert fast.n_finite == ref.n_finite
        assert fast.votes == ref.votes
        assert fast.positive == ref.positive
        assert fast.p == pytest.approx(ref.p, abs=1e-6)
        assert hyper(fast) == pytest.approx(hyper(ref), rel=1e-6)
        assert np.max(np.abs(np.array(fast.x_star) - np.array(ref.x_star))) <= grid_step + 1e-12
        assert fast.start_lr == pytest.approx(ref.start_lr, rel=1e-2)
        assert fast.mu == pytest.approx(ref.mu, abs=1e-6)


def test_curves_cover_both_decisions_and_distinct_votes():
    """The comparison above is only meaningful if the curves give positive and negative tests and
    the long curve's votes see different data."""
    results = {name: GPMinimumDetector().test(y, lr_min=LR_MIN, lr_now=LR_NOW) for name, y in CURVES.items()}
    assert results["u_shaped"].positive and not results["monotone"].positive
    assert len(set(results["long_u_votes_differ"].x_star)) > 1 or len(set(results["long_u_votes_differ"].p)) > 1
    assert len(set(results["u_shaped"].p)) == 1  # <= 500 points: one vote, replicated


def test_clear_minimum_is_detected_near_the_true_minimum():
    result = GPMinimumDetector().test(u_curve(400, x_min=0.5), lr_min=LR_MIN, lr_now=LR_NOW)
    assert result.positive and all(result.votes) and min(result.p) > 0.99
    assert all(abs(x - 0.5) < 0.05 for x in result.x_star)
    expected = np.mean([lr_at_fraction(x, LR_MIN, LR_NOW, "exp") for x in result.x_star])
    assert result.start_lr == pytest.approx(expected, rel=1e-12)
    assert lr_at_fraction(0.45, LR_MIN, LR_NOW, "exp") < result.start_lr < lr_at_fraction(0.55, LR_MIN, LR_NOW, "exp")


def test_linear_warmup_maps_x_star_linearly():
    result = GPMinimumDetector().test(u_curve(400, x_min=0.5), lr_min=LR_MIN, lr_now=LR_NOW, warmup="linear")
    assert result.start_lr == pytest.approx(np.mean([LR_MIN + (LR_NOW - LR_MIN) * x for x in result.x_star]))


def test_curve_that_never_turns_up_is_negative():
    result = GPMinimumDetector().test(monotone_curve(600), lr_min=LR_MIN, lr_now=LR_NOW)
    assert not result.positive and not any(result.votes)
    assert all(x > 0.95 for x in result.x_star)


def test_second_test_warm_starts_from_the_first():
    y = u_curve(300)
    detector = GPMinimumDetector()
    first = detector.test(y[:150], lr_min=LR_MIN, lr_now=LR_NOW)
    after_first = detector.state_dict()
    assert after_first["adam_step"] == 100
    second = detector.test(y, lr_min=LR_MIN, lr_now=LR_NOW)
    assert detector.state_dict()["adam_step"] == 200
    # A fresh detector handed the first call's hyperparameters and Adam state reproduces the second call;
    # one starting from scratch does not.
    resumed = GPMinimumDetector()
    resumed.load_state_dict(after_first)
    assert asdict(resumed.test(y, lr_min=LR_MIN, lr_now=LR_NOW)) | {"seconds": 0} == asdict(second) | {"seconds": 0}
    cold = GPMinimumDetector().test(y, lr_min=LR_MIN, lr_now=LR_NOW)
    assert cold.outputscale != pytest.approx(second.outputscale, rel=1e-3)
    assert first.outputscale != pytest.approx(second.outputscale, rel=1e-3)
    # The constant restarts from the mean of the finite losses at every test: where it ended does not matter.
    moved = GPMinimumDetector()
    moved.load_state_dict(after_first | {"raw_constant": 123.0})
    assert moved.test(y, lr_min=LR_MIN, lr_now=LR_NOW).p == second.p


@pytest.mark.parametrize("cls", DETECTORS)
def test_state_dict_round_trip_resumes_bit_for_bit(cls):
    y = u_curve(400, seed=11)  # > vote_points finite points: the generator's state matters
    uninterrupted = cls(seed=3, **SMALL)
    run_growing(uninterrupted, y[:300], tests=2)
    expected = uninterrupted.test(y, lr_min=LR_MIN, lr_now=LR_NOW)

    first = cls(seed=3, **SMALL)
    run_growing(first, y[:300], tests=2)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = cls(seed=3, **SMALL)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    got = resumed.test(y, lr_min=LR_MIN, lr_now=LR_NOW)
    assert asdict(got) | {"seconds": 0} == asdict(expected) | {"seconds": 0}


def test_same_seed_same_result_other_seed_other_subsets():
    y = CURVES["long_u_votes_differ"]
    a = GPMinimumDetector(seed=1).test(y, lr_min=LR_MIN, lr_now=LR_NOW)
    b = GPMinimumDetector(seed=1).test(y, lr_min=LR_MIN, lr_now=LR_NOW)
    c = GPMinimumDetector(seed=2).test(y, lr_min=LR_MIN, lr_now=LR_NOW)
    assert asdict(a) | {"seconds": 0} == asdict(b) | {"seconds": 0}
    assert a.mu != c.mu


def test_load_state_dict_from_other_arguments_is_refused():
    state = GPMinimumDetector(votes=5).state_dict()
    with pytest.raises(ValueError, match="same arguments"):
        GPMinimumDetector(votes=3).load_state_dict(state)


@pytest.mark.parametrize("cls", DETECTORS)
@pytest.mark.parametrize(
    "losses",
    [[], [1.0], [math.nan, 2.0, math.inf, -math.inf], [0.7] * 50, [0.7, math.nan] * 30],
    ids=["empty", "one_point", "one_finite", "constant", "constant_with_nans"],
)
def test_nothing_to_fit_is_negative_and_leaves_the_state(cls, losses):
    detector = cls(**SMALL)
    detector.test(u_curve(200), lr_min=LR_MIN, lr_now=LR_NOW)
    before = detector.state_dict()
    result = detector.test(losses, lr_min=LR_MIN, lr_now=LR_NOW)
    assert not result.positive and result.votes == [False] * 5
    assert result.p == [0.0] * 5 and result.x_star == [1.0] * 5 and result.start_lr == LR_NOW
    assert len(result.mu) == 100
    after = detector.state_dict()
    assert torch.equal(after.pop("generator"), before.pop("generator"))
    assert str(after) == str(before)


def test_non_finite_points_keep_their_place_in_time():
    history = history_points(np.array([1.0, np.nan, 3.0, np.inf, 5.0]))
    assert history.n == 5 and history.n_finite == 3
    assert history.x.tolist() == [0.0, 0.4, 0.8] and history.y.tolist() == [1.0, 3.0, 5.0]
    # A U-shaped curve with holes is still read on the full time axis.
    result = GPMinimumDetector().test(with_nans(u_curve(400, x_min=0.5)), lr_min=LR_MIN, lr_now=LR_NOW)
    assert result.positive and all(abs(x - 0.5) < 0.05 for x in result.x_star)


@pytest.mark.parametrize("lengthscale", [0.05, 0.2, 1.0])
def test_kernel_feature_expansion_is_exact_to_rounding(lengthscale):
    x = torch.rand(300, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x[:2] = torch.tensor([0.0, 1.0], dtype=torch.float64)
    phi = rbf_features(x, lengthscale, feature_count(lengthscale))
    exact = torch.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * lengthscale**2))
    assert (phi @ phi.T - exact).abs().max().item() < 1e-13


def test_inputs_as_list_array_and_tensor_agree():
    y = u_curve(250)
    results = [GPMinimumDetector().test(v, lr_min=LR_MIN, lr_now=LR_NOW) for v in (list(y), y, torch.tensor(y))]
    assert results[0].p == results[1].p == results[2].p


@pytest.mark.parametrize("cls", DETECTORS)
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0}, "confidence"),
        ({"lengthscale": 0.0}, "lengthscale"),
        ({"noise_min": -1e-4}, "noise_min"),
        ({"noise_init": 1e-4}, "noise_init"),
        ({"fit_iters": -1}, "fit_iters"),
        ({"fit_iters": 2.5}, "fit_iters"),
        ({"fit_lr": 0.0}, "fit_lr"),
        ({"fit_points": 1}, "fit_points"),
        ({"votes": 0}, "votes"),
        ({"votes": True}, "votes"),
        ({"vote_points": 1}, "vote_points"),
        ({"grid_points": 1}, "grid_points"),
        ({"seed": "0"}, "seed"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


@pytest.mark.parametrize("cls", [GPMinimumDetector, ReferenceGPMinimumDetector])
def test_both_detectors_take_the_same_defaults_and_refuse_an_unknown_argument(cls):
    from autowu_bench.schedulers.gp_common import DetectorConfig

    assert cls().config == DetectorConfig()
    with pytest.raises(TypeError, match="unknown detector arguments \\['lenghtscale'\\]"):
        cls(lenghtscale=0.3)


def test_fast_path_refuses_tiny_lengthscale_and_points_to_the_reference():
    with pytest.raises(ValueError, match="lengthscale"):
        GPMinimumDetector(lengthscale=0.01)
    ReferenceGPMinimumDetector(lengthscale=0.01)  # the reference has no such limit


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr_min": 0.0, "lr_now": 0.1}, "lr_min"),
        ({"lr_min": 1e-5, "lr_now": -1.0}, "lr_now"),
        ({"lr_min": 1e-5, "lr_now": 0.1, "warmup": "cosine"}, "warmup"),
    ],
)
def test_bad_test_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GPMinimumDetector().test(u_curve(50), **kwargs)


def test_losses_must_be_one_dimensional():
    with pytest.raises(ValueError, match="1-d"):
        GPMinimumDetector().test(np.ones((4, 5)), lr_min=LR_MIN, lr_now=LR_NOW)


@pytest.mark.parametrize("cls", DETECTORS)
def test_caller_thread_setting_is_restored(cls):
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cls(**SMALL).test(u_curve(150), lr_min=LR_MIN, lr_now=LR_NOW)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
