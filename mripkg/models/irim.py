"""i-RIM (Putzky & Welling 2019): an invertible recurrent inference machine, single coil.

Latent state ``h``: ``[B, C, H/2, W/2]`` with ``C = 4 * multiplicity`` channels; an image
``[B, 1, H, W]`` enters and leaves the latent through a pixel (un)shuffle by 2, so the image
estimate is ``x = pixel_shuffle(h[:, :4])``.  Channel layout::

    h[:, 0:4]          image estimate (pixel-unshuffled)
    h[:, C/2:C/2+4]    slot where each step injects the data-consistency gradient
    the rest           memory (zero at the start)

Start: ``x_0 = Re F^-1 (M y)`` (the real zero-filled image), memory zero.  Step ``t`` maps
``h_t -> h_{t+1}`` in two invertible parts:

1. gradient injection (an additive coupling): ``g = dc_gradient(x, y, mask) = Re F^H M^T
   (M F x - y)`` is computed from the image channels ``h[:, 0:4]`` and ``-pixel_unshuffle(g)``
   is added to the slot channels ``h[:, C/2:C/2+4]``.  The image channels are not changed, so
   the inverse recomputes the same ``g`` and subtracts it;
2. an invertible network ``G_t`` (:class:`InvertibleStepNet`): one block per entry of
   ``cfg.dilations``; a block is an orthogonal 1x1 channel mixing ``W = expm(A - A^T)``
   (inverse ``W^T``) followed by an additive coupling that updates one half of the channels by
   a small CNN of the other half (3x3 conv with the block's dilation -> SiLU -> 1x1 conv ->
   SiLU -> 3x3 conv, ``cfg.hidden`` channels inside).  Blocks alternate which half they update,
   starting with the half holding the image, whose update then sees the fresh gradient.

So every step, and the whole unrolled machine, is exactly invertible given ``y`` and ``mask``
alone (no stored activations are needed to recover ``h_t`` from ``h_{t+1}``):
:meth:`IRIM.step_inverse`, :meth:`IRIM.inverse_latent`.  With ``memory_efficient=True`` the
backward pass recomputes each step's input from its output by inversion instead of storing the
activations (the i-RIM training trick); gradients equal plain autograd up to rounding.

Parameters are not shared across steps (one ``G_t`` per step).  Mixings start at the identity
and the last conv of every coupling at zero, so an untrained i-RIM returns ``|x_0|``.
The output is ``|pixel_shuffle(h_T[:, :4])|``: the magnitude of the final estimate, as in the
paper, which makes it non-negative.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..physics import dc_gradient, undersample, zero_filled_real
from ..profiles import IRIMConfig

SHUFFLE = 2  # pixel (un)shuffle factor
IMG_CH = SHUFFLE * SHUFFLE  # latent channels holding the (unshuffled) image estimate


def _check_inputs(y: Tensor, mask: Tensor) -> None:
    if not torch.is_complex(y):
        raise ValueError(f"i-RIM: y must be complex k-space, got dtype {y.dtype}")
    if y.ndim != 4 or y.shape[1] != 1:
        raise ValueError(f"i-RIM: y must have shape [B, 1, H, W], got {tuple(y.shape)}")
    if y.shape[-2] % SHUFFLE or y.shape[-1] % SHUFFLE:
        raise ValueError(f"i-RIM: image sides must be even, got {tuple(y.shape[-2:])}")
    if mask.ndim != 1 or mask.dtype != torch.bool:
        raise ValueError(
            f"i-RIM: mask must be a 1-D bool tensor over columns, got {mask.dtype} "
            f"{tuple(mask.shape)}"
        )
    if mask.shape[0] != y.shape[-1]:
        raise ValueError(
            f"i-RIM: mask has {mask.shape[0]} columns but y has {y.shape[-1]} "
            f"(shape {tuple(y.shape)})"
        )


class OrthogonalMix(nn.Module):
    """``count`` invertible 1x1 convolutions with orthogonal matrices ``W_k = expm(A_k - A_k^T)``
    (``A_k`` strictly upper triangular, zero at init: ``W_k = I``); the inverse is ``W_k^T``.
    The matrices are computed together (one batched matrix exponential) by :meth:`weights`."""

    def __init__(self, channels: int, count: int = 1) -> None:
        super().__init__()
        self.skew = nn.Parameter(torch.zeros(count, channels, channels))

    def weights(self) -> Tensor:
        """The orthogonal matrices ``[count, C, C]``."""
        a = torch.triu(self.skew, diagonal=1)
        return torch.linalg.matrix_exp(a - a.transpose(-2, -1))

    @staticmethod
    def apply_weight(h: Tensor, w: Tensor, inverse: bool = False) -> Tensor:
        """``W h`` (or ``W^T h``) over the channels of ``h`` ``[B, C, h, w]``; ``w`` ``[C, C]``."""
        return F.conv2d(h, (w.transpose(0, 1) if inverse else w)[:, :, None, None])

    def forward(self, h: Tensor, k: int = 0) -> Tensor:
        return self.apply_weight(h, self.weights()[k])

    def inverse(self, h: Tensor, k: int = 0) -> Tensor:
        return self.apply_weight(h, self.weights()[k], inverse=True)


class AdditiveCoupling(nn.Module):
    """``h_a' = h_a + f(h_b)``, ``h_b' = h_b``, where ``(h_a, h_b)`` are the first and second
    channel halves (swapped if ``update_first`` is False).  ``f``: 3x3 conv (dilation
    ``dilation``) -> SiLU -> 1x1 conv -> SiLU -> 3x3 conv (zero-initialised), ``hidden``
    channels inside.  ``[B, C, h, w]`` both ways."""

    def __init__(self, channels: int, hidden: int, dilation: int, update_first: bool) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"coupling needs an even channel count, got {channels}")
        half = channels // 2
        self.half = half
        self.update_first = update_first
        self.f = nn.Sequential(
            nn.Conv2d(half, hidden, 3, padding=dilation, dilation=dilation),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.SiLU(),
            nn.Conv2d(hidden, half, 3, padding=1),
        )
        last = self.f[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.zeros_(last.weight)
        assert last.bias is not None
        nn.init.zeros_(last.bias)

    def _split(self, h: Tensor) -> tuple[Tensor, Tensor]:
        a, b = h[:, : self.half], h[:, self.half :]
        return (a, b) if self.update_first else (b, a)

    def _join(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat([a, b] if self.update_first else [b, a], dim=1)

    def forward(self, h: Tensor) -> Tensor:
        a, b = self._split(h)
        return self._join(a + self.f(b), b)

    def inverse(self, h: Tensor) -> Tensor:
        a, b = self._split(h)
        return self._join(a - self.f(b), b)


class InvertibleStepNet(nn.Module):
    """The invertible network ``G_t`` of one step: blocks (orthogonal 1x1 mixing, then an
    additive coupling), one per dilation; block ``k`` updates the first channel half for even
    ``k`` and the second for odd ``k``.  ``[B, C, h, w]`` both ways."""

    def __init__(self, channels: int, hidden: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.mix = OrthogonalMix(channels, len(dilations))
        self.couplings = nn.ModuleList(
            AdditiveCoupling(channels, hidden, int(d), update_first=(k % 2 == 0))
            for k, d in enumerate(dilations)
        )

    def forward(self, h: Tensor) -> Tensor:
        w = self.mix.weights()
        for k, coupling in enumerate(self.couplings):
            h = coupling(OrthogonalMix.apply_weight(h, w[k]))
        return h

    def inverse(self, h: Tensor) -> Tensor:
        w = self.mix.weights()
        for k in reversed(range(len(self.couplings))):
            h = OrthogonalMix.apply_weight(self.couplings[k].inverse(h), w[k], inverse=True)
        return h


class IRIM(nn.Module):
    """Invertible RIM: ``forward(y [B, 1, H, W] complex, mask [W] bool)`` -> image
    ``[B, 1, H, W]`` float, the magnitude of the final estimate (non-negative via ``abs``).

    ``H`` and ``W`` must be even.  ``y`` is masked again, so unsampled columns are ignored.
    See the module docstring for the design; ``memory_efficient`` switches the backward pass to
    recomputation by inversion (same gradients, activation memory independent of the steps).
    """

    name = "irim"

    def __init__(self, cfg: IRIMConfig, *, memory_efficient: bool = False) -> None:
        super().__init__()
        if cfg.multiplicity < 2:
            raise ValueError(
                f"i-RIM needs multiplicity >= 2 (image + gradient slot), got {cfg.multiplicity}"
            )
        if cfg.n_steps < 1 or not cfg.dilations or min(cfg.dilations) < 1:
            raise ValueError(
                f"i-RIM needs n_steps >= 1 and positive dilations, got {cfg.n_steps}, "
                f"{cfg.dilations}"
            )
        self.cfg = cfg
        self.channels = IMG_CH * cfg.multiplicity
        self.slot = self.channels // 2  # first channel of the gradient slot
        self.memory_efficient = memory_efficient
        self.nets = nn.ModuleList(
            InvertibleStepNet(self.channels, cfg.hidden, tuple(cfg.dilations))
            for _ in range(cfg.n_steps)
        )

    def config_dict(self) -> dict:
        """Architecture hyper-parameters (JSON-serialisable) for checkpoint sidecars."""
        c = self.cfg
        return {
            "n_steps": c.n_steps,
            "multiplicity": c.multiplicity,
            "hidden": c.hidden,
            "dilations": list(c.dilations),
            "latent_channels": self.channels,
            "shuffle": SHUFFLE,
            "coupling": "additive",
            "mixing": "orthogonal 1x1 (matrix exponential)",
            "shared_weights": False,
            "output": "magnitude",
        }

    # -- pieces --------------------------------------------------------------------------------

    def initial_state(self, y: Tensor) -> Tensor:
        """``h_0``: ``pixel_unshuffle(Re F^-1 y)`` in the image channels, zeros elsewhere.
        ``y`` complex ``[B, 1, H, W]`` (already masked) -> ``[B, C, H/2, W/2]``."""
        x0 = zero_filled_real(y)
        z = F.pixel_unshuffle(x0, SHUFFLE)
        pad = z.new_zeros(z.shape[0], self.channels - IMG_CH, *z.shape[-2:])
        return torch.cat([z, pad], dim=1)

    @staticmethod
    def image_of(h: Tensor) -> Tensor:
        """The (signed) image estimate held by ``h``: ``[B, C, h, w] -> [B, 1, 2h, 2w]``."""
        return F.pixel_shuffle(h[:, :IMG_CH], SHUFFLE)

    def inject(self, h: Tensor, y: Tensor, mask: Tensor, sign: float = 1.0) -> Tensor:
        """Add ``sign * (-pixel_unshuffle(dc_gradient(x, y, mask)))`` to the slot channels,
        ``x = image_of(h)``; ``sign = -1`` undoes it.  ``[B, C, h, w]`` both ways."""
        g = F.pixel_unshuffle(dc_gradient(self.image_of(h), y, mask), SHUFFLE)
        s0, s1 = self.slot, self.slot + IMG_CH
        return torch.cat([h[:, :s0], h[:, s0:s1] - sign * g, h[:, s1:]], dim=1)

    def net_forward(self, h: Tensor, t: int) -> Tensor:
        """The invertible network ``G_t`` of step ``t`` (no data term)."""
        return self.nets[t](h)

    def net_inverse(self, h: Tensor, t: int) -> Tensor:
        """``G_t^{-1}``."""
        return self.nets[t].inverse(h)

    def step_forward(self, h: Tensor, y: Tensor, mask: Tensor, t: int) -> Tensor:
        """One recurrent step ``h_t -> h_{t+1}``: gradient injection, then ``G_t``."""
        return self.net_forward(self.inject(h, y, mask, 1.0), t)

    def step_inverse(self, h: Tensor, y: Tensor, mask: Tensor, t: int) -> Tensor:
        """Exact inverse of :meth:`step_forward` for the same ``y``, ``mask``, ``t``."""
        return self.inject(self.net_inverse(h, t), y, mask, -1.0)

    def forward_latent(self, y: Tensor, mask: Tensor) -> Tensor:
        """All steps from ``h_0 = initial_state(y)``; returns ``h_T`` ``[B, C, H/2, W/2]``."""
        h = self.initial_state(y)
        if self.memory_efficient and torch.is_grad_enabled():
            params = tuple(self.nets.parameters())
            return _InvertibleSteps.apply(h, y, mask, self, *params)
        for t in range(self.cfg.n_steps):
            h = self.step_forward(h, y, mask, t)
        return h

    def inverse_latent(self, h: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        """Run all steps backwards: ``h_T -> h_0``."""
        for t in reversed(range(self.cfg.n_steps)):
            h = self.step_inverse(h, y, mask, t)
        return h

    def forward(self, y: Tensor, mask: Tensor) -> Tensor:
        _check_inputs(y, mask)
        real = self.nets[0].mix.skew.dtype
        y = undersample(y.to(torch.complex128 if real == torch.float64 else torch.complex64), mask)
        h = self.forward_latent(y, mask)
        return self.image_of(h).abs()


class _InvertibleSteps(torch.autograd.Function):
    """``h_0 -> h_T`` through all steps without storing activations: the backward pass
    reconstructs every ``h_t`` from ``h_{t+1}`` by :meth:`IRIM.step_inverse` and re-runs that
    one step under autograd to get its vector-Jacobian product."""

    @staticmethod
    def forward(ctx: Any, h0: Tensor, y: Tensor, mask: Tensor, model: IRIM, *params: Tensor):
        with torch.no_grad():
            h = h0
            for t in range(model.cfg.n_steps):
                h = model.step_forward(h, y, mask, t)
        ctx.model = model
        ctx.mask = mask
        ctx.save_for_backward(h, y)
        return h

    @staticmethod
    def backward(ctx: Any, grad_h: Tensor):
        h, y = ctx.saved_tensors
        model: IRIM = ctx.model
        mask: Tensor = ctx.mask
        need_y = ctx.needs_input_grad[1]
        all_params = list(model.nets.parameters())
        index = {id(p): i for i, p in enumerate(all_params)}
        grad_params: list[Tensor | None] = [None] * len(all_params)
        grad_y = torch.zeros_like(y) if need_y else None
        for t in reversed(range(model.cfg.n_steps)):
            with torch.no_grad():
                h_prev = model.step_inverse(h, y, mask, t)
            step_params = [p for p in model.nets[t].parameters() if p.requires_grad]
            with torch.enable_grad():
                h_in = h_prev.detach().requires_grad_(True)
                y_in = y.detach().requires_grad_(need_y)
                out = model.step_forward(h_in, y_in, mask, t)
                inputs = [h_in] + ([y_in] if need_y else []) + step_params
                grads = torch.autograd.grad(out, inputs, grad_h, allow_unused=True)
            grad_h = grads[0]
            k = 1
            if need_y:
                assert grad_y is not None
                if grads[1] is not None:
                    grad_y = grad_y + grads[1]
                k = 2
            for p, g in zip(step_params, grads[k:], strict=True):
                grad_params[index[id(p)]] = g
            h = h_prev
        return (grad_h, grad_y, None, None, *grad_params)


__all__ = ["IRIM", "AdditiveCoupling", "InvertibleStepNet", "OrthogonalMix"]
