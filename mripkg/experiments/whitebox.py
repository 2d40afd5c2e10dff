"""White-box checks of notebook 03: short vs full sampler, attack convergence, step sizes.

Stage: experiments.  Receives models, slice sets and attack settings; hands on rows and
check results for the notebook and its JSON.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..attacks.cache import AttackCache
from ..attacks.control import budget_gap, control_deltas
from ..attacks.kspace import (
    AttackResult,
    AttackSettings,
    EpsLike,
)
from ..attacks.protocols import planned_steps
from ..attacks.shards import Shard
from ..data import MRIDataset
from ..evaluation.attack_runs import (
    attack_settings,
    diffusion_objective,
    diffusion_settings,
    missing_pairs,
    model_id,
    run_diffusion_whitebox,
    run_whitebox,
    shard_whitebox,
    time_attack_step,
)
from ..evaluation.clean import METRIC_CONVENTIONS, build_reconstructors
from ..evaluation.scoring import evaluate_attack, per_slice_rows
from ..evaluation.selection import SliceSet, eps_key, require_tuning_split, slice_set, spread_ids
from ..evaluation.summaries import whitebox_summary
from ..evaluation.targets import ReconCache, Target
from ..io import all_finite, read_json, write_csv, write_json
from ..models import LABELS, NAMES, SUPERVISED
from ..models.ddpm import DiffusionReconstructor
from ..paths import REPO_ROOT, run_dir
from ..profiles import PROFILES, Profile


def short_vs_full_sampler(
    diff: DiffusionReconstructor,
    data: SliceSet,
    result: AttackResult,
    controls: Tensor,
    full: Mapping[str, Mapping[str, Any]],
    *,
    steps: int,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """How much of a white-box diffusion attack's damage on its stand-in carries over.

    The perturbations ``result`` (and their ``controls``) of :func:`run_diffusion_whitebox`
    are given to the ``steps``-step sampler with the attack's noise (draw 0); ``full`` is the
    :func:`mripkg.claims.whitebox_summary` of the same perturbations on the full sampler.  One
    row per eps: mean PSNR drops in dB, ``short sampler``, ``control (short)``, ``full
    sampler``, ``control (full)``."""
    short = diff.variant(steps=steps)
    target = Target(diff.name, short, data.mask, batch_size=batch_size)
    on_short = whitebox_summary(
        evaluate_attack(target, data, result, source="diffusion", controls=controls)
    )
    return [
        {
            "eps": k,
            "short sampler": round(on_short[k]["psnr_drop_mean"], 2),
            "control (short)": round(on_short[k]["random_psnr_drop_mean"], 2),
            "full sampler": round(v["psnr_drop_mean"], 2),
            "control (full)": round(v["random_psnr_drop_mean"], 2),
        }
        for k, v in full.items()
    ]


def convergence(history: Tensor, at: Sequence[int]) -> Tensor:
    """Best damage reached by step ``t`` for each ``t`` in ``at``: ``[len(at), ...]`` from a
    ``loss_history`` ``[steps + 1, ...]`` (the attack keeps the best iterate)."""
    best = torch.cummax(history, dim=0).values
    return torch.stack([best[min(int(t), best.shape[0] - 1)] for t in at])


def step_size_scores(
    histories: Mapping[float, Tensor],
) -> tuple[dict[float, Tensor], dict[float, float]]:
    """Compare Adam step sizes on the same attack problems.

    ``histories[lr_rel]``: ``loss_history`` ``[steps + 1, N]`` of the same ``N`` problems
    (slices x eps x models, same order for every step size).  Each problem's best-damage-so-far
    curve is divided by the best final damage any step size reached on it, so problems of
    different scale weigh the same.  Returns those normalised curves ``{lr: [steps + 1, N]}``
    and the score of each step size: the mean final ratio (1 = best on every problem).
    """
    if not histories:
        raise ValueError("no step sizes to compare")
    shapes = {tuple(h.shape) for h in histories.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"histories must share one [steps + 1, N] shape, got {sorted(shapes)}")
    best = {lr: torch.cummax(h.double(), dim=0).values for lr, h in histories.items()}
    top = torch.stack([b[-1] for b in best.values()]).amax(0).clamp_min(1e-30)  # [N]
    curves = {lr: b / top for lr, b in best.items()}
    return curves, {lr: float(c[-1].mean()) for lr, c in curves.items()}


@dataclass
class ConvergenceCheck:
    """Does the attack converge?  The same problems attacked for ``steps`` and ``long_steps``.

    ``history``: the long run's damage per step ``[long_steps + 1, B]`` (one eps); ``gain``:
    relative extra damage of the best iterate from ``steps`` to ``long_steps`` ``[B]``;
    ``psnr_short`` / ``psnr_long``: the target's PSNR under each run's perturbation ``[B]``."""

    slice_ids: list[int]
    steps: int
    long_steps: int
    history: Tensor
    gain: Tensor
    psnr_short: Tensor
    psnr_long: Tensor


def convergence_check(
    model: Callable[[Tensor, Tensor], Tensor],
    source: str,
    data: SliceSet,
    eps: float,
    settings: AttackSettings,
    long_settings: AttackSettings,
    *,
    profile: Profile,
    batch_size: int | None = 8,
    cache: AttackCache | None = None,
) -> ConvergenceCheck:
    """Attack ``data`` at one ``eps`` with ``settings`` and with ``long_settings`` (more
    steps), both through the attack cache, and compare (:class:`ConvergenceCheck`)."""
    short = run_whitebox(
        model, source, data, [eps], settings, profile=profile, batch_size=batch_size, cache=cache
    )
    long = run_whitebox(
        model,
        source,
        data,
        [eps],
        long_settings,
        profile=profile,
        batch_size=batch_size,
        cache=cache,
    )
    at = convergence(long.loss_history[:, 0], [settings.steps, long_settings.steps])
    target = Target(source, model, data.mask)
    return ConvergenceCheck(
        slice_ids=list(data.slice_ids),
        steps=settings.steps,
        long_steps=long_settings.steps,
        history=long.loss_history[:, 0],
        gain=(at[1] / at[0].clamp_min(1e-30) - 1).double(),
        psnr_short=evaluate_attack(target, data, short, source=source).psnr[0],
        psnr_long=evaluate_attack(target, data, long, source=source).psnr[0],
    )


@dataclass
class StepSizeCheck:
    """Adam step sizes compared on the same problems (:func:`step_size_scores`): normalised
    best-damage curves ``{lr_rel: [steps + 1, N]}``, scores, the best step size, and whether
    the profile's ``lr_rel`` scores within ``tolerance`` of it."""

    curves: dict[float, Tensor]
    scores: dict[float, float]
    best: float
    profile_lr: float
    profile_score: float
    ok: bool


def step_size_check(
    models: Mapping[str, Callable[[Tensor, Tensor], Tensor]],
    data: SliceSet,
    eps: EpsLike,
    settings: Mapping[tuple[str, float], AttackSettings],
    *,
    profile: Profile,
    profile_lr: float,
    batch_size: int | None = 8,
    tolerance: float = 0.01,
    cache: AttackCache | None = None,
) -> StepSizeCheck:
    """Attack ``data`` at ``eps`` with every ``settings[(model name, lr_rel)]`` (through the
    attack cache); each step size's problems are the models' (slice, eps) pairs, in the order
    of ``settings``.  ``lr_rel`` is a tuned setting: ``data`` must be a validation split (a test
    split raises, issue 17)."""
    require_tuning_split(data.split, "the attack step-size check")
    runs: dict[float, list[Tensor]] = {}
    for (m, lr), s in settings.items():
        r = run_whitebox(
            models[m], m, data, eps, s, profile=profile, batch_size=batch_size, cache=cache
        )
        runs.setdefault(lr, []).append(r.loss_history.flatten(1))  # [steps + 1, E * B]
    curves, scores = step_size_scores({lr: torch.cat(h, 1) for lr, h in runs.items()})
    best = max(scores, key=scores.get)  # type: ignore[arg-type]
    profile_score = scores.get(profile_lr, float("nan"))
    return StepSizeCheck(
        curves=curves,
        scores=scores,
        best=best,
        profile_lr=profile_lr,
        profile_score=profile_score,
        ok=profile_score >= (1 - tolerance) * scores[best],
    )


__all__ = [
    "attack_check_note",
    "attack_check_record",
    "ConvergenceCheck",
    "StepSizeCheck",
    "convergence",
    "convergence_check",
    "short_vs_full_sampler",
    "step_size_check",
    "step_size_scores",
]


# --------------------------------------------------------------------------------------------
# notebook 03, step by step: each method is one analysis cell


def attack_check_record(
    conv: ConvergenceCheck,
    lr: StepSizeCheck,
    *,
    eps: float,
    lr_eps: Sequence[float],
    lr_slices: Sequence[int],
) -> dict[str, Any]:
    """The numbers of notebook 03's convergence run and step-size check as a JSON dict
    (``metrics_attack_checks.json``; read back by :func:`attack_check_note` when a later run
    skips the checks)."""
    return {
        "convergence": {
            "test_slices": list(conv.slice_ids),
            "eps": float(eps),
            "steps": int(conv.steps),
            "long_steps": int(conv.long_steps),
            "gain_per_slice": [float(g) for g in conv.gain],
            "gain_mean": float(conv.gain.mean()),
            "psnr_short_mean": float(conv.psnr_short.mean()),
            "psnr_long_mean": float(conv.psnr_long.mean()),
        },
        "step_size": {
            "val_slices": [int(i) for i in lr_slices],
            "eps": [float(e) for e in lr_eps],
            "scores": {f"{k:g}": float(v) for k, v in lr.scores.items()},
            "best": float(lr.best),
            "profile_lr": float(lr.profile_lr),
            "profile_score": float(lr.profile_score),
            "within_1pct": bool(lr.ok),
        },
    }


def attack_check_note(record: Mapping[str, Any] | None, lr_rel: float) -> str:
    """One Markdown bullet summarising an :func:`attack_check_record` (or saying there is
    none)."""
    if not record:
        return "* Attack convergence and step size: not checked in this run and no record kept."
    c, s = record["convergence"], record["step_size"]
    grid = [float(k) for k in s["scores"]]
    best = s["best"]
    ok = s["within_1pct"]
    return (
        f"* Convergence (ResUNet++, eps {c['eps']:g}, {len(c['test_slices'])} test slices): "
        f"a cold {c['long_steps']}-step run reaches {100 * c['gain_mean']:.1f} % more damage "
        f"than its own first {c['steps']} steps (PSNR under this run's attack "
        f"{c['psnr_short_mean']:.2f} dB, under the long run's {c['psnr_long_mean']:.2f} dB); "
        f"step-size check on validation: best lr_rel of {grid} is {best:g} (score "
        f"{s['scores'][f'{best:g}']:.4f}); the profile's {lr_rel:g} scores "
        f"{s['profile_score']:.4f}"
        f"{' (within 1 %: kept)' if ok else ' (more than 1 % worse: the default should change)'}."
    )


__all__ = [
    "attack_check_note",
    "attack_check_record",
    "ConvergenceCheck",
    "StepSizeCheck",
    "convergence",
    "convergence_check",
    "short_vs_full_sampler",
    "step_size_check",
    "step_size_scores",
]


# --------------------------------------------------------------------------------------------
# notebook 03, step by step: each method is one analysis cell


def settings_rows(prof: Profile) -> list[dict[str, Any]]:
    """The white-box settings of every profile, one row each (this run's marked)."""
    rows = []
    for p in PROFILES.values():
        a = p.attack
        rows.append(
            {
                "profile": p.name + (" (this run)" if p.name == prof.name else ""),
                "px": p.image_size,
                "attacked test slices": a.n_slices,
                "eps grid": ", ".join(f"{e:g}" for e in a.eps_grid),
                "Adam steps": a.steps,
                "lr_rel": a.lr_rel,
                "continuation": (
                    f"warm {a.warm_steps} steps, stop after {a.patience} steps < {a.min_gain:g}"
                    if a.continuation
                    else "no"
                ),
                "diffusion white-box": (
                    f"{'default on' if a.diffusion_whitebox else 'opt-in'}: "
                    f"{a.diffusion_whitebox_slices} slices, eps "
                    f"{', '.join(f'{e:g}' for e in a.diffusion_whitebox_eps)}, "
                    f"{a.diffusion_eot_samples} noise draw(s)"
                ),
                "short sampler": a.diffusion_steps,
                "sampler steps": p.ddpm.sampler_steps,
                "seed": p.seed,
            }
        )
    return rows


@dataclass
class WhiteBox:
    """Notebook 03: Eq. 5 attacks on every model across eps, with the equal-norm random
    control, and (opt-in) the diffusion model attacked through a short sampler.

    Receives the profile, the data set and the mask; each method runs one step of the
    notebook and keeps its results as attributes (``attacks``, ``evals``, ``summary``, ...)
    for the next step, for report/ and for the checks."""

    prof: Profile
    ds: MRIDataset
    mask: Tensor
    batch_size: int = 8
    run_diffusion: bool = False
    sources: list[str] = field(default_factory=lambda: list(NAMES[:3]))
    suffix: str = ""  # of the output files: "_authors" for the authors' protocol

    def load_models(self) -> list[dict[str, Any]]:
        """The reconstructors from their weights and each source's attack settings; rows of
        (model, weights id, settings digest)."""
        prof = self.prof
        self.models, self.metas, _ = build_reconstructors(prof, self.ds, retrain=False)
        self.settings = {m: attack_settings(prof, self.metas[m]) for m in self.sources}
        return [
            {
                "model": LABELS[m],
                "weights sha256[:12]": model_id(self.metas[m]) or "(no weights)",
                "attack settings digest": self.settings[m].digest(),
            }
            for m in self.sources
        ]

    def select(self) -> SliceSet:
        """The attacked test slices (:attr:`data`) and the eps grid (:attr:`eps_grid`)."""
        self.data = slice_set(self.ds["test"], self.mask, self.prof.attack.n_slices)
        self.eps_grid = list(self.prof.attack.eps_grid)
        return self.data

    def estimate(self) -> dict[str, float]:
        """The attacked slices and eps grid; prints the work left per model and returns the
        estimated seconds."""
        prof, ds, mask, batch_size = self.prof, self.ds, self.mask, self.batch_size
        models, metas, settings = self.models, self.metas, self.settings
        data, eps_grid = self.select(), self.eps_grid
        print(f"attacked test slices (index in the test split): {data.slice_ids}")
        print(f"eps grid: {eps_grid}; {prof.attack.steps} Adam steps, lr_rel {prof.attack.lr_rel}")

        estimate = {}
        for m in self.sources:
            todo = missing_pairs(m, data, eps_grid, settings[m], profile=prof)
            per = time_attack_step(models[m], data, batch_size) if todo else 0.0
            estimate[m] = todo * planned_steps(settings[m], eps_grid) * per
            print(
                f"  {LABELS[m]:16s} {todo:4d} (slice, eps) pairs to attack, ~{per * 1e3:.0f} ms "
                f"per pair and step -> about {estimate[m] / 60:.1f} min"
            )

        self.diff = diff = models["diffusion"]
        if self.run_diffusion:
            self.ddata = ddata = slice_set(ds["test"], mask, prof.attack.diffusion_whitebox_slices)
            self.d_eps = d_eps = [0.0, *prof.attack.diffusion_whitebox_eps]
            self.d_settings = d_settings = diffusion_settings(prof, metas["diffusion"])
            todo = missing_pairs("diffusion", ddata, d_eps, d_settings, profile=prof)
            n_draws = prof.attack.diffusion_eot_samples
            objective = diffusion_objective(
                diff, prof.attack.diffusion_steps, ddata.slice_ids[0], n_draws
            )
            per = time_attack_step(objective, ddata, len(d_eps) - 1, steps=1) if todo else 0.0
            full = Target("diffusion", diff, mask).time_per_slice(ddata)
            n_recon = len(ddata) * (1 + 2 * (len(d_eps) - 1))
            estimate["diffusion"] = todo * prof.attack.steps * per + n_recon * full
            print(
                f"  diffusion (white-box through a {prof.attack.diffusion_steps}-step sampler, "
                f"{n_draws} noise draw(s)): {todo} "
                f"pairs, ~{per:.2f} s per pair and step, plus {n_recon} full-sampler "
                f"reconstructions at ~{full:.1f} s -> at most about "
                f"{estimate['diffusion'] / 60:.1f} min"
            )
        print(f"estimated total: about {sum(estimate.values()) / 60:.1f} min")
        return estimate

    def attack_shard(self, shard: Shard) -> dict[str, list[int]]:
        """One shard of :meth:`attack` for a sweep spread over workers (``python -m
        mripkg.app.sweep``): the batches of (slice, eps) pairs that ``shard`` owns, of every
        source, into the attack cache; returns their numbers per source.  The merge is
        :meth:`attack` with ``require_cached=True``, then :meth:`evaluate` and :meth:`save`.
        The opt-in white-box attack on the diffusion model is not sharded (the merge runs
        it)."""
        return {
            m: shard_whitebox(
                self.models[m],
                m,
                self.data,
                self.eps_grid,
                self.settings[m],
                shard=shard,
                profile=self.prof,
                batch_size=self.batch_size,
            )
            for m in self.sources
        }

    def attack(self, require_cached: bool = False) -> dict[str, AttackResult]:
        """Every source attacked on every (slice, eps) pair (through the attack cache); the
        budget is checked for every pair.  ``require_cached``: the merge of a sharded sweep
        (every source's pairs from the cache, each re-validated; a missing batch raises
        :class:`~mripkg.attacks.shards.MissingEntries`)."""
        prof, data = self.prof, self.data
        attacks = {}
        t0 = time.perf_counter()
        for m in self.sources:
            attacks[m] = run_whitebox(
                self.models[m],
                m,
                data,
                self.eps_grid,
                self.settings[m],
                profile=prof,
                batch_size=self.batch_size,
                require_cached=require_cached,
            )
            print(
                f"{LABELS[m]:16s} done after {time.perf_counter() - t0:.0f} s; largest shortfall "
                f"from the budget {budget_gap(attacks[m]):.1e} (relative)"
            )
        if self.run_diffusion:
            attacks["diffusion"] = run_diffusion_whitebox(
                self.diff,
                self.ddata,
                self.d_eps,
                self.d_settings,
                profile=prof,
                steps=prof.attack.diffusion_steps,
                samples=prof.attack.diffusion_eot_samples,
            )
            print(f"diffusion done after {time.perf_counter() - t0:.0f} s")
        for m, res in attacks.items():
            eps_col = res.eps.view(-1, 1)
            assert (res.rel_norm <= eps_col * (1 + 1e-6)).all(), m  # the budget holds
        self.attacks = attacks
        return attacks

    def evaluate(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Clean, perturbed and control reconstructions of every attacked slice; the
        per-model :func:`~mripkg.evaluation.summaries.whitebox_summary`."""
        prof, mask, data, attacks = self.prof, self.mask, self.data, self.attacks
        evals = {}
        for m in self.sources:
            target = Target(m, self.models[m], mask, batch_size=self.batch_size)
            ctl = control_deltas(attacks[m], mask, data.slice_ids, seed=prof.seed)
            evals[m] = evaluate_attack(target, data, attacks[m], source=m, controls=ctl)
        if self.run_diffusion:
            dtarget = Target(
                "diffusion",
                self.diff,
                mask,
                batch_size=self.batch_size,
                weights_id=model_id(self.metas["diffusion"]),
                cache=ReconCache(run_dir(prof.name) / "recons"),
            )
            self.dctl = control_deltas(
                attacks["diffusion"], mask, self.ddata.slice_ids, seed=prof.seed
            )
            evals["diffusion"] = evaluate_attack(
                dtarget, self.ddata, attacks["diffusion"], source="diffusion", controls=self.dctl
            )
        self.evals = evals
        self.summary = {m: whitebox_summary(ev) for m, ev in evals.items()}
        return self.summary

    def sampler_check(self) -> tuple[str, list[dict[str, Any]]]:
        """How much of the white-box diffusion damage on the short sampler carries over to
        the full one (:func:`short_vs_full_sampler`): caption and rows (none when the
        diffusion white-box did not run)."""
        prof = self.prof
        self.proxy_rows = []
        if not self.run_diffusion:
            return "diffusion white-box not run (diffusion_whitebox = False)", []
        self.proxy_rows = short_vs_full_sampler(
            self.diff,
            self.ddata,
            self.attacks["diffusion"],
            self.dctl,
            self.summary["diffusion"],
            steps=prof.attack.diffusion_steps,
            batch_size=self.batch_size,
        )
        caption = (
            f"PSNR drop in dB, mean over {len(self.ddata)} slices; short: the attacked "
            f"{prof.attack.diffusion_steps}-step sampler, full: {prof.ddpm.sampler_steps} steps"
        )
        return caption, self.proxy_rows

    def figure_slice(self, figure_slice: int = -1) -> tuple[str, list[dict[str, Any]]]:
        """Choose the figure's slice (``-1``: the middle one); its PSNR per model and eps."""
        data = self.data
        self.pos = pos = (
            len(data) // 2 if figure_slice < 0 else min(int(figure_slice), len(data) - 1)
        )
        fig_sid = data.slice_ids[pos]
        print(
            f"figure slice: test slice {fig_sid} (axial index "
            f"{self.ds['test'].slice_index[fig_sid]})"
        )
        rows = []
        for m in self.sources:
            ev = self.evals[m]
            rows.append(
                {
                    "model": LABELS[m],
                    **{
                        f"eps {e:g}": round(float(ev.psnr[j, pos]), 2) for j, e in enumerate(ev.eps)
                    },
                }
            )
        return "PSNR (dB) of the figure slice", rows

    def centre_share(self) -> list[dict[str, Any]]:
        """Share of each model's largest-eps perturbation energy on the centre block of
        sampled columns, against a random control's share."""
        cols = torch.nonzero(self.mask).flatten().tolist()
        blocks = [[cols[0]]]
        for c in cols[1:]:  # runs of neighbouring sampled columns; the longest is the centre
            if c == blocks[-1][-1] + 1:
                blocks[-1].append(c)
            else:
                blocks.append([c])
        centre = max(blocks, key=len)
        share_random = len(centre) / len(cols)
        rows = []
        for m, res in self.attacks.items():
            d = res.delta[-1]  # largest eps, [B, 1, H, W]
            energy = d.abs().pow(2).sum(dim=(0, 1, 2))  # per column
            share = float(energy[centre].sum() / energy.sum())
            rows.append(
                {
                    "model": LABELS[m],
                    f"share on the {len(centre)} centre columns": round(share, 3),
                    "random control": round(share_random, 3),
                    "eps": f"{float(res.eps[-1]):g}",
                }
            )
        return rows

    def summary_rows(self) -> list[dict[str, Any]]:
        """PSNR / SSIM (mean ± SD), the control's and the drops, per model and eps."""
        rows = []
        for m, s in self.summary.items():
            for k, v in s.items():
                rows.append(
                    {
                        "model": LABELS[m],
                        "eps": k,
                        "PSNR": f"{v['psnr_mean']:.2f} ± {v['psnr_sd']:.2f}",
                        "PSNR random": f"{v['random_psnr_mean']:.2f}",
                        "SSIM": f"{v['ssim_mean']:.3f} ± {v['ssim_sd']:.3f}",
                        "SSIM random": f"{v['random_ssim_mean']:.3f}",
                        "PSNR drop": f"{v['psnr_drop_mean']:.2f}",
                        "drop random": f"{v['random_psnr_drop_mean']:.2f}",
                    }
                )
        print(f"psnr / ssim: {METRIC_CONVENTIONS['psnr']}")
        return rows

    def amplification_rows(self) -> list[dict[str, Any]]:
        """Error amplification (and the control's) per model and eps > 0."""
        return [
            {
                "model": LABELS[m],
                "eps": k,
                "amplification": round(v["amplification"], 3),
                "random control": round(v["random_amplification"], 3),
            }
            for m, s in self.summary.items()
            for k, v in s.items()
            if v["amplification"] is not None
        ]

    def convergence(
        self,
        *,
        factor: int = 3,
        eps: float = 0.04,
        n_slices: int = 2,
        lr_rel_grid: Sequence[float] = (0.3, 1.0, 3.0, 10.0),
        lr_slices: int = 4,
        lr_eps: Sequence[float] = (0.02, 0.08),
    ) -> tuple[ConvergenceCheck, StepSizeCheck]:
        """The attack run ``factor`` times longer on ``n_slices`` test slices
        (:func:`convergence_check`) and the step-size check on validation slices
        (:func:`step_size_check`); prints both."""
        prof, data, models, metas, mask = self.prof, self.data, self.models, self.metas, self.mask
        lr_rel_grid, lr_eps = list(lr_rel_grid), list(lr_eps)
        conv_ids = [data.slice_ids[i] for i in spread_ids(len(data), n_slices)]
        conv = data.take(conv_ids)
        long_steps = factor * prof.attack.steps
        s_long = attack_settings(  # the long reference is a cold run
            prof, metas["resunetpp"], steps=long_steps, ladder=(), warm_steps=0, patience=0
        )
        val = slice_set(self.ds["val"], mask, lr_slices)
        s_lr = {
            (m, lr): attack_settings(prof, metas[m], lr_rel=lr)
            for m in SUPERVISED
            for lr in lr_rel_grid
        }
        per = time_attack_step(models["resunetpp"], conv, len(conv))
        todo_long = missing_pairs("resunetpp", conv, [eps], s_long, profile=prof)
        todo_lr = sum(missing_pairs(m, val, lr_eps, s, profile=prof) for (m, _), s in s_lr.items())
        print(
            f"convergence: {len(conv)} test slices {conv_ids}, eps {eps}, {long_steps} "
            f"steps; step-size check: {len(val)} validation slices, eps {lr_eps}, lr_rel "
            f"{lr_rel_grid}, {prof.attack.steps} steps; about "
            f"{(todo_long * long_steps + todo_lr * prof.attack.steps) * per / 60:.1f} min"
        )

        conv_check = convergence_check(
            models["resunetpp"],
            "resunetpp",
            conv,
            eps,
            self.settings["resunetpp"],
            s_long,
            profile=prof,
            batch_size=self.batch_size,
        )
        gain, psnr_short, psnr_long = conv_check.gain, conv_check.psnr_short, conv_check.psnr_long
        for b, sid in enumerate(conv_ids):
            print(
                f"  slice {sid}: damage +{100 * float(gain[b]):.1f} % from step "
                f"{prof.attack.steps} to {long_steps}; PSNR {float(psnr_short[b]):.2f} dB "
                f"({prof.attack.steps} steps) -> {float(psnr_long[b]):.2f} dB ({long_steps} steps)"
            )

        lr_check = step_size_check(
            models,
            val,
            lr_eps,
            s_lr,
            profile=prof,
            profile_lr=prof.attack.lr_rel,
            batch_size=self.batch_size,
        )
        for lr, sc in lr_check.scores.items():
            best = "  <- best" if lr == lr_check.best else ""
            print(f"  lr_rel {lr:g}: score {sc:.4f} on validation{best}")
        print(
            f"profile's lr_rel {prof.attack.lr_rel:g}: score {lr_check.profile_score:.4f}; "
            f"within 1 % of the best ({lr_check.best:g}): {'yes' if lr_check.ok else 'NO'}"
        )
        self.conv_eps, self.lr_rel_grid, self.lr_eps, self.n_val = (
            eps,
            lr_rel_grid,
            lr_eps,
            len(val),
        )
        self.conv_check, self.lr_check = conv_check, lr_check
        self.check_record = attack_check_record(
            conv_check, lr_check, eps=eps, lr_eps=lr_eps, lr_slices=val.slice_ids
        )
        write_json(
            run_dir(prof.name) / f"metrics_attack_checks{self.suffix}.json", self.check_record
        )
        return conv_check, lr_check

    def kept_checks(self) -> dict[str, Any] | None:
        """Without the checks (opt-in at quick): the record of the last run that did them,
        ``results/<profile>/metrics_attack_checks.json`` (committed), or ``None``."""
        kept = REPO_ROOT / "results" / self.prof.name / f"metrics_attack_checks{self.suffix}.json"
        self.check_record = read_json(kept) if kept.is_file() else None
        print(
            "attack checks not run (attack_checks = False); "
            + (f"their record: {kept.relative_to(REPO_ROOT)}" if self.check_record else "no record")
        )
        return self.check_record

    def save(self) -> tuple[Path, Path]:
        """``metrics_white_box.json`` (the summaries) and its per-slice CSV, in runs/."""
        out_dir = run_dir(self.prof.name)
        self.json_path = write_json(out_dir / f"metrics_white_box{self.suffix}.json", self.summary)
        rows = [r for ev in self.evals.values() for r in per_slice_rows(ev)]
        self.csv_path = write_csv(out_dir / f"metrics_white_box{self.suffix}_per_slice.csv", rows)
        print(
            "wrote",
            self.json_path.relative_to(REPO_ROOT),
            "and",
            self.csv_path.relative_to(REPO_ROOT),
        )
        return self.json_path, self.csv_path

    def check(self, figure_paths: Sequence[Path] = ()) -> None:
        """Assert what the notebook produced: figures, a finite JSON with every key, the
        budget for every pair, the short-vs-full comparison when the diffusion attack ran."""
        for p in figure_paths:
            assert p.is_file() and p.stat().st_size > 0, p
        saved = read_json(self.json_path)
        assert all_finite(saved), "non-finite values in metrics_white_box.json"
        assert set(saved) == set(self.evals)
        wanted = {
            "psnr_mean",
            "psnr_sd",
            "ssim_mean",
            "ssim_sd",
            "random_psnr_mean",
            "random_ssim_mean",
            "amplification",
        }
        for m, per_eps in saved.items():
            assert set(per_eps) == {eps_key(e) for e in self.evals[m].eps}, m
            for k, v in per_eps.items():
                assert wanted <= set(v), (m, k)
                for key in wanted - {"amplification"}:
                    assert math.isfinite(v[key]), (m, k, key)
                assert (v["amplification"] is None) == (float(k) == 0), (m, k)
                assert 0 < v["ssim_mean"] <= 1, (m, k)
        for m, res in self.attacks.items():  # the bound, for every eps and model
            assert (res.rel_norm <= res.eps.view(-1, 1) * (1 + 1e-6)).all(), m
            assert (res.delta[res.eps == 0] == 0).all(), m
        assert self.csv_path.stat().st_size > 0
        assert bool(self.proxy_rows) == self.run_diffusion  # the short-vs-full comparison ran
        print("all checks passed")
