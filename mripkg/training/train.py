"""Training: one loop for the supervised models, one for the DDPM prior.

* :func:`train_supervised`: ResUNet++ (L1 loss) and i-RIM (SSIM loss) learn ``y -> x`` from
  pairs made on the fly: ground-truth slice ``x`` -> ``y = M F x`` with the profile's
  equispaced mask.
* :func:`train_ddpm`: the DDPM learns the noise-prediction MSE on ground-truth images only
  (scaled to [-1, 1], random crops, random left-right flips), with EMA weights
  (``torch.optim.swa_utils.AveragedModel``).

Both share one session (:class:`_Session`): Adam with a warm-up + cosine LR schedule
(:class:`WarmupCosineLR`), seeded draws, a resumable state
(``runs/<profile>/checkpoints/<model>.state.pt``), validation at intervals and the best
checkpoint by validation SSIM (paper convention) as safetensors + JSON sidecar
(``<model>.safetensors``).  Under torchrun each rank trains its share of the global batch with
DistributedDataParallel (:mod:`mripkg.distributed`).  Command line::

    python -m mripkg.train --profile quick --model ddpm --max-minutes 60
    python -m mripkg.train --profile quick --all --ship     # retrain and ship weights/quick/
    torchrun --standalone --nproc_per_node=8 -m mripkg.train --profile paper --all --tf32
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim
from tqdm.auto import tqdm

from .. import metrics
from ..data import MRIDataset, Split, load_dataset
from ..io import atomic_write_json
from ..models import SUPERVISED
from ..models.ddpm import (
    DiffusionReconstructor,
    EpsUNet,
    NoiseSchedule,
    ddpm_draw,
    ddpm_loss_at,
)
from ..paths import checkpoint_dir, shipped_weights_dir
from ..physics import MRIOperator, equispaced_mask
from ..profiles import Profile, cli_profile, progress_disabled, setup_torch
from . import distributed
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
#
# Every rank draws the whole global batch from the same seeded generator and builds only its
# share of the rows (``rows``, see :meth:`.distributed.Ranks.share`); one process takes all
# rows, so its draws and batches are those of a run without ranks, bit for bit.

ALL_ROWS = slice(None)


def _supervised_batch(
    split: Split, mask: Tensor, batch: int, g: torch.Generator, rows: slice = ALL_ROWS
) -> tuple[Tensor, Tensor]:
    """Rows ``rows`` of a global batch of ``batch`` training pairs: k-space ``y [b, 1, H, W]``
    (complex, masked) and the ground truth ``x [b, 1, H, W]`` (randomly flipped left-right)."""
    idx = torch.randint(0, len(split), (batch,), generator=g)
    flip = torch.rand(batch, generator=g) < 0.5
    x = split.images[idx[rows]]
    x = torch.where(flip[rows, None, None, None], x.flip(-1), x)
    y = MRIOperator(mask).A(x)
    return y, x


def _crop_batch(
    split: Split, crop: int, batch: int, g: torch.Generator, rows: slice = ALL_ROWS
) -> Tensor:
    """Rows ``rows`` of a global batch of ``batch`` random ``crop`` x ``crop`` crops (randomly
    flipped), scaled to [-1, 1]: ``[b, 1, crop, crop]``."""
    idx = torch.randint(0, len(split), (batch,), generator=g)
    s = split.images.shape[-1]
    if crop < s:
        r = torch.randint(0, s - crop + 1, (batch,), generator=g)
        c = torch.randint(0, s - crop + 1, (batch,), generator=g)
    flip = torch.rand(batch, generator=g) < 0.5
    keep = range(batch)[rows]
    x = split.images[idx[rows]]
    if crop < s:
        x = torch.stack(
            [x[j, :, r[i] : r[i] + crop, c[i] : c[i] + crop] for j, i in enumerate(keep)]
        )
    x = torch.where(flip[rows, None, None, None], x.flip(-1), x)
    return 2 * x - 1


def _lr_at(step: int, base: float, warmup: int, total: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


class WarmupCosineLR(torch.optim.lr_scheduler.LRScheduler):
    """The profiles' schedule: linear warm-up over ``warmup`` steps, then a cosine from the base
    LR down to 10 % of it at step ``total``; after ``restart`` (Adam restarted without its
    moments, see :func:`import_resume_state`) a further linear re-warm-up over
    :data:`REWARM_STEPS`.  Closed form in the step, so a run resumed at step ``k`` (built with
    ``last_epoch=k - 1``) continues exactly; written as a scheduler rather than
    :class:`~torch.optim.lr_scheduler.LambdaLR` because ``base * (k + 1) / warmup`` and
    ``base * ((k + 1) / warmup)`` differ in the last bit at some steps, and the shipped weights'
    recipe is the former."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup: int,
        total: int,
        restart: int | None = None,
        last_epoch: int = -1,
    ) -> None:
        self.warmup, self.total, self.restart = int(warmup), int(total), restart
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step: int, base: float) -> float:
        lr = _lr_at(step, base, self.warmup, self.total)
        if self.restart is not None:
            lr *= min(1.0, (step - self.restart + 1) / REWARM_STEPS)
        return lr

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return [self.lr_at(self.last_epoch, float(b)) for b in self.base_lrs]


def ema_with_warmup(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """``multi_avg_fn`` for :class:`torch.optim.swa_utils.AveragedModel`: at its ``n``-th
    average the EMA keeps ``d = min(decay, n / (n + 9))`` of itself (a short horizon early
    on).  ``get_ema_multi_avg_fn`` has no warm-up and updates by ``lerp``, which rounds
    differently from the ``d * ema + (1 - d) * w`` the shipped prior was trained with."""

    @torch.no_grad()
    def update(ema: list[Tensor], params: list[Tensor], n_averaged: Tensor) -> None:
        n = int(n_averaged)
        d = min(decay, n / (n + 9))
        for pe, p in zip(ema, params, strict=True):
            pe.mul_(d).add_(p, alpha=1 - d)

    return update


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
# the loops: one session (state, schedule, checkpoints, validation), two ways to make a loss


def _paths(name: str, profile: Profile, out_dir: Path | None) -> tuple[Path, Path, Path]:
    d = Path(out_dir) if out_dir is not None else checkpoint_dir(profile.name)
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{name}.safetensors", d / f"{name}.state.pt", d / f"{name}.history.json"


PRECISIONS = ("fp32", "bf16")


class _Session:
    """What both training loops share: the network and its DDP wrapper, Adam and the LR
    schedule, the seeded generator, the resumable state (read by every rank, written by rank
    0), validation and the best checkpoint.  The loops supply the loss of one step."""

    def __init__(
        self,
        name: str,
        profile: Profile,
        ds: MRIDataset,
        out_dir: Path | None,
        resume: bool,
        steps: int | None,
        resume_point: Path | None,
        on_mismatch: str,
        device: str | torch.device | None,
        precision: str,
    ) -> None:
        self.ranks = distributed.current()
        self.name, self.profile, self.ds = name, profile, ds
        self.cfg = model_settings(name, profile)
        self.total = int(steps if steps is not None else self.cfg.train_steps)
        self.rows = self.ranks.share(self.cfg.batch_size, f"batch of {name}")
        self.best_path, self.state_path, self.hist_path = _paths(name, profile, out_dir)
        if device is not None:
            self.dev = torch.device(device)
        else:
            self.dev = distributed.default_device(self.ranks)
        self.autocast = (
            torch.autocast(self.dev.type, dtype=torch.bfloat16)
            if precision == "bf16"
            else contextlib.nullcontext()
        )
        self.precision = precision
        self.mask = equispaced_mask(profile.image_size).to(self.dev)
        self.is_ddpm = name == "ddpm"
        net = build_model(name, profile).to(self.dev)
        if self.is_ddpm:  # channels_last: about 10 % faster convolutions on CPU (measured)
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.ema: AveragedModel | None = None
        if self.is_ddpm:
            self.ema = AveragedModel(net, multi_avg_fn=ema_with_warmup(self.cfg.ema_decay))
            self.ema.update_parameters(net)  # the first average copies the initial weights
            self.ema.module.eval()
            for p in self.ema.parameters():
                p.requires_grad_(False)
        self.opt = torch.optim.Adam(net.parameters(), lr=self.cfg.lr)
        self.g = torch.Generator().manual_seed(profile.seed * 7919 + MODEL_NAMES.index(name))
        self.start, self.cpu_used = 0, 0.0
        self.adam_restart: int | None = None  # step at which Adam restarted without moments
        self.history: dict[str, list] = {
            "step": [],
            "loss": [],
            "val_step": [],
            "val_psnr": [],
            "val_ssim": [],
        }
        self.best_ssim = -math.inf
        self._resume(resume, resume_point, out_dir, on_mismatch)
        for group in self.opt.param_groups:  # the schedule's base LR, also for old states
            group["initial_lr"] = self.cfg.lr
        self.sched = WarmupCosineLR(
            self.opt,
            getattr(self.cfg, "warmup_steps", 100),
            self.total,
            self.adam_restart,
            last_epoch=self.start - 1,
        )
        self.model = distributed.wrap(net, self.ranks, self.dev, name)
        self.val = _val_subset(ds["val"], 4 if self.is_ddpm else 16)
        self.t_wall0, self.t_cpu0 = time.time(), time.process_time()

    @property
    def target(self) -> nn.Module:
        """The network that is validated and saved: the EMA for the DDPM, else the raw one."""
        return self.ema.module if self.ema is not None else self.net

    def _resume(
        self, resume: bool, resume_point: Path | None, out_dir: Path | None, on_mismatch: str
    ) -> None:
        name, profile, state_path = self.name, self.profile, self.state_path
        data_id = self.ds.identity
        portable = resume_point
        if portable is None and out_dir is None:
            portable = shipped_weights_dir(profile.name) / f"{name}.resume.safetensors"
        use_portable = (
            resume and not state_path.is_file() and portable is not None and portable.is_file()
        )
        if use_portable and self.ranks.is_main:
            import_resume_state(name, profile, portable, state_path, self.net, self.opt)
        self.ranks.barrier()
        st = load_training_state(state_path) if resume and state_path.is_file() else None
        if st is not None:
            if st.get("profile") != profile.name or st.get("config") != model_config(
                name, self.net
            ):
                raise CheckpointError(
                    f"{state_path}: training state is from profile {st.get('profile')!r} with "
                    f"another model config; delete it or pass resume=False"
                )
            problem = _state_mismatch(st, self.total, data_id)
            if problem and on_mismatch == "error":
                raise CheckpointError(
                    f"{state_path}: training state was made {problem}; not resumed (train "
                    "from scratch with --fresh / resume=False, or delete the state)"
                )
            if problem:
                warnings.warn(
                    f"{state_path}: training state was made {problem}; training from step 0",
                    stacklevel=3,
                )
                st = None
        if st is None:
            return
        if st.get("target_steps") is None or st.get("data") is None:
            warnings.warn(
                f"{state_path}: training state from an older mripkg records no target step "
                f"count or data set; resumed as one for {self.total} steps on {data_id}",
                stacklevel=3,
            )
        self.net.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.g.set_state(st["generator"])
        self.start, self.cpu_used = int(st["step"]), float(st["cpu_time_s"])
        if self.ema is not None:
            self.ema.module.load_state_dict(st["ema"])
            self.ema.n_averaged.fill_(self.start + 1)  # the initial copy + one per step
        self.history = json.loads(st["history"])
        self.best_ssim = float(st["best_ssim"])
        self.adam_restart = st.get("adam_restart_step")
        if self.start > 0 and self.ranks.is_main:
            print(f"{name}: resuming from step {self.start} of {self.total} ({state_path})")

    def cpu_time(self) -> float:
        return self.cpu_used + time.process_time() - self.t_cpu0

    def save_state(self, step: int) -> None:
        """Write the resumable state (rank 0; atomically)."""
        if not self.ranks.is_main:
            return
        save_training_state(
            self.state_path,
            {
                "profile": self.profile.name,
                "config": model_config(self.name, self.net),
                "model": self.net.state_dict(),
                "optimizer": self.opt.state_dict(),
                "ema": self.ema.module.state_dict() if self.ema is not None else {},
                "generator": self.g.get_state(),
                "step": step,
                "cpu_time_s": self.cpu_time(),
                "history": json.dumps(self.history),
                "best_ssim": self.best_ssim,
                "adam_restart_step": self.adam_restart,
                "target_steps": self.total,
                "data": self.ds.identity,
                "ranks": self.ranks.world,
            },
        )

    def validate(self, step: int) -> None:
        """Validation metrics of the target network; a new best is saved (rank 0 only)."""
        if not self.ranks.is_main:
            return
        target, profile = self.target, self.profile
        target.eval()
        if self.is_ddpm:
            rec = DiffusionReconstructor(target, steps=min(50, profile.ddpm.sampler_steps), seed=0)
            res = evaluate(rec.reconstruct, self.val, self.mask, batch=4, seed=0)
        else:
            res = evaluate(target, self.val, self.mask)
        target.train(target is self.net)
        self.history["val_step"].append(step)
        self.history["val_psnr"].append(res["psnr"])
        self.history["val_ssim"].append(res["ssim"])
        if res["ssim"] > self.best_ssim:
            self.best_ssim = res["ssim"]
            meta = {
                "profile": profile.name,
                "model": self.name,
                "config": model_config(self.name, target),
                "train_config": train_config(self.name, profile),
                "step": step,
                "seed": profile.seed,
                "threads": profile.threads,
                "cpu_time_s": round(self.cpu_time(), 1),
                "val_psnr": res["psnr"],
                "val_ssim": res["ssim"],
                "val_slices": len(self.val),
                "weights": "ema" if self.is_ddpm else "raw",
                "target_steps": self.total,
                "data": self.ds.identity,
                "ranks": self.ranks.world,
                "precision": self.precision,
            }
            save_weights(self.best_path, target.state_dict(), meta)

    def run(
        self,
        step_loss: Callable[[], Tensor],
        max_minutes: float | None,
        stop_at: int | None,
        progress: bool | None,
        log_progress: bool,
        save_every: int | None,
    ) -> TrainResult:
        """Steps ``start .. total - 1``: the loss of this rank's share (``step_loss``), its
        gradients averaged over ranks (DDP), Adam, the schedule, the EMA; validation every
        ``val_every`` and the state every ``save_every`` (default ``min(val_every, 500)``)
        steps, at the end and at a stop."""
        name, total, history = self.name, self.total, self.history
        val_every = self.cfg.val_every
        save_every = save_every or max(1, min(val_every, 500))
        self.net.train()
        disable = progress_disabled(progress) or not self.ranks.is_main
        bar = tqdm(
            range(self.start, total), initial=self.start, total=total, desc=name, disable=disable
        )
        step = self.start
        for step in bar:
            loss = step_loss()
            value = self.ranks.mean(loss.detach())  # the global batch's loss
            if not torch.isfinite(value):
                raise FloatingPointError(f"{name}: loss is {value.item()} at step {step}")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            if self.ema is not None:
                self.ema.update_parameters(self.net)
            history["step"].append(step + 1)
            history["loss"].append(float(value))
            bar.set_postfix(loss=f"{float(value):.4f}")
            done = step + 1
            if done % val_every == 0 or done == total:
                self.validate(done)
            if done % save_every == 0 or done == total:
                self.save_state(done)
                if disable and log_progress and self.ranks.is_main:
                    recent = history["loss"][-save_every:]
                    print(
                        f"[{name}] step {done}/{total} loss {sum(recent) / len(recent):.4f} "
                        f"wall {time.time() - self.t_wall0:.0f} s",
                        flush=True,
                    )
            out_of_time = max_minutes is not None and time.time() - self.t_wall0 > 60 * max_minutes
            if max_minutes is not None:  # one rank's clock decides for all
                out_of_time = self.ranks.any(out_of_time, self.dev)
            if out_of_time or (stop_at is not None and done >= stop_at):
                self.save_state(done)
                break
        bar.close()
        if self.ranks.is_main:
            if not self.best_path.is_file():
                self.validate(step + 1 if total > self.start else self.start)
            atomic_write_json(self.hist_path, history)
        self.ranks.barrier()  # the best checkpoint is on disk for every rank
        state, meta = load_weights(self.best_path, self.profile, name)
        net = self.net
        net.load_state_dict(state)
        net.eval()
        return TrainResult(name, net, self.best_path, history, meta)


def _positive(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and value == int(value)
        and value >= 1
    )


def _check_args(steps: int | None, on_mismatch: str, precision: str) -> None:
    if on_mismatch not in ("error", "fresh"):
        raise ValueError(f"on_mismatch must be 'error' or 'fresh', got {on_mismatch!r}")
    if steps is not None and not _positive(steps):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def train_supervised(
    name: str, profile: Profile, dataset: MRIDataset | None = None, **kwargs: Any
) -> TrainResult:
    """Train ResUNet++ (L1 loss) or i-RIM (SSIM loss) on ``y = M F x`` pairs made on the fly
    from ground-truth slices (random left-right flips).  Keyword arguments as
    :func:`train_model`."""
    if name not in SUPERVISED:
        raise ValueError(f"{name!r} is not a supervised model; choose one of {list(SUPERVISED)}")
    s, loop = _start(name, profile, dataset, kwargs)
    mask_cpu, train = s.mask.cpu(), s.ds["train"]

    def step_loss() -> Tensor:
        y, x = _supervised_batch(train, mask_cpu, s.cfg.batch_size, s.g, s.rows)
        y, x = y.to(s.dev), x.to(s.dev)
        with s.autocast:
            out = s.model(y, s.mask)
        out = out.float()
        if name == "irim":
            return 1 - tm_ssim(out, x, data_range=1.0)
        return F.l1_loss(out, x)

    return s.run(step_loss, **loop)


def train_ddpm(profile: Profile, dataset: MRIDataset | None = None, **kwargs: Any) -> TrainResult:
    """Train the DDPM prior: noise-prediction MSE on random crops of ground-truth images
    (scaled to [-1, 1], random left-right flips), EMA weights (validated and saved).  Keyword
    arguments as :func:`train_model`."""
    s, loop = _start("ddpm", profile, dataset, kwargs)
    cfg, train = s.cfg, s.ds["train"]
    schedule = NoiseSchedule(cfg.num_timesteps, cfg.beta_min, cfg.beta_max)

    def step_loss() -> Tensor:
        x0 = _crop_batch(train, cfg.crop_size, cfg.batch_size, s.g, s.rows).to(s.dev)
        x0 = x0.contiguous(memory_format=torch.channels_last)
        shape = (cfg.batch_size, *x0.shape[1:])
        t, noise = ddpm_draw(schedule, shape, s.g)
        with s.autocast:
            return ddpm_loss_at(s.model, x0, t[s.rows], noise[s.rows], schedule)

    return s.run(step_loss, **loop)


_LOOP_OPTIONS = {
    "max_minutes": None,
    "stop_at": None,
    "progress": None,
    "log_progress": False,
    "save_every": None,
}
_SESSION_OPTIONS = {
    "out_dir": None,
    "resume": True,
    "steps": None,
    "resume_point": None,
    "on_mismatch": "error",
    "device": None,
    "precision": "fp32",
}


def _start(
    name: str, profile: Profile, dataset: MRIDataset | None, options: dict[str, Any]
) -> tuple[_Session, dict[str, Any]]:
    """The session of one training run and the loop's options (keywords of :func:`train_model`)."""
    unknown = set(options) - set(_LOOP_OPTIONS) - set(_SESSION_OPTIONS)
    if unknown:
        raise TypeError(f"unknown training option(s): {sorted(unknown)}")
    loop = {k: options.get(k, v) for k, v in _LOOP_OPTIONS.items()}
    if loop["save_every"] is not None and not _positive(loop["save_every"]):
        raise ValueError(f"save_every must be a positive integer, got {loop['save_every']!r}")
    opts = {k: options.get(k, v) for k, v in _SESSION_OPTIONS.items()}
    _check_args(opts["steps"], opts["on_mismatch"], opts["precision"])
    setup_torch(profile)
    ds = dataset if dataset is not None else load_dataset(profile)
    return _Session(name, profile, ds, **opts), loop


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
    precision: str = "fp32",
    save_every: int | None = None,
) -> TrainResult:
    """Train ``name`` (``resunetpp``, ``irim`` or ``ddpm``) with the profile's settings
    (:func:`train_supervised` or :func:`train_ddpm`).

    Resumes from ``<model>.state.pt`` when present (and ``resume``); stops early, after saving
    its state, once ``max_minutes`` of wall time have passed or at step ``stop_at``; the state is
    also saved every ``save_every`` steps (default ``min(val_every, 500)``).  Returns the
    best network so far.  Without a local state, a portable resume point
    (``weights/<profile>/<model>.resume.safetensors``, see :func:`export_resume_state`) is
    picked up.  The state records the target step count and the data set
    (:attr:`mripkg.data.MRIDataset.identity`); a state made for another step count or another
    data set is never resumed: ``on_mismatch="error"`` raises :class:`CheckpointError`,
    ``"fresh"`` warns and trains from step 0.  A resumed run says so (stdout).  ``device``
    (default: the CPU; under torchrun with NCCL the rank's GPU) is where the network trains;
    batches are drawn on the CPU from the seeded generator and moved there, so the draws do
    not depend on it.  ``precision="bf16"``: forward passes under bfloat16 autocast (an option
    for GPUs; losses, gradients and weights stay float32).

    Inside a ``torch.distributed`` process group (torchrun, :mod:`.distributed`) every rank
    computes its share of the profile's global batch under DistributedDataParallel; rank
    0 validates and writes the checkpoints; a state written by N ranks resumes on any number.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")
    kwargs = dict(
        out_dir=out_dir,
        resume=resume,
        max_minutes=max_minutes,
        progress=progress,
        steps=steps,
        stop_at=stop_at,
        log_progress=log_progress,
        resume_point=resume_point,
        on_mismatch=on_mismatch,
        device=device,
        precision=precision,
        save_every=save_every,
    )
    if name == "ddpm":
        return train_ddpm(profile, dataset, **kwargs)
    return train_supervised(name, profile, dataset, **kwargs)


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
    tensors, meta = load_weights(path, profile, name, model_config(name, net))
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
    state, meta = load_weights(p, profile, name, model_config(name, net))
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
    if dataset is not None and not {"train", "val"} <= set(dataset.splits):
        # built without its training split (load_dataset(splits=...)): training needs it all
        dataset = load_dataset(profile, None if dataset.source == "embedded" else dataset.source)
    res = train_model(name, profile, dataset, resume=not retrain, on_mismatch="fresh")
    for q in res.net.parameters():
        q.requires_grad_(False)
    return res.net, res.meta, res.history


def ship(
    name: str,
    profile: Profile,
    fp16: bool = True,
    note: str | None = None,
    out_dir: Path | None = None,
) -> Path:
    """Copy the best checkpoint of ``runs/<profile>/checkpoints`` (or ``out_dir``) to
    ``weights/<profile>/``, stored as fp16 when that changes validation PSNR by less than 0.01
    dB; ``note`` (e.g. how the run deviated from the profile's recipe) goes into the JSON
    sidecar."""
    best, _, hist = _paths(name, profile, out_dir)
    state, meta = load_weights(best, profile, name)
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


def set_tf32(enabled: bool) -> None:
    """TensorFloat-32 for float32 matrix products and cuDNN convolutions on GPUs (Ampere and
    later): about 2-3x faster float32 training at a 10-bit mantissa inside the products."""
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    torch.backends.cudnn.allow_tf32 = bool(enabled)


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
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="checkpoint folder (default runs/<profile>/checkpoints)",
    )
    ap.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:1 ... (default: the CPU; under torchrun on GPUs each rank's own GPU)",
    )
    ap.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help="bf16: bfloat16 autocast (GPUs)"
    )
    ap.add_argument("--tf32", action="store_true", help="TensorFloat-32 matmuls/convs (GPUs)")
    ap.add_argument(
        "--save-every", type=int, default=None, help="steps between saved states (resume points)"
    )
    args = ap.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        ap.error(f"--steps must be a positive integer, got {args.steps}")
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads must be a positive integer, got {args.threads}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        ap.error(f"--max-minutes must be positive, got {args.max_minutes}")
    profile = cli_profile(args.profile)
    if args.threads is not None:
        profile = dataclasses.replace(profile, threads=args.threads)
    names = list(MODEL_NAMES) if args.all else (args.model or [])
    if not names:
        ap.error("name a --model or pass --all")
    if args.export_resume:
        for name in names:
            print(f"wrote {export_resume_state(name, profile, args.out)}")
        return 0
    ranks = distributed.init_from_env()  # torchrun: join the process group
    device = args.device
    if device == "cuda" and ranks.distributed:
        device = f"cuda:{ranks.local_rank}"
    if args.tf32:
        set_tf32(True)
    try:
        for name in names:
            res = train_model(
                name,
                profile,
                out_dir=args.out,
                resume=not args.fresh,
                max_minutes=args.max_minutes,
                steps=args.steps,
                log_progress=True,
                device=device,
                precision=args.precision,
                save_every=args.save_every,
            )
            if ranks.is_main:
                print(
                    f"{name}: best val PSNR {res.meta['val_psnr']:.2f} dB, SSIM "
                    f"{res.meta['val_ssim']:.4f} at step {res.meta['step']} ({res.checkpoint})"
                    + (f" [{ranks.world} ranks]" if ranks.distributed else "")
                )
            if args.ship and ranks.is_main:
                print(f"shipped {ship(name, profile, out_dir=args.out)}")
            ranks.barrier()
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
