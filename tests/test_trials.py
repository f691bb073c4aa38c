"""Typed trials: TrialKind through to_dict / from_dict."""

import json

from autowu_bench.platform.records.spec import TrialKind, TrialSpec


def _spec(**over):
    values = dict(trial_id="t", suite="s", arm="a", kind="autowu", workload="fmnist-mlp", batch_size=64,
                  epochs=1, seed=0, optimizer="adamw", weight_decay=0.0)
    values.update(over)
    return TrialSpec(**values)


def test_trial_kind_round_trip():
    for kind in TrialKind:
        spec = _spec(kind=kind.value)
        assert spec.kind is kind
        values = spec.to_dict()
        assert type(values["kind"]) is str and values["kind"] == kind.value
        assert json.loads(json.dumps(values))["kind"] == kind.value
        back = TrialSpec.from_dict(values)
        assert back.kind is kind and back == spec


def test_trial_kind_refuses_unknown():
    import pytest

    with pytest.raises(ValueError):
        _spec(kind="grid")
