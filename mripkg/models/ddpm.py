"""Unsupervised reconstruction: a DDPM prior plus the projection sampler of Song et al. (2022).

(:func:`dds_sample`, beyond the paper and only an ablation: exact data consistency on the
denoised estimate and a DDIM step; every number that tests a paper claim uses the projection
sampler; see the profile's ``DDPMConfig.sampler``.)

The prior is an epsilon-prediction U-Net (Ho et al. 2020) trained on ground-truth images only
(scaled to [-1, 1]); it never sees k-space pairs, which is what makes the method unsupervised.
Reconstruction (:func:`projection_sample`) runs the reverse diffusion over a respaced schedule;
before every reverse step the measured k-space columns, noised to the current noise level,
replace those columns of the current estimate (real part kept, as the authors did; on a
column whose conjugate partner is not sampled this is only half-consistent, see
:func:`_replace_columns`).  After the last step: one denoising step (the x0 prediction) and a
hard replacement of the measured columns.  The output
is mapped back to [0, 1] and clamped at 0 (MRI magnitude images are non-negative).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from ..physics import MRIOperator, fft2c, ifft2c
from ..profiles import DDPMConfig
from .tv import tv_denoise

# --------------------------------------------------------------------------------------------
# noise schedule


@dataclass(frozen=True)
class NoiseSchedule:
    """Linear beta schedule over ``num_timesteps`` discrete steps.

    The paper's continuous VP parameters (beta_min 0.1, beta_max 20) discretised as
    ``beta_i = beta_min / N + i (beta_max - beta_min) / (N (N - 1))``: 1e-4 ... 0.02 for N = 1000.
    """

    num_timesteps: int = 1000
    beta_min: float = 0.1
    beta_max: float = 20.0

    @property
    def betas(self) -> Tensor:
        n = self.num_timesteps
        i = torch.arange(n, dtype=torch.float64)
        return self.beta_min / n + i * (self.beta_max - self.beta_min) / (n * (n - 1))

    @property
    def alphas_cumprod(self) -> Tensor:
        """``abar_t`` for t = 0 .. N-1 (float64)."""
        return torch.cumprod(1.0 - self.betas, dim=0)

    def respaced(self, steps: int, power: float = 1.0) -> Tensor:
        """``steps`` timesteps from N-1 down to 0 (long, descending, duplicates dropped).

        ``power = 1``: evenly spaced (the paper's respacing); ``power > 1``: ``t = (N - 1) u **
        power`` for ``u`` evenly spaced in [0, 1], denser near t = 0."""
        if not 1 <= steps <= self.num_timesteps:
            raise ValueError(f"sampler steps must be in [1, {self.num_timesteps}], got {steps}")
        if not (math.isfinite(power) and power >= 1):
            raise ValueError(f"spacing power must be a finite number >= 1, got {power!r}")
        if power == 1:
            ts = np.round(np.linspace(0, self.num_timesteps - 1, steps)).astype(np.int64)
        else:
            u = np.linspace(0.0, 1.0, steps) ** power
            ts = np.round(u * (self.num_timesteps - 1)).astype(np.int64)
        return torch.from_numpy(np.unique(ts)[::-1].copy())


# --------------------------------------------------------------------------------------------
# epsilon-prediction U-Net


def _groups(ch: int) -> int:
    for g in (8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of integer timesteps ``t [B]`` -> ``[B, dim]``."""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(10000.0) * k / half)
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv x 2 with an additive time embedding and a residual connection."""

    def __init__(self, c_in: int, c_out: int, t_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(t_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over all pixels (used at the lowest resolution only)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None], v.transpose(1, 2)[:, None]
        )[:, 0]
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class EpsUNet(nn.Module):
    """Epsilon-prediction U-Net: ``eps_hat = net(x_t [B, 1, H, W], t [B])``.

    Channel widths ``base * mult`` per level, ``num_res_blocks`` residual blocks per level,
    stride-2 convolutions down, nearest-neighbour upsampling + conv up, self-attention in the
    bottleneck (the lowest resolution).  Fully convolutional: trained on crops, run on whole
    images whose side is divisible by ``2 ** (len(mults) - 1)``.
    """

    def __init__(self, cfg: DDPMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        base, mults, nrb = cfg.base_channels, cfg.channel_mults, cfg.num_res_blocks
        t_dim = 4 * base
        self.t_mlp = nn.Sequential(nn.Linear(base, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.conv_in = nn.Conv2d(1, base, 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        chans = [base]
        ch = base
        for i, m in enumerate(mults):
            blocks = nn.ModuleList()
            for _ in range(nrb):
                blocks.append(ResBlock(ch, base * m, t_dim))
                ch = base * m
                chans.append(ch)
            self.down.append(blocks)
            if i < len(mults) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                chans.append(ch)
        self.mid1 = ResBlock(ch, ch, t_dim)
        self.mid_attn = SelfAttention(ch)
        self.mid2 = ResBlock(ch, ch, t_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, m in reversed(list(enumerate(mults))):
            blocks = nn.ModuleList()
            for _ in range(nrb + 1):
                blocks.append(ResBlock(ch + chans.pop(), base * m, t_dim))
                ch = base * m
            self.up.append(blocks)
            if i > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, 1, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def divisor(self) -> int:
        return 2 ** (len(self.cfg.channel_mults) - 1)

    def config_dict(self) -> dict:
        c = self.cfg
        return {
            "base_channels": c.base_channels,
            "channel_mults": list(c.channel_mults),
            "num_res_blocks": c.num_res_blocks,
            "num_timesteps": c.num_timesteps,
            "beta_min": c.beta_min,
            "beta_max": c.beta_max,
        }

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"EpsUNet expects [B, 1, H, W], got {tuple(x.shape)}")
        if x.shape[-1] % self.divisor or x.shape[-2] % self.divisor:
            raise ValueError(
                f"image sides must be divisible by {self.divisor}, got {tuple(x.shape)}"
            )
        temb = self.t_mlp(timestep_embedding(t, self.cfg.base_channels))
        h = self.conv_in(x)
        hs = [h]
        for i, blocks in enumerate(self.down):
            for blk in blocks:
                h = blk(h, temb)
                hs.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for i, blocks in enumerate(self.up):
            for blk in blocks:
                h = blk(torch.cat([h, hs.pop()], dim=1), temb)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


# --------------------------------------------------------------------------------------------
# training objective


def ddpm_draw(
    schedule: NoiseSchedule, shape: tuple[int, ...], generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Time steps ``t [B]`` and noise ``[B, ...]`` (of ``shape``) for a training batch, drawn
    on the CPU from ``generator`` (the same draws on any device and any number of ranks)."""
    t = torch.randint(0, schedule.num_timesteps, (shape[0],), generator=generator)
    noise = torch.randn(shape, generator=generator)
    return t, noise


def ddpm_loss_at(
    net: nn.Module, x0: Tensor, t: Tensor, noise: Tensor, schedule: NoiseSchedule
) -> Tensor:
    """Noise-prediction MSE of ``net`` on clean images ``x0 [B, 1, H, W]`` in [-1, 1] noised to
    steps ``t [B]`` with ``noise`` (shaped as ``x0``; moved to its device)."""
    b = x0.shape[0]
    abar = schedule.alphas_cumprod.to(torch.float32)
    noise = noise.to(x0.device)
    a = abar[t].view(b, 1, 1, 1).to(x0.device)
    t = t.to(x0.device)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    return F.mse_loss(net(xt, t), noise)


def ddpm_loss(
    net: EpsUNet, x0: Tensor, schedule: NoiseSchedule, generator: torch.Generator
) -> Tensor:
    """Noise-prediction MSE for a batch of clean images ``x0 [B, 1, H, W]`` in [-1, 1] (time
    steps and noise drawn from ``generator``, :func:`ddpm_draw`)."""
    t, noise = ddpm_draw(schedule, tuple(x0.shape), generator)
    return ddpm_loss_at(net, x0, t, noise, schedule)


# --------------------------------------------------------------------------------------------
# projection sampler


def slice_generator(seed: int, slice_id: int, sample: int = 0) -> torch.Generator:
    """A generator seeded from (seed, slice id, sample index): the noise a slice receives does
    not depend on the batch it runs in, and clean and perturbed inputs get the same noise."""
    state = np.random.SeedSequence([int(seed), int(slice_id), int(sample)]).generate_state(2)
    g = torch.Generator()
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


def draw_sampler_noise(
    shape: tuple[int, int, int, int],
    steps: int,
    seed: int,
    slice_ids: Sequence[int],
    sample: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """All random draws of one projection-sampler run, per slice from its own generator.

    Returns ``(x_T [B,1,H,W], step_noise [S,B,1,H,W], meas_noise [S,B,1,H,W])``.
    """
    b = shape[0]
    if len(slice_ids) != b:
        raise ValueError(f"need one slice id per image: {len(slice_ids)} ids for batch {b}")
    one = (1, *shape[1:])
    xs, zs, ms = [], [], []
    for sid in slice_ids:
        g = slice_generator(seed, sid, sample)
        xs.append(torch.randn(one, generator=g))
        zs.append(torch.randn((steps, *one), generator=g))
        ms.append(torch.randn((steps, *one), generator=g))
    return torch.cat(xs), torch.cat(zs, dim=1), torch.cat(ms, dim=1)


def _scaled_measurement(y: Tensor, mask: Tensor) -> Tensor:
    """Measurement of the [-1, 1]-scaled image: ``M F (2x - 1) = 2y - M F 1``."""
    ones = torch.ones(y.shape[-2:], dtype=y.real.dtype, device=y.device)
    return 2 * y - MRIOperator(mask).A(ones[None, None])


def _replace_columns(x: Tensor, y_t: Tensor, mask: Tensor) -> Tensor:
    """The paper's data-consistency step: the measured columns of ``fft2c(x)`` replaced by
    ``y_t``, real part kept.  For a column whose conjugate partner (frequency ``-f``) is not
    sampled, taking the real part averages the replaced value with the unmeasured partner's,
    so this step is only half-consistent there: about half of the residual on that column
    remains (see :func:`real_data_consistency` for the exact step)."""
    m = mask.to(x.dtype)
    k = fft2c(x)
    return ifft2c(k * (1 - m) + y_t * m).real


def conj_mirror(k: Tensor) -> Tensor:
    """``conj(k[-f])`` on the centred frequency grid of :func:`mripkg.physics.fft2c` (last two
    axes, any side length): the spectrum of a real image equals its own ``conj_mirror``."""
    ku = torch.fft.ifftshift(k, dim=(-2, -1))
    ku = torch.roll(torch.flip(ku, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
    return torch.fft.fftshift(ku, dim=(-2, -1)).conj()


def real_data_consistency(x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Exact data consistency for a real image: the real ``x'`` closest to ``x`` that solves
    the real-valued normal equations ``Re F^H M (M F x' - y) = 0`` (least squares over real
    images; the minimiser DDS's conjugate-gradient step converges to).

    Closed form per conjugate column pair: a real image's spectrum is Hermitian, so where
    frequency ``f`` or its partner ``-f`` is measured, ``F x'[f] = (m_f y_f + m_-f
    conj(y_-f)) / (m_f + m_-f)``; every other frequency keeps ``F x``'s value.  For ``y`` the
    measurement of a real image, ``M F x' = y`` exactly.  ``x`` real ``[B, 1, H, W]``, ``y``
    complex ``[B, 1, H, W]`` (zero off the mask), ``mask`` ``[W]``; returns real ``[B, 1, H, W]``.
    """
    h = x.shape[-2]
    m = mask.to(device=x.device, dtype=x.dtype).expand(h, -1)
    mc = m.to(torch.complex64 if x.dtype != torch.float64 else torch.complex128)
    m_mirror = conj_mirror(mc).real
    w = m + m_mirror
    ym = y * m
    target = (ym + conj_mirror(ym)) / w.clamp_min(1.0)
    k = fft2c(x)
    return ifft2c(torch.where(w > 0, target, k)).real


PRECISIONS = ("fp32", "bf16")


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def _predict_eps(net: EpsUNet, x: Tensor, t: int, precision: str) -> Tensor:
    """``net(x, t)`` in channels-last memory (7-22 % faster on CPU); ``precision="bf16"`` runs
    the U-Net under bfloat16 autocast (the sampler's arithmetic around it stays float32)."""
    x_cl = x.contiguous(memory_format=torch.channels_last)
    tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    if precision == "bf16":
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return net(x_cl, tt).float()
    return net(x_cl, tt)


def _sampler_inputs(
    y: Tensor,
    schedule: NoiseSchedule,
    steps: int,
    spacing: float,
    precision: str,
    seed: int,
    slice_ids: Sequence[int] | None,
    sample: int,
    noise: tuple[Tensor, Tensor, Tensor] | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Checked inputs of a sampler run: ``(timesteps, x_T, step noise, measurement noise)``,
    the noise drawn per slice on the CPU (:func:`draw_sampler_noise`) unless given, moved to
    ``y``'s device."""
    if not torch.is_complex(y) or y.ndim != 4:
        raise ValueError(f"y must be complex [B, 1, H, W], got {y.dtype} {tuple(y.shape)}")
    _check_precision(precision)
    ids = list(range(y.shape[0])) if slice_ids is None else list(slice_ids)
    ts = schedule.respaced(steps, spacing)
    if noise is None:
        noise = draw_sampler_noise(tuple(y.shape), len(ts), seed, ids, sample)  # type: ignore[arg-type]
    x, step_noise, meas_noise = (n.to(y.device) for n in noise)
    return ts, x, step_noise, meas_noise


def _run_steps(
    one_step: Callable[[Tensor, int], Tensor], x: Tensor, n: int, grad_checkpoint: bool
) -> Tensor:
    """``x = one_step(x, i)`` for ``i < n``, each step checkpointed when asked and grad is on."""
    for i in range(n):
        if grad_checkpoint and torch.is_grad_enabled():
            x = _checkpoint(one_step, x, i, use_reentrant=False)
        else:
            x = one_step(x, i)
    return x


def projection_sample(
    net: EpsUNet,
    y: Tensor,
    mask: Tensor,
    schedule: NoiseSchedule,
    steps: int,
    seed: int = 0,
    slice_ids: Sequence[int] | None = None,
    sample: int = 0,
    noise: tuple[Tensor, Tensor, Tensor] | None = None,
    grad_checkpoint: bool = False,
    tv_weight: float = 0.0,
    tv_iters: int = 10,
    precision: str = "fp32",
    spacing: float = 1.0,
) -> Tensor:
    """Projection sampler (Song, Shen, Xing & Ermon 2022) with a DDPM prior.

    ``y``: measured k-space of the [0, 1] image, complex ``[B, 1, H, W]``; ``mask`` ``[W]``.
    Returns the reconstruction in [0, 1] units, clamped at 0, ``[B, 1, H, W]``.
    Differentiable with respect to ``y`` (pass fixed ``noise`` and ``grad_checkpoint=True``
    to attack it white-box with bounded memory).

    ``tv_weight > 0`` (beyond the paper, a candidate defence; default 0 = the paper's sampler,
    unchanged): every reverse step's x0 prediction also gets a TV proximal step
    (:func:`mripkg.models.tv.tv_denoise` with ``tv_iters`` dual iterations; the weight in the
    sampler's [-1, 1] units), so each step is data consistency plus TV regularisation.
    ``precision="bf16"``: the U-Net under bfloat16 autocast; ``spacing > 1``: respaced
    timesteps denser near t = 0 (:meth:`NoiseSchedule.respaced`).
    """
    ts, x, step_noise, meas_noise = _sampler_inputs(
        y, schedule, steps, spacing, precision, seed, slice_ids, sample, noise
    )
    abar_all = schedule.alphas_cumprod
    ys = _scaled_measurement(y, mask)
    mf = mask.to(device=y.device, dtype=torch.float32)

    def one_step(x: Tensor, i: int) -> Tensor:
        t = int(ts[i])
        a_t = float(abar_all[t])
        a_prev = float(abar_all[int(ts[i + 1])]) if i + 1 < len(ts) else 1.0
        # data consistency at the current noise level: noised measured columns replace x's
        y_t = math.sqrt(a_t) * ys + math.sqrt(1 - a_t) * fft2c(meas_noise[i]) * mf
        x = _replace_columns(x, y_t, mask)
        eps = _predict_eps(net, x, t, precision)
        x0 = ((x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)).clamp(-1.5, 1.5)
        if tv_weight > 0:
            x0 = tv_denoise(x0, tv_weight, tv_iters)
        if i + 1 == len(ts):
            return x0  # the final denoising step
        beta = 1 - a_t / a_prev
        # posterior q(x_prev | x_t, x0) for the respaced chain
        coef0 = math.sqrt(a_prev) * beta / (1 - a_t)
        coeft = math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t)
        var = beta * (1 - a_prev) / (1 - a_t)
        return coef0 * x0 + coeft * x + math.sqrt(var) * step_noise[i]

    x = _run_steps(one_step, x, len(ts), grad_checkpoint)
    x = _replace_columns(x, ys, mask)  # hard data consistency with the clean measurement
    return ((x + 1) / 2).clamp_min(0.0)


def dds_sample(
    net: EpsUNet,
    y: Tensor,
    mask: Tensor,
    schedule: NoiseSchedule,
    steps: int,
    seed: int = 0,
    slice_ids: Sequence[int] | None = None,
    sample: int = 0,
    noise: tuple[Tensor, Tensor, Tensor] | None = None,
    grad_checkpoint: bool = False,
    eta: float = 1.0,
    precision: str = "fp32",
    spacing: float = 1.0,
    tv_weight: float = 0.0,
    tv_iters: int = 10,
) -> Tensor:
    """Sampler with data consistency on the denoised estimate (DDS-style, Chung et al. 2024).

    Every reverse step predicts ``x0`` (Tweedie), makes it consistent with the measurement
    exactly (:func:`real_data_consistency`: the least-squares real image nearest ``x0``, the
    solution DDS's conjugate-gradient step converges to; closed form per conjugate column
    pair), then moves to the next noise level with the DDIM update ``x_prev = sqrt(abar_prev)
    x0 + sqrt(1 - abar_prev - s^2) eps + s z``, ``s = eta * sigma_DDPM``, where ``eta`` is the
    DDIM eta (``1``: the DDPM posterior noise, ``0``: deterministic DDIM).  A labelled ablation
    beside the paper's :func:`projection_sample`, never the sampler of a paper claim.
    The last step returns the consistent ``x0``.  Arguments, shapes and units as
    :func:`projection_sample` (the same noise draws: ``x_T`` and the step noise; the
    measurement noise is not used).  ``tv_weight > 0``: a TV proximal step on ``x0`` before
    the data consistency (the TV variant, as in :func:`projection_sample`).
    """
    if not (math.isfinite(eta) and 0 <= eta <= 1):
        raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
    ts, x, step_noise, _ = _sampler_inputs(
        y, schedule, steps, spacing, precision, seed, slice_ids, sample, noise
    )
    abar_all = schedule.alphas_cumprod
    ys = _scaled_measurement(y, mask)

    def one_step(x: Tensor, i: int) -> Tensor:
        t = int(ts[i])
        a_t = float(abar_all[t])
        a_prev = float(abar_all[int(ts[i + 1])]) if i + 1 < len(ts) else 1.0
        eps = _predict_eps(net, x, t, precision)
        x0 = ((x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)).clamp(-1.5, 1.5)
        if tv_weight > 0:
            x0 = tv_denoise(x0, tv_weight, tv_iters)
        x0 = real_data_consistency(x0, ys, mask)  # exact, on the denoised estimate
        if i + 1 == len(ts):
            return x0
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        direction = math.sqrt(max(1 - a_prev - sigma**2, 0.0))
        return math.sqrt(a_prev) * x0 + direction * eps + sigma * step_noise[i]

    x = _run_steps(one_step, x, len(ts), grad_checkpoint)
    return ((x + 1) / 2).clamp_min(0.0)


SAMPLERS = ("projection", "dds")


def sampler_tag(
    sampler: str = "projection",
    eta: float = 1.0,
    precision: str = "fp32",
    spacing: float = 1.0,
    tv_weight: float = 0.0,
    tv_iters: int = 10,
) -> str:
    """A sampler's settings besides steps and seed as text (part of cache keys): ``""`` for the
    paper's projection sampler in float32 with even spacing (so older keys stay valid); the DDS
    tag names its exact data-consistency step (``dc=ls``), so caches of the earlier
    column-replacement DDS are never reused."""
    parts = []
    if sampler != "projection":
        parts.append(f"{sampler},eta={eta:g},dc=ls")
    if precision != "fp32":
        parts.append(precision)
    if spacing != 1:
        parts.append(f"spacing={spacing:g}")
    if tv_weight:
        parts.append(f"tv={tv_weight:g},{tv_iters}")
    return "|".join(parts)


def describe_sampler(
    sampler: str, steps: int, eta: float = 1.0, spacing: float = 1.0, precision: str = "fp32"
) -> str:
    """One line for tables: sampler, steps, spacing, precision."""
    name = "projection (paper)" if sampler == "projection" else f"DDS, DDIM eta {eta:g}"
    spaced = "even" if spacing == 1 else f"t ~ u^{spacing:g}"
    return f"{name}, {steps} steps, {spaced} spacing, {precision}"


def sampler_kwargs(cfg: DDPMConfig) -> dict[str, object]:
    """The sampler settings of a profile's :class:`DDPMConfig` as :class:`DiffusionReconstructor`
    keywords (``steps``, ``sampler``, ``eta``, ``precision``, ``spacing``)."""
    return {
        "steps": cfg.sampler_steps,
        "sampler": cfg.sampler,
        "eta": cfg.sampler_eta,
        "precision": cfg.sampler_precision,
        "spacing": cfg.sampler_spacing,
    }


def config_sampler_tag(cfg: DDPMConfig) -> str:
    """:func:`sampler_tag` of a profile's sampler settings."""
    kw = sampler_kwargs(cfg)
    del kw["steps"]
    return sampler_tag(**kw)  # type: ignore[arg-type]


class DiffusionReconstructor(nn.Module):
    """The unsupervised reconstructor: DDPM prior + a sampler, ``recon(y, mask)``.

    ``steps`` respaced sampler steps, noise from per-slice generators seeded by
    (``seed``, slice id, ``sample``).  Call :meth:`reconstruct` to pass slice ids explicitly.
    ``sampler``: ``"projection"`` (the paper's, :func:`projection_sample`) or ``"dds"``
    (:func:`dds_sample`, with the DDIM ``eta``; an ablation); ``precision``: ``"fp32"`` or
    ``"bf16"`` (U-Net under bfloat16 autocast); ``spacing``: the respacing power (1: even).
    ``tv_weight > 0``: a TV proximal step on every step's x0 prediction.  The defaults are the
    paper's sampler; :meth:`from_config` takes a profile's.
    """

    name = "diffusion"

    def __init__(
        self,
        net: EpsUNet,
        steps: int,
        seed: int = 0,
        tv_weight: float = 0.0,
        tv_iters: int = 10,
        sampler: str = "projection",
        eta: float = 1.0,
        precision: str = "fp32",
        spacing: float = 1.0,
    ) -> None:
        super().__init__()
        if not tv_weight >= 0 or not math.isfinite(tv_weight):
            raise ValueError(f"tv_weight must be a finite number >= 0, got {tv_weight!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if not (math.isfinite(eta) and 0 <= eta <= 1):
            raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
        if not (math.isfinite(spacing) and spacing >= 1):
            raise ValueError(f"spacing power must be a finite number >= 1, got {spacing!r}")
        _check_precision(precision)
        self.net = net.to(memory_format=torch.channels_last)  # in place; as in training
        self.steps = steps
        self.seed = seed
        self.tv_weight = float(tv_weight)  # 0: the paper's projection sampler
        self.tv_iters = int(tv_iters)
        self.sampler = sampler
        self.eta = float(eta)
        self.precision = precision
        self.spacing = float(spacing)
        c = net.cfg
        self.schedule = NoiseSchedule(c.num_timesteps, c.beta_min, c.beta_max)

    @classmethod
    def from_config(
        cls, net: EpsUNet, cfg: DDPMConfig, seed: int = 0, **changes: object
    ) -> DiffusionReconstructor:
        """The reconstructor a profile's :class:`DDPMConfig` describes (sampler, steps, eta,
        spacing, precision); ``changes`` override constructor keywords (e.g. ``steps``)."""
        kw = {**sampler_kwargs(cfg), "seed": seed, **changes}
        return cls(net, **kw)  # type: ignore[arg-type]

    @property
    def sampler_tag(self) -> str:
        """What, besides steps and seed, makes this sampler's output (:func:`sampler_tag`)."""
        return sampler_tag(
            self.sampler, self.eta, self.precision, self.spacing, self.tv_weight, self.tv_iters
        )

    def describe(self) -> str:
        """One line for tables (:func:`describe_sampler`)."""
        return describe_sampler(self.sampler, self.steps, self.eta, self.spacing, self.precision)

    def variant(self, **changes: object) -> DiffusionReconstructor:
        """The same prior with other sampler settings (constructor keywords)."""
        kw: dict[str, object] = {
            "steps": self.steps,
            "seed": self.seed,
            "tv_weight": self.tv_weight,
            "tv_iters": self.tv_iters,
            "sampler": self.sampler,
            "eta": self.eta,
            "precision": self.precision,
            "spacing": self.spacing,
        }
        kw.update(changes)
        return DiffusionReconstructor(self.net, **kw)  # type: ignore[arg-type]

    def reconstruct(
        self,
        y: Tensor,
        mask: Tensor,
        steps: int | None = None,
        seed: int | None = None,
        slice_ids: Sequence[int] | None = None,
        sample: int = 0,
        noise: tuple[Tensor, Tensor, Tensor] | None = None,
        grad_checkpoint: bool = False,
    ) -> Tensor:
        """Reconstruct ``y [B, 1, H, W]`` -> image ``[B, 1, H, W]`` >= 0 (see module doc)."""
        args = (
            self.net,
            y,
            mask,
            self.schedule,
            self.steps if steps is None else steps,
            self.seed if seed is None else seed,
            slice_ids,
            sample,
            noise,
            grad_checkpoint,
        )
        if self.sampler == "dds":
            return dds_sample(
                *args,
                eta=self.eta,
                precision=self.precision,
                spacing=self.spacing,
                tv_weight=self.tv_weight,
                tv_iters=self.tv_iters,
            )
        return projection_sample(
            *args,
            tv_weight=self.tv_weight,
            tv_iters=self.tv_iters,
            precision=self.precision,
            spacing=self.spacing,
        )

    def forward(self, y: Tensor, mask: Tensor) -> Tensor:
        return self.reconstruct(y, mask)
