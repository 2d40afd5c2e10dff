"""Training: one loop for the supervised models, one for the DDPM prior.

* ResUNet++ (L1 loss) and i-RIM (SSIM loss) learn ``y -> x`` from pairs made on the fly:
  ground-truth slice ``x`` -> ``y = M F x`` with the profile's equispaced mask.
* The DDPM learns the noise-prediction MSE on ground-truth images only (scaled to [-1, 1],
  random crops, random left-right flips), with EMA weights and a warm-up + cosine LR schedule.

Both are seeded, resumable (``runs/<profile>/checkpoints/<model>.state.pt``), validate at
intervals and keep the best checkpoint by validation SSIM (paper convention) as safetensors +
JSON sidecar (``<model>.safetensors``).  Command line::

    python -m mripkg.train --profile quick --model ddpm --max-minutes 60
    python -m mripkg.train --profile quick --all --ship     # retrain and ship weights/quick/
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim
from tqdm.auto import tqdm

from .. import metrics
from ..data import MRIDataset, Split, load_dataset
from ..io import atomic_write_json
from ..models.ddpm import DiffusionReconstructor, EpsUNet, NoiseSchedule, ddpm_loss
from ..paths import checkpoint_dir, shipped_weights_dir
from ..physics import MRIOperator, equispaced_mask
from ..profiles import Profile, cli_profile, progress_disabled, setup_torch
from .checkpoints import (
    CheckpointError,
    load_training_state,
    load_weights,
    save_training_state,
    save_weights,
)

MODEL_NAMES = ("resunetpp", "irim", "ddpm")


def build_model(name: str, profile: Profile) -> nn.Module:
    """A freshly initialised network of the profile's size (``ddpm``: the epsilon U-Net).

    The initialisation is seeded from the profile's seed and the model name (the global torch
    RNG state is left untouched)."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")
    with torch.random.fork_rng():
        torch.manual_seed(profile.seed * 1000 + MODEL_NAMES.index(name))
        return _build(name, profile)


def _build(name: str, profile: Profile) -> nn.Module:
    if name == "resunetpp":
        from ..models.resunetpp import ResUNetPP

        return ResUNetPP(profile.resunetpp)
    if name == "irim":
        from ..models.irim import IRIM

        return IRIM(profile.irim)
    return EpsUNet(profile.ddpm)


def model_config(name: str, net: nn.Module) -> dict[str, Any]:
    return json.loads(json.dumps(net.config_dict()))  # type: ignore[operator]


def model_settings(name: str, profile: Profile) -> Any:
    """The profile's config dataclass of a model (sizes and training schedule)."""
    return {"resunetpp": profile.resunetpp, "irim": profile.irim, "ddpm": profile.ddpm}[name]


def train_config(name: str, profile: Profile) -> dict[str, Any]:
    return json.loads(json.dumps(model_settings(name, profile).__dict__))


@dataclass
class TrainResult:
    """What a training run leaves: the best network, its checkpoint and the curves."""

    name: str
    net: nn.Module
    checkpoint: Path
    history: dict[str, list] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# batches


def _supervised_batch(
    split: Split, mask: Tensor, batch: int, g: torch.Generator
) -> tuple[Tensor, Tensor]:
    idx = torch.randint(0, len(split), (batch,), generator=g)
    x = split.images[idx]
    flip = torch.rand(batch, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    y = MRIOperator(mask).A(x)
    return y, x


def _crop_batch(split: Split, crop: int, batch: int, g: torch.Generator) -> Tensor:
    idx = torch.randint(0, len(split), (batch,), generator=g)
    x = split.images[idx]
    s = x.shape[-1]
    if crop < s:
        r = torch.randint(0, s - crop + 1, (batch,), generator=g)
        c = torch.randint(0, s - crop + 1, (batch,), generator=g)
        x = torch.stack([x[i, :, r[i] : r[i] + crop, c[i] : c[i] + crop] for i in range(batch)])
    flip = torch.rand(batch, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return 2 * x - 1


def _lr_at(step: int, base: float, warmup: int, total: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


# --------------------------------------------------------------------------------------------
# validation


@torch.no_grad()
def evaluate(recon, split: Split, mask: Tensor, batch: int = 8, **kwargs) -> dict[str, float]:
    """Mean PSNR / SSIM (paper convention) of ``recon`` on a split."""
    outs = []
    for i in range(0, len(split), batch):
        x = split.images[i : i + batch].to(mask.device)
        y = MRIOperator(mask).A(x)
        if kwargs:
            outs.append(recon(y, mask, slice_ids=list(range(i, i + len(x))), **kwargs))
        else:
            outs.append(recon(y, mask))
    out = torch.cat(outs)
    ref = split.images.to(out.device)
    return {
        "psnr": float(metrics.psnr(out, ref).mean()),
        "ssim": float(metrics.ssim(out, ref).mean()),
    }


def _val_subset(split: Split, n: int) -> Split:
    if len(split) <= n:
        return split
    idx = torch.linspace(0, len(split) - 1, n).round().long().tolist()
    return split.subset(idx)


# --------------------------------------------------------------------------------------------
# the loops


def _paths(name: str, profile: Profile, out_dir: Path | None) -> tuple[Path, Path, Path]:
    d = Path(out_dir) if out_dir is not None else checkpoint_dir(profile.name)
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{name}.safetensors", d / f"{name}.state.pt", d / f"{name}.history.json"


def train_model(
    name: str,
    profile: Profile,
    dataset: MRIDataset | None = None,
    out_dir: Path | None = None,
    resume: bool = True,
    max_minutes: float | None = None,
    progress: bool | None = None,
    steps: int | None = None,
    stop_at: int | None = None,
    log_progress: bool = False,
    resume_point: Path | None = None,
    on_mismatch: str = "error",
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train ``name`` (``resunetpp``, ``irim`` or ``ddpm``) with the profile's settings.

    Resumes from ``<model>.state.pt`` when present (and ``resume``); stops early, after saving
    its state, once ``max_minutes`` of wall time have passed or at step ``stop_at``.  Returns the
    best network so far.  Without a local state, a portable resume point
    (``weights/<profile>/<model>.resume.safetensors``, see :func:`export_resume_state`) is
    picked up.  The state records the target step count and the data set
    (:attr:`mripkg.data.MRIDataset.identity`); a state made for another step count or another
    data set is never resumed: ``on_mismatch="error"`` raises :class:`CheckpointError`,
    ``"fresh"`` warns and trains from step 0.  A resumed run says so (stdout).  ``device``
    (default: the CPU) is where the network trains; batches are drawn on the CPU from the
    seeded generator and moved there, so the draws do not depend on it.
    """
    if on_mismatch not in ("error", "fresh"):
        raise ValueError(f"on_mismatch must be 'error' or 'fresh', got {on_mismatch!r}")
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    setup_torch(profile)
    ds = dataset if dataset is not None else load_dataset(profile)
    data_id = ds.identity
    cfg = model_settings(name, profile)
    total = int(steps if steps is not None else cfg.train_steps)
    best_path, state_path, hist_path = _paths(name, profile, out_dir)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    mask = equispaced_mask(profile.image_size).to(dev)
    net = build_model(name, profile).to(dev)
    is_ddpm = name == "ddpm"
    if is_ddpm:  # channels_last: about 10 % faster convolutions on CPU (measured)
        net = net.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(net).eval() if is_ddpm else None
    if ema is not None:
        for p in ema.parameters():
            p.requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(profile.seed * 7919 + MODEL_NAMES.index(name))
    start, cpu_used = 0, 0.0
    adam_restart: int | None = None  # step at which Adam restarted without its moments
    history: dict[str, list] = {
        "step": [],
        "loss": [],
        "val_step": [],
        "val_psnr": [],
        "val_ssim": [],
    }
    best_ssim = -math.inf
    portable = resume_point
    if portable is None and out_dir is None:
        portable = shipped_weights_dir(profile.name) / f"{name}.resume.safetensors"
    if resume and not state_path.is_file() and portable is not None and portable.is_file():
        import_resume_state(name, profile, portable, state_path, net, opt)
    st = load_training_state(state_path) if resume and state_path.is_file() else None
    if st is not None:
        if st.get("profile") != profile.name or st.get("config") != model_config(name, net):
            raise CheckpointError(
                f"{state_path}: training state is from profile {st.get('profile')!r} with "
                f"another model config; delete it or pass resume=False"
            )
        problem = _state_mismatch(st, total, data_id)
        if problem and on_mismatch == "error":
            raise CheckpointError(
                f"{state_path}: training state was made {problem}; not resumed (train from "
                "scratch with --fresh / resume=False, or delete the state)"
            )
        if problem:
            warnings.warn(
                f"{state_path}: training state was made {problem}; training from step 0",
                stacklevel=2,
            )
            st = None
    if st is not None:
        if st.get("target_steps") is None or st.get("data") is None:
            warnings.warn(
                f"{state_path}: training state from an older mripkg records no target step "
                f"count or data set; resumed as one for {total} steps on {data_id}",
                stacklevel=2,
            )
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        if ema is not None:
            ema.load_state_dict(st["ema"])
        g.set_state(st["generator"])
        start, cpu_used = int(st["step"]), float(st["cpu_time_s"])
        history = json.loads(st["history"])
        best_ssim = float(st["best_ssim"])
        adam_restart = st.get("adam_restart_step")
        if start > 0:
            print(f"{name}: resuming from step {start} of {total} ({state_path})", flush=True)
    val = _val_subset(ds["val"], 4 if is_ddpm else 16)
    schedule = NoiseSchedule(cfg.num_timesteps, cfg.beta_min, cfg.beta_max) if is_ddpm else None
    val_every = cfg.val_every
    save_every = max(1, min(val_every, 500))
    t_wall0, t_cpu0 = time.time(), time.process_time()

    def save_state(step: int) -> None:
        save_training_state(
            state_path,
            {
                "profile": profile.name,
                "config": model_config(name, net),
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "ema": ema.state_dict() if ema is not None else {},
                "generator": g.get_state(),
                "step": step,
                "cpu_time_s": cpu_used + time.process_time() - t_cpu0,
                "history": json.dumps(history),
                "best_ssim": best_ssim,
                "adam_restart_step": adam_restart,
                "target_steps": total,
                "data": data_id,
            },
        )

    def validate(step: int) -> None:
        nonlocal best_ssim
        target = ema if ema is not None else net
        target.eval()
        if is_ddpm:
            rec = DiffusionReconstructor(target, steps=min(50, profile.ddpm.sampler_steps), seed=0)
            res = evaluate(rec.reconstruct, val, mask, batch=4, seed=0)
        else:
            res = evaluate(target, val, mask)
        target.train(target is net)
        history["val_step"].append(step)
        history["val_psnr"].append(res["psnr"])
        history["val_ssim"].append(res["ssim"])
        if res["ssim"] > best_ssim:
            best_ssim = res["ssim"]
            meta = {
                "profile": profile.name,
                "model": name,
                "config": model_config(name, target),
                "train_config": train_config(name, profile),
                "step": step,
                "seed": profile.seed,
                "threads": profile.threads,
                "cpu_time_s": round(cpu_used + time.process_time() - t_cpu0, 1),
                "val_psnr": res["psnr"],
                "val_ssim": res["ssim"],
                "val_slices": len(val),
                "weights": "ema" if is_ddpm else "raw",
                "target_steps": total,
                "data": data_id,
            }
            save_weights(best_path, target.state_dict(), meta)

    net.train()
    disable = progress_disabled(progress)
    bar = tqdm(range(start, total), initial=start, total=total, desc=name, disable=disable)
    step = start
    for step in bar:
        for pg in opt.param_groups:
            lr = _lr_at(step, cfg.lr, getattr(cfg, "warmup_steps", 100), total)
            if adam_restart is not None:  # re-warm after a restart without Adam's moments
                lr *= min(1.0, (step - adam_restart + 1) / REWARM_STEPS)
            pg["lr"] = lr
        if is_ddpm:
            x0 = _crop_batch(ds["train"], cfg.crop_size, cfg.batch_size, g).to(dev)
            x0 = x0.contiguous(memory_format=torch.channels_last)
            loss = ddpm_loss(net, x0, schedule, g)  # type: ignore[arg-type]
        else:
            y, x = _supervised_batch(ds["train"], mask.cpu(), cfg.batch_size, g)
            y, x = y.to(dev), x.to(dev)
            out = net(y, mask)
            if name == "irim":
                loss = 1 - tm_ssim(out, x, data_range=1.0)
            else:
                loss = F.l1_loss(out, x)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{name}: loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            with torch.no_grad():
                # EMA warm-up: a short horizon early on, the profile's decay later
                d = min(cfg.ema_decay, (1 + step) / (10 + step))
                for pe, p in zip(ema.parameters(), net.parameters(), strict=True):
                    pe.mul_(d).add_(p.detach(), alpha=1 - d)
        history["step"].append(step + 1)
        history["loss"].append(float(loss.detach()))
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        done = step + 1
        if done % val_every == 0 or done == total:
            validate(done)
        if done % save_every == 0 or done == total:
            save_state(done)
            if disable and log_progress:
                recent = history["loss"][-save_every:]
                print(
                    f"[{name}] step {done}/{total} loss {sum(recent) / len(recent):.4f} "
                    f"wall {time.time() - t_wall0:.0f} s",
                    flush=True,
                )
        out_of_time = max_minutes is not None and time.time() - t_wall0 > 60 * max_minutes
        if out_of_time or (stop_at is not None and done >= stop_at):
            save_state(done)
            break
    bar.close()
    if not best_path.is_file():
        validate(step + 1 if total > start else start)
    atomic_write_json(hist_path, history)
    state, meta = load_weights(best_path, profile.name, name)
    net.load_state_dict(state)
    net.eval()
    return TrainResult(name, net, best_path, history, meta)


def _state_mismatch(st: dict[str, Any], total: int, data_id: str) -> str:
    """Why a training state may not be resumed for ``total`` steps on ``data_id`` ("" if it
    may; a state without these records, from an older mripkg, may)."""
    problems = []
    if st.get("target_steps") is not None and int(st["target_steps"]) != total:
        problems.append(f"for {st['target_steps']} steps, not {total}")
    if st.get("data") is not None and st["data"] != data_id:
        problems.append(f"on data set {st['data']!r}, not {data_id!r}")
    return " and ".join(problems)


# --------------------------------------------------------------------------------------------
# portable resume state (for training that spans machines or sessions)

REWARM_STEPS = 100


def export_resume_state(
    name: str, profile: Profile, state_dir: Path | None = None, dst_dir: Path | None = None
) -> Path:
    """Write a compact, committable resume point of an interrupted run:
    ``weights/<profile>/<model>.resume.safetensors`` (raw and EMA weights, fp16) + JSON sidecar
    (step, CPU time, history, generator state).  Adam's moments are left out (they would double
    the size); :func:`train_model` restarts Adam from them with a 100-step LR re-warm-up."""
    _, state_path, _ = _paths(name, profile, state_dir)
    st = load_training_state(state_path)
    tensors = {f"model.{k}": v for k, v in st["model"].items()}
    tensors.update({f"ema.{k}": v for k, v in st["ema"].items()})
    meta = {
        "profile": profile.name,
        "model": name,
        "config": st["config"],
        "step": int(st["step"]),
        "cpu_time_s": float(st["cpu_time_s"]),
        "best_ssim": float(st["best_ssim"]),
        "history": st["history"],
        "generator": st["generator"].tolist(),
        "target_steps": st.get("target_steps"),
        "data": st.get("data"),
        "note": "resume point; Adam moments not included",
    }
    d = Path(dst_dir) if dst_dir is not None else shipped_weights_dir(profile.name)
    return save_weights(d / f"{name}.resume.safetensors", tensors, meta, fp16=True)


def import_resume_state(
    name: str, profile: Profile, path: Path, state_path: Path, net: nn.Module, opt
) -> None:
    """Turn a portable resume point into a local training state (fresh Adam moments)."""
    tensors, meta = load_weights(path, profile.name, name, model_config(name, net))
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    net.load_state_dict(model)
    save_training_state(
        state_path,
        {
            "profile": profile.name,
            "config": meta["config"],
            "model": model,
            "optimizer": opt.state_dict(),
            "ema": ema,
            "generator": torch.tensor(meta["generator"], dtype=torch.uint8),
            "step": int(meta["step"]),
            "cpu_time_s": float(meta["cpu_time_s"]),
            "history": meta["history"],
            "best_ssim": float(meta["best_ssim"]),
            "adam_restart_step": int(meta["step"]),
            "target_steps": meta.get("target_steps"),
            "data": meta.get("data"),
        },
    )


# --------------------------------------------------------------------------------------------
# loading shipped or trained weights


def load_model(name: str, profile: Profile, path: Path | None = None) -> tuple[nn.Module, dict]:
    """Build the profile's network and load verified weights (shipped ones by default)."""
    net = build_model(name, profile)
    p = (
        Path(path)
        if path is not None
        else shipped_weights_dir(profile.name) / f"{name}.safetensors"
    )
    state, meta = load_weights(p, profile.name, name, model_config(name, net))
    net.load_state_dict(state)
    net.eval()
    for q in net.parameters():
        q.requires_grad_(False)
    return net, meta


#: Profiles whose weights ship with mripkg: a missing file is an error, never a silent retrain.
SHIPPED_PROFILES = ("quick",)


def load_or_train(
    name: str, profile: Profile, dataset: MRIDataset | None = None, retrain: bool = False
) -> tuple[nn.Module, dict, dict]:
    """Shipped weights when they exist for this profile (and not ``retrain``), else train
    (``FileNotFoundError`` instead for a profile in :data:`SHIPPED_PROFILES`).

    Returns ``(network in eval mode, sidecar metadata, loss/validation history)``.
    """
    shipped = shipped_weights_dir(profile.name) / f"{name}.safetensors"
    if not retrain and shipped.is_file():
        if dataset is not None and dataset.identity != "embedded":
            warnings.warn(
                f"{name}: the shipped weights were trained on the embedded data, not on "
                f"{dataset.source}; set retrain=True to train on it",
                stacklevel=2,
            )
        net, meta = load_model(name, profile, shipped)
        hist_file = shipped.with_suffix(".history.json")
        hist = json.loads(hist_file.read_text()) if hist_file.is_file() else {}
        return net, meta, hist
    if not retrain and profile.name in SHIPPED_PROFILES:
        raise FileNotFoundError(
            f"shipped {name} weights of profile {profile.name!r} not found: {shipped} (they ship "
            f"in the checkout's weights/{profile.name}/ and in the package); reinstall mripkg, "
            "or pass retrain=True to train them here (hours on a CPU)"
        )
    res = train_model(name, profile, dataset, resume=not retrain, on_mismatch="fresh")
    for q in res.net.parameters():
        q.requires_grad_(False)
    return res.net, res.meta, res.history


def ship(name: str, profile: Profile, fp16: bool = True, note: str | None = None) -> Path:
    """Copy the best checkpoint of ``runs/<profile>/checkpoints`` to ``weights/<profile>/``,
    stored as fp16 when that changes validation PSNR by less than 0.01 dB; ``note`` (e.g. how
    the run deviated from the profile's recipe) goes into the JSON sidecar."""
    best, _, hist = _paths(name, profile, None)
    state, meta = load_weights(best, profile.name, name)
    dst = shipped_weights_dir(profile.name) / f"{name}.safetensors"
    use16 = False
    if fp16:
        ds = load_dataset(profile)
        mask = equispaced_mask(profile.image_size)
        val = _val_subset(ds["val"], 4 if name == "ddpm" else 16)
        net = build_model(name, profile).eval()
        scores = []
        for half in (False, True):
            sd = {
                k: (v.half().float() if half and v.is_floating_point() else v)
                for k, v in state.items()
            }
            net.load_state_dict(sd)
            if name == "ddpm":
                rec = DiffusionReconstructor(net, steps=min(50, profile.ddpm.sampler_steps))
                scores.append(evaluate(rec.reconstruct, val, mask, batch=4, seed=0)["psnr"])
            else:
                scores.append(evaluate(net, val, mask)["psnr"])
        use16 = abs(scores[0] - scores[1]) < 0.01
        meta["fp16_check_val_psnr"] = {"fp32": scores[0], "fp16": scores[1]}
    if note:
        meta["note"] = note
    save_weights(dst, state, meta, fp16=use16)
    if hist.is_file():
        shutil.copyfile(hist, dst.with_suffix(".history.json"))
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--model", choices=MODEL_NAMES, action="append")
    ap.add_argument("--all", action="store_true", help="train all three models")
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--steps", type=int, default=None, help="override the profile's step count")
    ap.add_argument("--fresh", action="store_true", help="ignore a saved training state")
    ap.add_argument("--ship", action="store_true", help="copy the best weights to weights/")
    ap.add_argument(
        "--export-resume",
        action="store_true",
        help="only write weights/<profile>/<model>.resume.safetensors from the saved state",
    )
    ap.add_argument(
        "--threads", type=int, default=None, help="override the profile's torch thread count"
    )
    args = ap.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        ap.error(f"--steps must be a positive integer, got {args.steps}")
    profile = cli_profile(args.profile)
    if args.threads is not None:
        profile = dataclasses.replace(profile, threads=args.threads)
    names = list(MODEL_NAMES) if args.all else (args.model or [])
    if not names:
        ap.error("name a --model or pass --all")
    if args.export_resume:
        for name in names:
            print(f"wrote {export_resume_state(name, profile)}")
        return 0
    for name in names:
        res = train_model(
            name,
            profile,
            resume=not args.fresh,
            max_minutes=args.max_minutes,
            steps=args.steps,
            log_progress=True,
        )
        print(
            f"{name}: best val PSNR {res.meta['val_psnr']:.2f} dB, SSIM {res.meta['val_ssim']:.4f}"
            f" at step {res.meta['step']} ({res.checkpoint})"
        )
        if args.ship:
            print(f"shipped {ship(name, profile)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
