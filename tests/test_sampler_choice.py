"""Choose on validation, report on test: tuning functions refuse the test split."""

import pytest

from mripkg.app import sampler_choice


@pytest.mark.parametrize("split", ["test", "test_id", "test_skull"])
def test_tuning_functions_refuse_test_splits(split):
    with pytest.raises(ValueError, match="must not see the"):
        sampler_choice.require_tuning_split(split)
    with pytest.raises(ValueError, match="must not see the"):
        sampler_choice.precision_check("smoke", n_slices=2, seeds=(0,), split=split)


def test_validation_split_is_allowed():
    sampler_choice.require_tuning_split("val")
    sampler_choice.require_tuning_split("train")


def test_bf16_rule():
    assert sampler_choice.bf16_allowed([0.04, -0.02, 0.03])
    assert not sampler_choice.bf16_allowed([0.06, 0.05, 0.07])
    assert not sampler_choice.bf16_allowed([-0.08, -0.04])
    with pytest.raises(ValueError, match="at least one"):
        sampler_choice.bf16_allowed([])


@pytest.mark.parametrize("fn", ["_bench_levers", "_bench_sampler"])
def test_bench_lever_functions_refuse_the_test_split(fn):
    from mripkg.app import bench

    args = (2, ("dds",)) if fn == "_bench_levers" else ((4,), 2)
    with pytest.raises(ValueError, match="must not see the 'test' split"):
        getattr(bench, fn)("smoke", *args, split="test")
