"""What notebooks 04 and 05 run for issue 17's scorecard: one call each.

Stage: experiments.  Receives targets, slice sets, attack results and controls; hands on
evaluations (one per sampler seed for the diffusion model, the DDS ablation beside the paper's
sampler), which :mod:`mripkg.report.scorecard` turns into the card and the sampler-sensitivity
table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from ..attacks.kspace import AttackResult
from ..evaluation.scoring import Evaluation, evaluate_attack
from ..evaluation.selection import SliceSet, subset_result
from ..evaluation.targets import Target
from ..profiles import SAMPLER_PRESETS, Profile

#: The ablation beside the paper's sampler in the sampler-sensitivity table.
ABLATION_PRESET = "dds"


def diffusion_seeds(profile: Profile) -> list[int]:
    """The sampler seeds of every diffusion comparison: the profile seed and the next ones,
    :attr:`~mripkg.profiles.AttackConfig.diffusion_seeds` of them."""
    return [profile.seed + k for k in range(profile.attack.diffusion_seeds)]


def seed_evaluations(
    target: Target,
    data: SliceSet,
    results: Mapping[str, AttackResult],
    controls: Tensor,
    seeds: Sequence[int],
) -> dict[str, list[Evaluation]]:
    """``{source: [evaluation per seed]}``: each source's perturbations (over ``data``'s
    slices) and the equal-norm ``controls`` given to ``target`` with each sampler seed."""
    return {
        s: [
            evaluate_attack(target.with_seed(sd), data, res, source=s, controls=controls)
            for sd in seeds
        ]
        for s, res in results.items()
    }


def whitebox_with_controls(
    targets: Mapping[str, Target],
    full: SliceSet,
    data: SliceSet,
    attacks: Mapping[str, AttackResult],
    eps: Sequence[float],
    controls: Tensor,
) -> dict[str, Evaluation]:
    """Each supervised model's white-box evaluation on ``data``'s slices (a subset of
    ``full``, where the attacks ran) at ``eps``, with the random ``controls`` of those slices
    (the supervised models' own control artifacts, claim 4)."""
    return {
        m: evaluate_attack(
            targets[m],
            data,
            subset_result(attacks[m], full, data.slice_ids, list(eps)),
            source=m,
            controls=controls,
        )
        for m in targets
    }


def sampler_sensitivity(
    target: Target,
    data: SliceSet,
    results: Mapping[str, AttackResult],
    controls: Tensor,
    paper: Mapping[str, Sequence[Evaluation]],
    seed: int,
) -> dict[str, Mapping[str, Sequence[Evaluation]]]:
    """The inputs of the sampler-sensitivity table
    (:func:`mripkg.report.scorecard.sampler_sensitivity_rows`): the paper's sampler
    (``paper``, the evaluations per seed already run) beside the DDS ablation
    (:data:`ABLATION_PRESET`, the same steps, one seed: ``seed``) on the same perturbations and
    controls; ``{sampler description: {source: [evaluation per seed]}}``."""
    model = target.model
    preset = SAMPLER_PRESETS[ABLATION_PRESET]
    ablation = model.variant(  # type: ignore[operator]
        sampler=preset["sampler"],
        eta=preset["sampler_eta"],
        spacing=preset["sampler_spacing"],
        precision=preset["sampler_precision"],
    )
    t_abl = Target(
        target.name,
        ablation,
        target.mask,
        seed=seed,
        batch_size=target.batch_size,
        weights_id=target.weights_id,
        cache=target.cache,
    )
    abl = seed_evaluations(t_abl, data, results, controls, [seed])
    return {
        f"paper: {model.describe()}": paper,  # type: ignore[operator]
        f"ablation: {ablation.describe()}": abl,  # type: ignore[operator]
    }


__all__ = [
    "ABLATION_PRESET",
    "diffusion_seeds",
    "sampler_sensitivity",
    "seed_evaluations",
    "whitebox_with_controls",
]
