"""Adaptive white-box attacks on the diffusion model's candidate defences (notebook 07).

A defence counts only against an attack that knows it.  The two candidate defences of
notebook 07 (:mod:`mripkg.experiments.open_questions`) change the sampler:

* ``tv_diffusion``: a TV proximal step on every reverse step's x0 prediction;
* ``diffusion_mean``: the mean of several sampler draws (an estimate of the posterior mean).

The adaptive attack maximises the Eq. 5 damage (``||g(y + M delta) - g(y)||^2`` under
``||M delta|| <= eps ||k||``, the same projected Adam, start, step size, precision and budget as
every other attack, :func:`mripkg.attacks.kspace_attack`) of a differentiable surrogate ``g``
of the *defended* sampler: the same sampler with ``surrogate_steps`` respaced steps, gradient
checkpointing, and an expectation over ``eot_samples`` fixed noise draws (EOT):

* ``diffusion`` / ``tv_diffusion``: ``g`` stacks the draws (the TV variant keeps its TV step),
  so the damage is the sum over draws (the expected damage of one draw);
* ``diffusion_mean``: ``g`` is the *mean* of the draws, so the gradient flows through the
  averaging and the attack targets the averaged output.

The surrogate's noise comes from its own seed (``profile seed + AdaptiveConfig.seed_offset``),
not from the evaluation's draws: the attacker knows the defence, not its random numbers.  The
perturbation is then evaluated with the full defended sampler (notebook 07's targets, fixed
evaluation noise) against the same equal-norm random control as the transferred perturbations
(:func:`mripkg.attacks.control.budget_controls`).  The undefended diffusion model is attacked the
same way, so that "adaptive drop of the defence < adaptive drop of the undefended model" is
judged like for like (:data:`DEFENCE_RULE`).

Convergence: the best iterate so far is kept at ``AdaptiveConfig.checkpoints`` and evaluated
with the full sampler too (damage against Adam steps).  Cost: CPU seconds per (slice, eps)
entry are recorded.  Each (defence, slice, eps) entry is cached on disk as soon as it is done
(``runs/<profile>/adaptive/``), so an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from ..attacks import (
    AttackResult,
    AttackSettings,
    EpsLike,
    as_eps,
    frozen,
    image_norm,
    item_seed,
    kspace_attack,
)
from ..attacks.kspace import _enforce_bound
from ..evaluation.scoring import Evaluation, evaluate_attack
from ..evaluation.selection import SliceSet, eps_key
from ..evaluation.stats import excess_over_control, mean_interval
from ..models.ddpm import DiffusionReconstructor, draw_sampler_noise
from ..paths import run_dir
from ..profiles import Profile

#: The attacked models: the undefended diffusion model and the two candidate defences.
DEFENCES = ("diffusion", "tv_diffusion", "diffusion_mean")

#: Fixed before any adaptive result was seen (issue 18, section 3).
DEFENCE_RULE = (
    "A candidate counts as a defence at an eps when its adaptive PSNR drop is below the "
    "undefended diffusion model's adaptive drop on the same slices: the paired difference "
    "(candidate minus undefended, dB, per slice) has a 95 % t interval entirely below 0 over "
    "at least 3 slices.  Otherwise it is 'not a defence under the adaptive attack'; a row "
    "without an adaptive result is 'transfer only'."
)


@dataclass(frozen=True)
class AdaptiveConfig:
    """Settings of the adaptive attack besides the Eq. 5 ones (steps, lr_rel, precision come
    from the profile through :class:`~mripkg.attacks.AttackSettings`).

    ``surrogate_steps``: respaced steps of the differentiated sampler; ``eot_samples``: noise
    draws of the expectation; ``steps``: Adam steps; ``checkpoints``: Adam steps at which the
    best iterate so far is kept (``steps`` is always one); ``seed_offset``: the surrogate's
    noise seed is the model's seed plus this."""

    surrogate_steps: int = 5
    eot_samples: int = 4
    steps: int = 8
    checkpoints: tuple[int, ...] = (4,)
    seed_offset: int = 1000

    def __post_init__(self) -> None:
        for what in ("surrogate_steps", "eot_samples", "steps"):
            v = getattr(self, what)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{what} must be an integer >= 1, got {v!r}")
        bad = [c for c in self.checkpoints if int(c) != c or not 0 <= c <= self.steps]
        if bad:
            raise ValueError(f"checkpoints must lie in [0, steps={self.steps}], got {bad}")

    @property
    def ckpts(self) -> list[int]:
        """Sorted checkpoints with ``steps`` last."""
        return sorted({int(c) for c in self.checkpoints} | {int(self.steps)})


def _check_defence(defence: str, diff: DiffusionReconstructor) -> None:
    if defence not in DEFENCES:
        raise ValueError(f"defence must be one of {DEFENCES}, got {defence!r}")
    if not isinstance(diff, DiffusionReconstructor):
        raise ValueError(f"{defence}: need a DiffusionReconstructor, got {type(diff).__name__}")
    if (defence == "tv_diffusion") != (diff.tv_weight > 0):
        raise ValueError(
            f"{defence}: the model's tv_weight is {diff.tv_weight:g} "
            "(tv_diffusion needs > 0, the others 0)"
        )


def surrogate(
    diff: DiffusionReconstructor,
    defence: str,
    slice_id: int,
    *,
    steps: int,
    samples: int,
    seed: int,
) -> Callable[[Tensor, Tensor], Tensor]:
    """The differentiable surrogate of a defended sampler for one slice:
    ``(y [B, 1, H, W], mask) -> [B, samples, H, W]`` (``diffusion``, ``tv_diffusion``: the
    draws side by side) or ``[B, 1, H, W]`` (``diffusion_mean``: their mean).  ``diff``'s
    sampler (with its TV step, if any) at ``steps`` respaced steps, the fixed noise of
    (``seed``, ``slice_id``, draw ``0 .. samples - 1``) for every row, all draws in one batch,
    each step checkpointed."""
    _check_defence(defence, diff)
    if int(samples) != samples or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    noises: dict[tuple[int, ...], tuple[Tensor, Tensor, Tensor]] = {}

    def g(y: Tensor, m: Tensor) -> Tensor:
        b = y.shape[0]
        key = tuple(y.shape)
        if key not in noises:  # draw-major: rows j * b .. j * b + b - 1 are draw j
            draws = [
                draw_sampler_noise(key, steps, seed, [slice_id] * b, sample=j)  # type: ignore[arg-type]
                for j in range(samples)
            ]
            noises[key] = (
                torch.cat([d[0] for d in draws]),
                torch.cat([d[1] for d in draws], dim=1),
                torch.cat([d[2] for d in draws], dim=1),
            )
        x = diff.reconstruct(
            y.repeat(samples, 1, 1, 1), m, steps=steps, noise=noises[key], grad_checkpoint=True
        )
        x = x.view(samples, b, *x.shape[2:])  # [S, B, H, W]
        if defence == "diffusion_mean":
            return x.mean(0).unsqueeze(1)
        return x.transpose(0, 1)

    return g


def objective_label(defence: str, diff: DiffusionReconstructor, cfg: AdaptiveConfig) -> str:
    """Cache label of the adaptive objective (defence, surrogate steps, EOT draws, surrogate
    seed, the sampler's tag including its TV step)."""
    label = (
        f"adaptive-{defence}-sur{cfg.surrogate_steps}-eot{cfg.eot_samples}"
        f"-seed{diff.seed + cfg.seed_offset}"
    )
    tag = diff.sampler_tag
    return f"{label}-{re.sub(r'[^A-Za-z0-9_.+-]', '_', tag)}" if tag else label


def adaptive_settings(
    base: AttackSettings, defence: str, diff: DiffusionReconstructor, cfg: AdaptiveConfig
) -> AttackSettings:
    """``base`` (e.g. :func:`~mripkg.evaluation.attack_runs.attack_settings` of the diffusion
    weights) with the adaptive objective's label and ``cfg.steps`` Adam steps."""
    _check_defence(defence, diff)
    return dataclasses.replace(base, objective=objective_label(defence, diff, cfg), steps=cfg.steps)


@dataclass
class AdaptiveResult:
    """Adaptive perturbations of one defence on ``B`` slices and ``E`` eps values.

    ``delta`` complex ``[K, E, B, 1, H, W]``: the best iterate so far at each checkpoint
    (``checkpoints[k]`` Adam steps; the last is the attack's result); ``history``
    ``[steps + 1, E, B]``: the surrogate damage of every iterate; ``cpu_s``, ``wall_s``
    ``[E, B]``: cost of each (slice, eps) entry (when it was computed)."""

    defence: str
    eps: list[float]
    slice_ids: list[int]
    checkpoints: list[int]
    delta: Tensor
    history: Tensor
    cpu_s: Tensor
    wall_s: Tensor
    settings: dict[str, Any]
    rel_norm: Tensor | None = None  # [K, E, B]: ||M delta|| / ||k|| of each checkpoint

    def at(self, k: int, data: SliceSet) -> AttackResult:
        """The perturbations at checkpoint index ``k`` as an :class:`AttackResult` over
        ``data`` (for :func:`mripkg.evaluation.scoring.evaluate_attack`)."""
        if data.slice_ids != self.slice_ids:
            raise ValueError(f"data slices {data.slice_ids} != {self.slice_ids}")
        delta = self.delta[k]
        m = data.mask.to(data.kspace.real.dtype)
        knorm = image_norm(data.kspace)
        steps = self.checkpoints[k]
        hist = self.history[: steps + 1]
        return AttackResult(
            eps=torch.tensor(self.eps, dtype=torch.float64),
            delta=delta,
            y_adv=data.y[None] + delta * m,
            rel_norm=image_norm(delta) / knorm[None].clamp_min(1e-300),
            best_damage=hist.max(0).values,
            best_step=hist.argmax(0),
            loss_history=hist,
            meta={"objective": self.settings.get("objective", ""), "checkpoint": steps},
        )


class _Recorder:
    """Passes calls to ``fn`` and keeps a detached copy of every input (the attack calls its
    model once on the clean measurement, then once per iterate)."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.fn = fn
        self.inputs: list[Tensor] = []

    def __call__(self, y: Tensor, m: Tensor) -> Tensor:
        self.inputs.append(y.detach().clone())
        return self.fn(y, m)


def _entry_path(
    root: Path, defence: str, digest: str, split: str, slice_id: int, eps: float
) -> Path:
    return root / defence / digest / split / f"{int(slice_id)}_eps{eps_key(eps)}.safetensors"


def kspace_digest(kspace: Tensor) -> str:
    """16 hex digits of the sha256 of one slice's k-space (which image a cached entry is
    for: the same split and slice id of another data folder is another image)."""
    import hashlib

    return hashlib.sha256(kspace.contiguous().numpy().tobytes()).hexdigest()[:16]


def _save_entry(path: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(tmp),
        metadata={"meta": json.dumps(meta)},
    )
    tmp.replace(path)


def _load_entry(path: Path, meta: dict[str, Any]) -> dict[str, Tensor] | None:
    """A cached entry, or ``None`` when missing, unreadable or made with other settings."""
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            stored = json.loads(f.metadata()["meta"])
        if any(stored.get(k) != v for k, v in meta.items()):
            return None
        out = load_file(str(path))
        out["_cpu_s"] = torch.tensor(float(stored.get("cpu_s", math.nan)))
        out["_wall_s"] = torch.tensor(float(stored.get("wall_s", math.nan)))
        return out
    except Exception:  # a corrupt or partial file is recomputed
        return None


def attack_entry(
    g: Callable[[Tensor, Tensor], Tensor],
    kspace: Tensor,
    mask: Tensor,
    eps: float,
    settings: AttackSettings,
    checkpoints: Sequence[int],
    slice_id: int,
    progress: bool | None = None,
) -> dict[str, Tensor]:
    """One (slice, eps) entry: :func:`~mripkg.attacks.kspace_attack` on the surrogate ``g``
    (``kspace`` complex ``[1, 1, H, W]``; start from :func:`~mripkg.attacks.item_seed` as in
    every cached attack).  Returns ``delta`` complex ``[K, 1, H, W]`` (the best iterate up to
    each checkpoint, within the budget), ``history`` ``[steps + 1]``, ``cpu_s``, ``wall_s``."""
    rec = _Recorder(g)
    gen = torch.Generator().manual_seed(item_seed(settings.seed, slice_id, float(eps)))
    c0, w0 = time.process_time(), time.perf_counter()
    res = kspace_attack(
        rec,
        kspace,
        mask,
        float(eps),
        steps=settings.steps,
        lr=settings.lr,
        generator=gen,
        complex_delta=settings.complex_delta,
        lr_rel=settings.lr_rel,
        init_scale=settings.init_scale,
        precision=settings.precision,
        progress=progress,
    )
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    hist = res.loss_history[:, 0, 0]
    if len(rec.inputs) != settings.steps + 2:
        raise RuntimeError(f"expected {settings.steps + 2} model calls, saw {len(rec.inputs)}")
    y = rec.inputs[0]
    budget = torch.tensor([float(eps)], dtype=torch.float64) * image_norm(kspace)
    deltas = []
    for c in checkpoints:
        t = int(hist[: c + 1].argmax())  # first best iterate up to step c
        deltas.append(_enforce_bound(rec.inputs[1 + t] - y, budget))
    delta = torch.cat(deltas)
    # the last checkpoint is the attack's result (y_adv - y equals it up to rounding)
    tol = 1e-4 * float(budget[0]) / math.sqrt(delta[-1].numel())
    if not torch.allclose(delta[-1:], res.delta[0], rtol=1e-4, atol=tol):
        best = int(res.best_step[0, 0])
        raise RuntimeError(f"checkpoint {checkpoints[-1]} does not match best step {best}")
    delta[-1:] = res.delta[0]
    return {
        "delta": delta,
        "history": hist.clone(),
        "cpu_s": torch.tensor(cpu),
        "wall_s": torch.tensor(wall),
    }


def run_adaptive(
    diff: DiffusionReconstructor,
    defence: str,
    data: SliceSet,
    eps: EpsLike,
    settings: AttackSettings,
    cfg: AdaptiveConfig,
    *,
    profile: Profile,
    root: Path | None = None,
    only_cached: bool = False,
    progress: bool | None = None,
) -> AdaptiveResult | None:
    """The adaptive attack on ``defence`` (``diff``: its full sampler, the TV variant for
    ``tv_diffusion``) for every (slice, eps) pair of ``data``, one pair at a time, each cached
    in ``root`` (default ``runs/<profile>/adaptive``) as soon as it is done.  ``settings``:
    :func:`adaptive_settings`.  ``only_cached``: return ``None`` instead of attacking when an
    entry is missing."""
    _check_defence(defence, diff)
    if settings.objective != objective_label(defence, diff, cfg) or settings.steps != cfg.steps:
        raise ValueError("settings do not match the defence and config (use adaptive_settings)")
    root = Path(root) if root is not None else run_dir(profile.name) / "adaptive"
    eps_l = as_eps(eps).tolist()
    if any(e <= 0 for e in eps_l):
        raise ValueError(f"adaptive eps must be > 0, got {eps_l}")
    ckpts = cfg.ckpts
    digest = settings.digest()
    meta_key = {"digest": digest, "checkpoints": ckpts, "slice_id": None, "eps": None}
    seed = diff.seed + cfg.seed_offset
    deltas, hists, cpus, walls = [], [], [], []
    todo = [(e, b) for b in range(len(data)) for e in eps_l]
    entries: dict[tuple[float, int], dict[str, Tensor]] = {}
    for e, b in todo:
        sid = data.slice_ids[b]
        meta = {
            **meta_key,
            "slice_id": sid,
            "eps": eps_key(e),
            "kspace": kspace_digest(data.kspace[b]),
        }
        hit = _load_entry(_entry_path(root, defence, digest, data.split, sid, e), meta)
        if hit is not None:
            entries[(e, b)] = hit
    missing = [p for p in todo if p not in entries]
    if missing and only_cached:
        return None
    with frozen(diff):
        for e, b in tqdm(missing, desc=f"adaptive {defence}", disable=progress is False):
            sid = data.slice_ids[b]
            g = surrogate(
                diff, defence, sid, steps=cfg.surrogate_steps, samples=cfg.eot_samples, seed=seed
            )
            out = attack_entry(
                g, data.kspace[b : b + 1], data.mask, e, settings, ckpts, sid, progress=False
            )
            meta = {
                **meta_key,
                "slice_id": sid,
                "eps": eps_key(e),
                "kspace": kspace_digest(data.kspace[b]),
                "cpu_s": float(out["cpu_s"]),
                "wall_s": float(out["wall_s"]),
                "settings": settings.to_dict(),
            }
            path = _entry_path(root, defence, digest, data.split, sid, e)
            _save_entry(
                path,
                {"delta": torch.view_as_real(out["delta"]), "history": out["history"]},
                meta,
            )
            loaded = _load_entry(path, {k: meta[k] for k in (*meta_key, "kspace")})
            entries[(e, b)] = loaded if loaded is not None else out
    for e in eps_l:
        row_d, row_h, row_c, row_w = [], [], [], []
        for b in range(len(data)):
            ent = entries[(e, b)]
            d = ent["delta"]
            row_d.append(d if torch.is_complex(d) else torch.view_as_complex(d.contiguous()))
            row_h.append(ent["history"])
            row_c.append(float(ent.get("_cpu_s", ent.get("cpu_s", torch.tensor(math.nan)))))
            row_w.append(float(ent.get("_wall_s", ent.get("wall_s", torch.tensor(math.nan)))))
        deltas.append(torch.stack(row_d, dim=1))  # [K, B, 1, H, W]
        hists.append(torch.stack(row_h, dim=1))  # [steps + 1, B]
        cpus.append(row_c)
        walls.append(row_w)
    delta_all = torch.stack(deltas, dim=1)  # [K, E, B, 1, H, W]
    return AdaptiveResult(
        rel_norm=image_norm(delta_all) / image_norm(data.kspace).clamp_min(1e-300),
        defence=defence,
        eps=eps_l,
        slice_ids=list(data.slice_ids),
        checkpoints=ckpts,
        delta=delta_all,
        history=torch.stack(hists, dim=1),  # [steps + 1, E, B]
        cpu_s=torch.tensor(cpus, dtype=torch.float64),
        wall_s=torch.tensor(walls, dtype=torch.float64),
        settings={**settings.to_dict(), "digest": digest},
    )


def evaluate_adaptive(
    target: Any,
    data: SliceSet,
    result: AdaptiveResult,
    controls: Tensor,
    convergence: bool = True,
) -> list[Evaluation | None]:
    """Evaluate every checkpoint's perturbations with the full defended sampler ``target``
    (a :class:`~mripkg.evaluation.targets.Target` or
    :class:`~mripkg.experiments.open_questions.MeanTarget`) against the equal-norm
    ``controls`` ``[E, B, 1, H, W]``; one :class:`Evaluation` per checkpoint (the last: the
    attack's result; ``convergence=False``: ``None`` for the others, which saves their
    full-sampler runs)."""
    n = len(result.checkpoints)
    return [
        evaluate_attack(target, data, result.at(k, data), source="adaptive", controls=controls)
        if convergence or k == n - 1
        else None
        for k in range(n)
    ]


def _interval(values: Tensor) -> dict[str, float]:
    m, lo, hi = mean_interval(values)
    return {"mean": m, "low": lo, "high": hi}


def summarize(
    evals: Mapping[str, Sequence[Evaluation | None]], results: Mapping[str, AdaptiveResult]
) -> dict[str, Any]:
    """``{defence: {eps: {...}}, "verdicts": {defence: {eps: ...}}}``: per defence and eps the
    adaptive PSNR drop of the final perturbations (mean and 95 % t interval over slices), the
    control's drop, the excess over the control, the drop at every checkpoint (convergence),
    the surrogate damage at every checkpoint relative to the last, and the cost; then, for each
    candidate, the paired difference to the undefended model's adaptive drop and the verdict of
    :data:`DEFENCE_RULE`."""
    out: dict[str, Any] = {}
    for d, evs in evals.items():
        res = results[d]
        final = evs[-1]
        assert final is not None
        rows: dict[str, Any] = {}
        for j, e in enumerate(final.eps):
            drop = final.psnr_drop[j]
            rand = final.psnr_drop_rand[j]  # type: ignore[index]
            hist = res.history[:, j]  # [steps + 1, B]
            best = torch.cummax(hist, 0).values  # [steps + 1, B]
            n = hist.shape[0] - 1
            curve = sorted({0, n, *(2**i for i in range(n.bit_length()) if 2**i <= n)})
            rows[eps_key(e)] = {
                "psnr_drop": _interval(drop),
                "psnr_drop_per_slice": [float(v) for v in drop],
                "control_drop": _interval(rand),
                "excess_over_control": excess_over_control(drop, rand),
                "ssim_drop": float(final.ssim_drop[j].mean()),
                "clean_psnr": float(final.psnr_clean.mean()),
                "convergence": {
                    "steps": list(res.checkpoints),
                    "full_sampler_drop": [
                        None if ev is None else float(ev.psnr_drop[j].mean()) for ev in evs
                    ],
                },
                # best surrogate damage up to each step, relative to the final (mean over slices)
                "surrogate_curve": {
                    str(c): float((best[c] / best[-1].clamp_min(1e-30)).mean()) for c in curve
                },
                "cpu_s_per_entry": float(res.cpu_s[j].mean()),
                "rel_norm_max": (None if res.rel_norm is None else float(res.rel_norm[:, j].max())),
            }
        steps = res.checkpoints[-1]
        out[d] = {
            "eps": rows,
            "slice_ids": res.slice_ids,
            "settings": res.settings,
            "cost": {
                "cpu_s_total": float(res.cpu_s.sum()),
                "wall_s_total": float(res.wall_s.sum()),
                "cpu_s_per_pair_step": float(res.cpu_s.mean() / steps),
                "pairs": int(res.cpu_s.numel()),
                "steps": steps,
            },
        }
    verdicts: dict[str, Any] = {}
    if "diffusion" in evals:
        base = evals["diffusion"][-1]
        assert base is not None
        for d in DEFENCES[1:]:
            if d not in evals:
                continue
            ev = evals[d][-1]
            assert ev is not None
            if ev.slice_ids != base.slice_ids or ev.eps != base.eps:
                raise ValueError(f"{d} and diffusion were attacked on other slices or eps")
            verdicts[d] = {}
            for j, e in enumerate(ev.eps):
                diffs = ev.psnr_drop[j] - base.psnr_drop[j]
                iv = _interval(diffs)
                counts = len(diffs) >= 3 and iv["high"] < 0
                verdicts[d][eps_key(e)] = {
                    "drop_minus_undefended": iv,
                    "defence": bool(counts),
                    "verdict": "defence" if counts else "not a defence under the adaptive attack",
                }
    out["verdicts"] = verdicts
    out["rule"] = DEFENCE_RULE
    return _json_safe(out)


def _json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (an interval from one slice) replaced by ``None``."""
    if isinstance(obj, Mapping):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def data_digest(data: SliceSet) -> str:
    """12 hex digits of the sha256 of the slices' images (which data the slice ids mean)."""
    import hashlib

    return hashlib.sha256(data.images.contiguous().numpy().tobytes()).hexdigest()[:12]


def result_key(
    profile: Profile,
    data: SliceSet,
    eps: Sequence[float],
    diff: DiffusionReconstructor,
    settings: Mapping[str, AttackSettings],
    cfg: AdaptiveConfig,
    tv_weight: float,
    tv_iters: int,
    mean_samples: int,
) -> dict[str, Any]:
    """What an adaptive result depends on: profile, slices (ids and a digest of their images),
    eps, the evaluation sampler (steps, seed, tag), the defences' settings, the adaptive
    config and the attack settings' digests per defence (they include the weights' sha256 and
    the surrogate).  Committed results are used only when this matches exactly."""
    key = {
        "profile": profile.name,
        "split": data.split,
        "slice_ids": list(data.slice_ids),
        "data_digest": data_digest(data),
        "eps": [float(e) for e in eps],
        "sampler": {
            "describe": diff.describe(),
            "steps": int(diff.steps),
            "seed": int(diff.seed),
            "tag": diff.sampler_tag,
        },
        "tv_diffusion": {"tv_weight": float(tv_weight), "tv_iters": int(tv_iters)},
        "diffusion_mean": {"samples": int(mean_samples)},
        "config": dataclasses.asdict(cfg),
        "settings_digest": {d: s.digest() for d, s in settings.items()},
        "weights_id": next(iter(settings.values())).model_id,
    }
    return json.loads(json.dumps(key))  # as it reads back from a file (lists, not tuples)


def key_matches(saved: Mapping[str, Any] | None, key: Mapping[str, Any]) -> bool:
    """Whether a saved result (its :func:`result_key`) answers ``key``: everything equal
    except that the saved eps may be a subset of the requested (the rest: transfer only)."""
    if not saved:
        return False
    rest = {k: v for k, v in key.items() if k != "eps"}
    if {k: v for k, v in saved.items() if k != "eps"} != rest:
        return False
    want = [float(e) for e in key["eps"]]
    return all(any(abs(float(e) - w) < 1e-9 for w in want) for e in saved.get("eps", []))


def experiment(
    diff: DiffusionReconstructor,
    base_settings: AttackSettings,
    data: SliceSet,
    eps: Sequence[float],
    *,
    targets: Mapping[str, Any],
    profile: Profile,
    tv_weight: float,
    tv_iters: int,
    mean_samples: int,
    cfg: AdaptiveConfig | None = None,
    controls_seed: int,
    run: bool = True,
    committed: Path | None = None,
    defences: Sequence[str] = DEFENCES,
    out: Path | None = None,
    convergence: bool = True,
    progress: bool | None = None,
) -> dict[str, Any] | None:
    """Notebook 07's adaptive columns in one call.

    Attacks (``run=True``; slice by slice, every defence, cached) the undefended diffusion
    model ``diff`` (its full sampler), its TV variant (``tv_weight``, ``tv_iters``) and the
    mean of ``mean_samples`` draws adaptively on ``data`` at ``eps``; evaluates every
    checkpoint with the full defended samplers ``targets`` (notebook 07's, e.g.
    :func:`mripkg.experiments.open_questions.defence_targets`) against
    :func:`mripkg.attacks.control.budget_controls` (seed ``controls_seed``: notebook 07's
    controls); returns :func:`summarize` with ``key`` (:func:`result_key`).

    ``run=False``: the committed result at ``committed`` when its key matches, else the
    cached attacks if every entry is cached, else ``None``.  A result computed here (not read
    from ``committed``) is written to ``out`` when given.  ``convergence=False``: the earlier
    checkpoints are not run through the full samplers."""
    from ..attacks.control import budget_controls

    cfg = cfg or AdaptiveConfig()
    eps = [float(e) for e in eps]
    if not defences or any(d not in DEFENCES for d in defences):
        raise ValueError(f"defences must be a non-empty subset of {DEFENCES}, got {defences}")
    every = {
        "diffusion": diff,
        "tv_diffusion": diff.variant(tv_weight=tv_weight, tv_iters=tv_iters),
        "diffusion_mean": diff,
    }
    models = {d: every[d] for d in DEFENCES if d in defences}
    settings = {d: adaptive_settings(base_settings, d, m, cfg) for d, m in models.items()}
    key = result_key(profile, data, eps, diff, settings, cfg, tv_weight, tv_iters, mean_samples)
    if not run and committed is not None and Path(committed).is_file():
        saved = json.loads(Path(committed).read_text(encoding="utf-8"))
        if key_matches(saved.get("key"), key):
            return {**saved, "source": str(committed)}
    if run:  # slice-major: an interrupted run leaves whole slices for every defence
        for sid in data.slice_ids:
            one = data.take([sid])
            for d, m in models.items():
                run_adaptive(m, d, one, eps, settings[d], cfg, profile=profile, progress=progress)
    results = {}
    for d, m in models.items():
        r = run_adaptive(
            m, d, data, eps, settings[d], cfg, profile=profile, only_cached=True, progress=progress
        )
        if r is None:
            return None
        results[d] = r
    controls = budget_controls(data.kspace, data.mask, data.slice_ids, eps, seed=controls_seed)
    evals = {
        d: evaluate_adaptive(targets[d], data, results[d], controls, convergence) for d in models
    }
    summary = summarize(evals, results)
    summary["key"] = key
    summary["source"] = "this run"
    if out is not None:
        from ..io import write_json

        write_json(out, summary)
    return summary


__all__ = [
    "DEFENCES",
    "data_digest",
    "experiment",
    "key_matches",
    "result_key",
    "DEFENCE_RULE",
    "AdaptiveConfig",
    "AdaptiveResult",
    "adaptive_settings",
    "attack_entry",
    "evaluate_adaptive",
    "objective_label",
    "run_adaptive",
    "summarize",
    "surrogate",
]
