"""A time-boxed run of the ``paper`` profile on one GPU: Eq. 5 numbers at 256 px first.

The paper profile (256 px, ResUNet++ 32-512 filters, i-RIM 8 steps, DDPM base 128 with 1000
sampler steps) needs GPU days to train in full.  This module delivers, within minutes of one
GPU, the white-box and transfer numbers of the two supervised models at 256 px, and then what
the rest would cost (the runbook: ``docs/paper-profile.md``)::

    python -m mripkg.paper_gpu --out runs/paper/gpu --train-seconds 45 --train-subjects 6 \
        --attack-slices 16 --no-costs                           # about 6 min on one H100 (est.)
    python -m mripkg.paper_gpu --models-from runs/paper/gpu     # later: all 32 slices, costs

Stages, in this order, each written to ``<out>/paper_gpu.json`` (atomically) as it finishes,
so a run cut off by its time limit keeps everything before:

1. **Data**: the Colin27 test slices (and the MNI training pseudo-subjects, a reduced set, only
   when the models are trained here).
2. **Models**: ResUNet++ and i-RIM loaded from an earlier run's output (``--models-from``) or
   trained for about ``--train-seconds`` each (the step count set from a measured burst of
   steps, so the learning-rate schedule runs its whole course).
3. **Attacks**, one source model at a time: clean PSNR / SSIM on the test slices, the white-box
   attack across the eps grid with the equal-norm random control, and the transfer of its
   perturbations to the other model and to zero filling.  Attack entries are cached per
   (slice, eps) in ``<out>/attacks``: a rerun continues where a cut-off one stopped.
4. **Costs**: parameters, training-step and inference times of the three networks at the
   paper's batch and size, the DDPM's 1000-step sampler time per slice and the time of every
   full training schedule (``--costs-from`` reuses an earlier run's; ``--no-costs`` skips).

The DDPM is only timed, not trained: its prior needs GPU days at this size (``make weights
PROFILE=paper NPROC=8``).  Without a GPU the same code runs on the CPU (``--profile smoke``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import models
from ..attacks.cache import AttackCache
from ..data import load_dataset, load_test_split
from ..fingerprint import stamp
from ..io import atomic_write_json
from ..paths import run_dir
from ..physics import MRIOperator, equispaced_mask
from ..profiles import Profile, cli_profile, get_profile, setup_torch, with_overrides

SUPERVISED = models.SUPERVISED


class OnDevice(nn.Module):
    """Run ``net`` on ``device`` for inputs and outputs that live elsewhere (the CPU):
    ``forward(y, mask)`` moves both there and the result back to ``y``'s device.  Gradients
    flow through the moves, so the attacks work unchanged."""

    def __init__(self, net: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.net = net
        self.device = device

    def forward(self, y: Tensor, mask: Tensor) -> Tensor:
        return self.net(y.to(self.device), mask.to(self.device)).to(y.device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], device: torch.device, repeat: int = 5) -> float:
    """Median seconds of ``fn`` after two warm-up calls."""
    for _ in range(2):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def reduced_profile(profile: Profile, n_train_subjects: int | None) -> Profile:
    """The profile with fewer training pseudo-subjects (and at most 2 val / test_id ones)."""
    if n_train_subjects is None:
        return profile
    if n_train_subjects < 1:
        raise ValueError(f"n_train_subjects must be >= 1, got {n_train_subjects}")
    data = dataclasses.replace(
        profile.data,
        n_train_subjects=n_train_subjects,
        n_val_subjects=min(2, profile.data.n_val_subjects),
        n_test_id_subjects=min(2, profile.data.n_test_id_subjects),
    )
    return dataclasses.replace(profile, data=data)


def measure_costs(
    profile: Profile,
    images: Tensor,
    device: torch.device,
    only: tuple[str, ...] = (*SUPERVISED, "ddpm"),
) -> dict[str, Any]:
    """Parameters, training-step and inference times of the three networks at the profile's
    size and batch; the DDPM's 1000-step sampler time per slice and full training time are
    extrapolated from the U-Net's forward and training-step times.  ``images [N, 1, H, W]``
    (N >= the batch size) on the CPU; ``only``: these networks."""
    from ..models.ddpm import NoiseSchedule, ddpm_loss
    from ..training.train import build_model, model_settings

    mask = equispaced_mask(profile.image_size).to(device)
    out: dict[str, Any] = {}
    for name in only:
        cfg = model_settings(name, profile)
        net = build_model(name, profile).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-5)
        xb = images[: cfg.batch_size].to(device)
        g = torch.Generator().manual_seed(0)
        row: dict[str, Any] = {
            "params": sum(p.numel() for p in net.parameters()),
            "batch": cfg.batch_size,
        }
        if name == "ddpm":
            net = net.to(memory_format=torch.channels_last)
            sched = NoiseSchedule(cfg.num_timesteps, cfg.beta_min, cfg.beta_max)
            x0 = (2 * xb - 1).contiguous(memory_format=torch.channels_last)

            def step(net=net, opt=opt, x0=x0, sched=sched, g=g) -> None:
                opt.zero_grad(set_to_none=True)
                ddpm_loss(net, x0, sched, g).backward()
                opt.step()

            t = torch.full((x0.shape[0],), 500, dtype=torch.long, device=device)
            with torch.no_grad():
                fwd = _time(lambda net=net, x0=x0, t=t: net(x0, t), device)
            row["unet_forward_s_per_batch"] = fwd
            row["sampler_steps"] = cfg.sampler_steps
            row["sampler_s_per_slice_est"] = fwd * cfg.sampler_steps / x0.shape[0]
        else:
            yb = MRIOperator(mask).A(xb)

            def step(net=net, opt=opt, yb=yb, xb=xb) -> None:
                opt.zero_grad(set_to_none=True)
                (net(yb, mask) - xb).abs().mean().backward()
                opt.step()

            with torch.no_grad():
                net.eval()
                row["recon_s_per_slice"] = (
                    _time(lambda net=net, yb=yb: net(yb, mask), device) / (yb.shape[0])
                )
                net.train()
        row["train_step_s"] = _time(step, device)
        row["train_steps_profile"] = cfg.train_steps
        row["train_hours_profile_est"] = row["train_step_s"] * cfg.train_steps / 3600
        out[name] = row
        del net, opt
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


# --------------------------------------------------------------------------------------------
# what the whole paper profile costs, from the measured unit costs


def stage_costs(costs: dict[str, Any], profile: Profile, gpus: int = 1) -> list[dict[str, Any]]:
    """Hours of each stage of the full paper profile on ``gpus`` GPUs, from the unit costs that
    :func:`measure_costs` measured on one GPU (``costs``, e.g. ``results/paper/paper_gpu.json``).

    Estimates, not measurements; what each assumes is in its ``basis``:

    * training: the profile's steps x the measured step time (global batch 16); on ``gpus``
      GPUs divided by ``gpus`` (DDP on shares of 16 / gpus images: a lower bound, since a
      share of 2 images keeps an H100 far from busy);
    * white-box attacks on a supervised model: ``n_slices x len(eps_grid)`` (slice, eps) pairs
      in batches of 72, ``steps`` Adam steps each; one step of a batch costs the training step
      scaled by 72 / 16 images; batches shared over the GPUs (``--shard``) in whole rounds;
    * transfer to the diffusion model: 1000-step reconstructions (measured U-Net forward time x
      steps) of ``diffusion_slices`` slices: clean, and per supervised source an attacked and a
      control input at each ``diffusion_eps`` plus the image route at ``route_eps``; the other
      ``diffusion_seeds - 1`` seeds at ``route_eps`` (clean, attacked and control per source);
      shared over the GPUs per slice;
    * white-box on the diffusion model: ``diffusion_whitebox_slices x diffusion_whitebox_eps``
      pairs in one batch, ``steps`` attack steps through a ``diffusion_steps``-step sampler with
      ``diffusion_eot_samples`` noise draws, a U-Net forward + backward taken as 3 forwards,
      then one 1000-step reconstruction per pair; shared over the GPUs by eps.
    """
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    a = profile.attack
    rows: list[dict[str, Any]] = []
    for name in (*SUPERVISED, "ddpm"):
        c = costs[name]
        h = c["train_step_s"] * c["train_steps_profile"] / 3600
        rows.append(
            {
                "stage": f"train {name}",
                "hours": h / gpus,
                "basis": f"{c['train_steps_profile']} steps x {c['train_step_s'] * 1e3:.0f} ms"
                + (f" / {gpus} GPUs" if gpus > 1 else ""),
            }
        )
    pairs = a.n_slices * len(a.eps_grid)
    batches = math.ceil(pairs / 72)
    for name in SUPERVISED:
        step = costs[name]["train_step_s"] * 72 / 16
        rounds = math.ceil(batches / gpus)
        rows.append(
            {
                "stage": f"white-box attack on {name}",
                "hours": rounds * a.steps * step / 3600,
                "basis": f"{pairs} pairs = {batches} batches of 72 x {a.steps} steps x "
                f"{step:.2f} s (est.)"
                + (f", {rounds} round(s) on {gpus} GPUs" if gpus > 1 else ""),
            }
        )
    d = costs["ddpm"]
    per_slice = d["unet_forward_s_per_batch"] * d["sampler_steps"] / d["batch"]
    n_src = len(SUPERVISED)
    recons = a.diffusion_slices * (1 + n_src * (2 * len(a.diffusion_eps) + 1))
    recons += (max(1, a.diffusion_seeds) - 1) * a.diffusion_slices * (1 + 2 * n_src)
    per_gpu = math.ceil(a.diffusion_slices / gpus) / a.diffusion_slices
    rows.append(
        {
            "stage": "transfer to the diffusion model",
            "hours": recons * per_gpu * per_slice / 3600,
            "basis": f"{recons} reconstructions x {per_slice:.1f} s (1000 steps, est.)"
            + (f", slices over {gpus} GPUs" if gpus > 1 else ""),
        }
    )
    if a.diffusion_whitebox:
        n_eps = len(a.diffusion_whitebox_eps)
        wb_pairs = a.diffusion_whitebox_slices * n_eps
        per_gpu_eps = math.ceil(n_eps / gpus)
        share = wb_pairs * per_gpu_eps / n_eps
        attack = (
            a.steps
            * a.diffusion_eot_samples
            * a.diffusion_steps
            * 3
            * d["unet_forward_s_per_batch"]
            * share
            / d["batch"]
        )
        rows.append(
            {
                "stage": "white-box attack on the diffusion model",
                "hours": (attack + share * per_slice) / 3600,
                "basis": f"{wb_pairs} pairs x {a.steps} steps x {a.diffusion_eot_samples} draws "
                f"x {a.diffusion_steps} sampler steps (est.)"
                + (f", eps over {gpus} GPUs" if gpus > 1 else ""),
            }
        )
    return rows


def plan_markdown(results: Path, gpus: tuple[int, ...] = (1, 8)) -> str:
    """The runbook's cost table: :func:`stage_costs` of the paper profile from the unit costs
    in ``results`` (a ``paper_gpu.json``) on each number of GPUs, in hours."""
    from ..profiles import PAPER

    m = json.loads(Path(results).read_text())
    tables = {g: stage_costs(m["costs"], PAPER, g) for g in gpus}
    head = "| stage | " + " | ".join(f"{g} GPU{'s' if g > 1 else ''}" for g in gpus)
    lines = [head + " | basis (1 GPU) |", "|---" * (len(gpus) + 2) + "|"]
    for i, row in enumerate(tables[gpus[0]]):
        cells = [_hours(tables[g][i]["hours"]) for g in gpus]
        lines.append(f"| {row['stage']} | " + " | ".join(cells) + f" | {row['basis']} |")
    totals = [_hours(sum(r["hours"] for r in tables[g])) for g in gpus]
    lines.append("| **all stages** | " + " | ".join(totals) + " | |")
    return f"Unit costs measured on {m['device']} (torch {m['torch']}).\n\n" + "\n".join(lines)


def _hours(h: float) -> str:
    return f"{h:.1f} h" if h >= 1 else f"{h * 60:.0f} min"


def _mean(v: Tensor) -> float:
    return float(v.double().mean())


def _se(v: Tensor) -> float:
    v = v.double().flatten()
    return float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")


def attack_tables(
    profile: Profile,
    nets: dict[str, nn.Module],
    metas: dict[str, dict[str, Any]],
    test: Any,
    device: torch.device,
    cache_dir: Path,
    batch_size: int,
    progress: bool | None = None,
    on_source: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Clean metrics, white-box curves with the equal-norm control, and transfer between the
    supervised models on the test split (the profile's eps grid, attack steps and seed).
    ``on_source(source, tables so far)`` is called after each source model's white-box and
    transfer rows are in (to write them before the next source starts)."""
    from ..attacks.control import budget_controls
    from ..evaluation.attack_runs import attack_settings, run_whitebox
    from ..evaluation.scoring import evaluate_attack
    from ..evaluation.selection import slice_set
    from ..evaluation.targets import Target
    from ..models.base import ZeroFilled

    mask = equispaced_mask(profile.image_size)
    data = slice_set(test, mask, profile.attack.n_slices)
    eps = list(profile.attack.eps_grid)
    cache = AttackCache(profile, root=cache_dir)
    wrapped = {k: OnDevice(v.eval(), device) for k, v in nets.items()}
    targets = {k: Target(k, w, mask, batch_size=batch_size) for k, w in wrapped.items()}
    targets["zero_filled"] = Target("zero_filled", ZeroFilled(), mask, batch_size=batch_size)
    controls = budget_controls(data.kspace, mask, data.slice_ids, eps, profile.seed)
    out: dict[str, Any] = {"eps": eps, "slices": len(data), "whitebox": {}, "transfer": {}}
    for source, model in wrapped.items():
        t0 = time.perf_counter()
        settings = attack_settings(profile, metas.get(source))
        result = run_whitebox(
            model,
            source,
            data,
            eps,
            settings,
            profile=profile,
            batch_size=batch_size,
            cache=cache,
            progress=progress,
        )
        attack_s = time.perf_counter() - t0
        print(
            f"[paper_gpu] {source}: {len(data)} slices x {len(eps)} eps in {attack_s:.0f} s",
            flush=True,
        )
        budget_ok = bool((result.rel_norm <= result.eps.view(-1, 1) * (1 + 1e-6) + 1e-12).all())
        for target_name, target in targets.items():
            ev = evaluate_attack(target, data, result, source=source, controls=controls)
            rows = {
                "psnr_clean": _mean(ev.psnr_clean),
                "ssim_clean": _mean(ev.ssim_clean),
                "psnr": [_mean(ev.psnr[j]) for j in range(len(eps))],
                "psnr_random": [_mean(ev.psnr_rand[j]) for j in range(len(eps))],  # type: ignore[index]
                "ssim": [_mean(ev.ssim[j]) for j in range(len(eps))],
                "excess_drop_at_max_eps": _mean(ev.psnr_rand[-1] - ev.psnr[-1]),  # type: ignore[index]
                "excess_drop_se": _se(ev.psnr_rand[-1] - ev.psnr[-1]),  # type: ignore[index]
            }
            if target_name == source:
                rows["attack_s"] = attack_s
                rows["budget_respected"] = budget_ok
                out["whitebox"][source] = rows
            else:
                out["transfer"][f"{source}->{target_name}"] = rows
        if on_source is not None:
            on_source(source, out)
    return out


def load_models(
    profile: Profile, models_from: Path, device: torch.device
) -> tuple[dict[str, nn.Module], dict[str, dict[str, Any]]]:
    """The supervised networks of an earlier run: ``<models_from>/<name>.safetensors`` or
    ``<models_from>/checkpoints/<name>.safetensors`` (verified against the profile's config)."""
    from ..training.train import load_model

    nets, metas = {}, {}
    for name in SUPERVISED:
        cands = [Path(models_from) / f"{name}.safetensors"]
        cands.append(Path(models_from) / "checkpoints" / f"{name}.safetensors")
        path = next((c for c in cands if c.is_file()), None)
        if path is None:
            raise FileNotFoundError(
                f"no {name} weights in {models_from} (looked for "
                f"{', '.join(str(c) for c in cands)})"
            )
        net, meta = load_model(name, profile, path)
        nets[name], metas[name] = net.to(device), {**meta, "loaded_from": str(path)}
    return nets, metas


def run(
    out_dir: Path,
    profile_name: str = "paper",
    train_seconds: float = 120.0,
    n_train_subjects: int | None = 16,
    device: str | None = None,
    batch_size: int = 72,
    log: Callable[[str], None] = print,
    attack_slices: int | None = None,
    costs_from: Path | None = None,
    models_from: Path | None = None,
    costs: bool = True,
) -> dict[str, Any]:
    """The stages, attack numbers first (module doc), each written to
    ``<out_dir>/paper_gpu.json`` as it finishes; returns the same dict.

    1. the test split; 2. the two supervised models, loaded from ``models_from`` (an earlier
    run's output folder) or trained for ``train_seconds`` each (the step count set from a short
    measured burst of steps); 3. the attacks, one source model at a time; 4. the costs of all
    three networks (``costs_from``: taken from an earlier ``paper_gpu.json`` of the same profile
    and device; ``costs=False``: skipped).  ``attack_slices``: attack that many test slices
    instead of the profile's."""
    if train_seconds <= 0:
        raise ValueError(f"train_seconds must be > 0, got {train_seconds}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    profile = reduced_profile(get_profile(profile_name), n_train_subjects)
    if attack_slices:
        profile = with_overrides(profile, n_slices=attack_slices)
    setup_torch(profile)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    res_path = out_dir / "paper_gpu.json"
    res: dict[str, Any] = {
        "profile": profile.name,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "train_seconds_per_model": train_seconds,
        "data": dataclasses.asdict(profile.data),
        "order": "attacks first: data, models, attacks (per source), costs",
        "stages_done": [],
        "stage_s": {},
    }
    t_start = time.perf_counter()
    t_stage = [t_start]

    def save(stage: str) -> None:
        now = time.perf_counter()
        res["stages_done"].append(stage)
        res["stage_s"][stage] = now - t_stage[0]
        res["elapsed_s"] = now - t_start
        t_stage[0] = now
        atomic_write_json(res_path, stamp(res))
        log(f"[paper_gpu] {stage} done ({now - t_start:.0f} s)")

    earlier = json.loads(Path(costs_from).read_text()) if costs_from else None
    if earlier is not None and (
        earlier.get("profile") != profile.name or earlier.get("device") != res["device"]
    ):
        raise ValueError(
            f"{costs_from} holds costs of {earlier.get('profile')!r} on "
            f"{earlier.get('device')!r}, not {profile.name!r} on {res['device']!r}"
        )

    # 1. data: the test split alone when the models come from an earlier run
    test = load_test_split(profile)
    ds = None if models_from is not None else load_dataset(profile)
    res["data_s"] = time.perf_counter() - t_start
    res["slices"] = {"test": len(test)}
    if ds is not None:
        res["slices"] = {k: len(ds[k]) for k in ("train", "val", "test", "test_id")}
    save("data")

    # 2. models
    nets: dict[str, nn.Module] = {}
    metas: dict[str, dict[str, Any]] = {}
    res["training"] = {}
    if models_from is not None:
        nets, metas = load_models(profile, Path(models_from), dev)
        res["models_from"] = str(models_from)
        res["training"] = {
            k: {
                "loaded_from": m["loaded_from"],
                "steps_done": m.get("step"),
                "best_val_psnr": m.get("val_psnr"),
                "best_val_ssim": m.get("val_ssim"),
                "best_step": m.get("step"),
            }
            for k, m in metas.items()
        }
        save("models loaded")
    else:
        assert ds is not None
        for name in SUPERVISED:
            nets[name], metas[name], res["training"][name] = _train_briefly(
                name, profile, ds, dev, train_seconds, out_dir
            )
            save(f"train {name}")

    # 3. attacks, written after each source model
    def on_source(source: str, tables: dict[str, Any]) -> None:
        res["attacks"] = tables
        save(f"attack {source}")

    attack_tables(
        profile,
        nets,
        metas,
        test,
        dev,
        out_dir / "attacks",
        batch_size,
        progress=False,
        on_source=on_source,
    )

    # 4. costs
    if earlier is not None:
        res["costs"] = earlier["costs"]
        res["costs_from"] = str(costs_from)
        save("costs")
    elif costs:
        train = ds["train"].images if ds is not None else None
        images = train if train is not None and len(train) >= 16 else _cost_images(test, 16)
        res["costs"] = measure_costs(profile, images, dev)
        save("costs")
    res["total_s"] = time.perf_counter() - t_start
    atomic_write_json(res_path, stamp(res))
    return res


def _cost_images(test: Any, n: int) -> Tensor:
    """``n`` images for the cost measurement when no training split was loaded: the test
    slices repeated (only shapes and sizes matter for the timings)."""
    imgs = test.images
    reps = -(-n // len(imgs))
    return imgs.repeat(reps, 1, 1, 1)[:n]


def _train_briefly(
    name: str,
    profile: Profile,
    ds: Any,
    dev: torch.device,
    train_seconds: float,
    out_dir: Path,
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Train ``name`` for about ``train_seconds``: the step count comes from the median time
    of a few measured steps (so the LR schedule runs its whole course)."""
    from ..training.train import train_model

    step_s = measure_costs(profile, ds["train"].images, dev, only=(name,))[name]["train_step_s"]
    steps = max(10, int(train_seconds / (step_s * 1.15)))  # 15 % for validation
    t0 = time.perf_counter()
    tr = train_model(
        name,
        profile,
        ds,
        out_dir=out_dir / "checkpoints",
        resume=False,
        steps=steps,
        max_minutes=1.5 * train_seconds / 60,
        progress=False,
        log_progress=True,
        device=dev,
    )
    hist = tr.history
    row = {
        "train_step_s": step_s,
        "steps_planned": steps,
        "steps_done": hist["step"][-1] if hist.get("step") else 0,
        "wall_s": time.perf_counter() - t0,
        "best_val_psnr": tr.meta.get("val_psnr"),
        "best_val_ssim": tr.meta.get("val_ssim"),
        "best_step": tr.meta.get("step"),
        "val_psnr_curve": list(zip(hist["val_step"], hist["val_psnr"], strict=True)),
    }
    return tr.net.to(dev), tr.meta, row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--out", type=Path, default=None, help="default: runs/<profile>/gpu")
    ap.add_argument("--train-seconds", type=float, default=60.0)
    ap.add_argument("--train-subjects", type=int, default=8)
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--batch-size", type=int, default=72, help="(slice, eps) pairs per attack")
    ap.add_argument("--attack-slices", type=int, default=0, help="0: the profile's test slices")
    ap.add_argument(
        "--models-from",
        type=Path,
        default=None,
        help="load ResUNet++ and i-RIM from an earlier run's output (its checkpoints/) "
        "instead of training them",
    )
    ap.add_argument(
        "--costs-from",
        type=Path,
        default=None,
        help="take the costs from an earlier paper_gpu.json",
    )
    ap.add_argument("--no-costs", action="store_true", help="skip the cost stage (the last)")
    ap.add_argument(
        "--plan",
        type=Path,
        default=None,
        help="only print the full paper profile's stage costs on 1 and 8 GPUs from a "
        "paper_gpu.json (results/paper/paper_gpu.json)",
    )
    args = ap.parse_args(argv)
    if args.plan is not None:
        print(plan_markdown(args.plan))
        return 0
    cli_profile(args.profile)  # an unknown name: one line, exit 2
    for flag, value in (
        ("--train-seconds", args.train_seconds),
        ("--train-subjects", args.train_subjects),
        ("--batch-size", args.batch_size),
    ):
        if not value > 0:
            ap.error(f"{flag} must be positive, got {value}")
    if args.attack_slices < 0:
        ap.error(f"--attack-slices must be >= 0 (0: the profile's), got {args.attack_slices}")
    if args.costs_from is not None and not args.costs_from.is_file():
        ap.error(f"--costs-from {args.costs_from}: no such file")
    out = args.out if args.out is not None else run_dir(args.profile) / "gpu"
    res = run(
        out,
        args.profile,
        args.train_seconds,
        args.train_subjects,
        args.device,
        args.batch_size,
        attack_slices=args.attack_slices or None,
        costs_from=args.costs_from,
        models_from=args.models_from,
        costs=not args.no_costs,
    )
    print(f"wrote {out / 'paper_gpu.json'} in {res['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
