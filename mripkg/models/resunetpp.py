"""ResUNet++ (Jha et al. 2019) as a supervised single-coil MRI reconstructor.

Input: the real part of the zero-filled image, ``Re F^-1 (M y)`` ``[B, 1, H, W]``.  Output: a
sigmoid image in ``(0, 1)`` ``[B, 1, H, W]`` (non-negative by construction).

With ``filters = (f0, f1, ..., f_{n-1})`` (as in Jha et al.'s reference code):

* encoder: a stem block (conv-BN-ReLU-conv plus a 1x1 conv-BN shortcut) with ``f0`` channels at
  full resolution, then residual blocks ``f1 .. f_{n-2}``, each halving the resolution with a
  stride-2 convolution.  Residual blocks are pre-activation (BN-ReLU-conv, twice) with a 1x1
  conv-BN shortcut; every block ends in squeeze-and-excitation (channel ratio 8);
* bridge: ASPP with ``f_{n-1}`` channels at ``1 / 2**(n-2)`` resolution (no further downsampling);
* decoder, for each skip from the deepest to the stem: an attention gate (computed from the skip
  and the decoder features, applied to the decoder features as in ResUNet++), bilinear 2x
  upsampling, concatenation with the skip, a residual block with ``f_{j+1}`` channels;
* head: an ASPP block with ``f0`` channels, a 1x1 convolution to one channel, a sigmoid.

So ``(32, 64, 128, 256, 512)`` at 256 px is the paper's network (bridge 32 x 32); ``(16, 32, 64,
128)`` at 128 px has a 32 x 32 bridge too; ``(8, 16, 32, 64)`` at 64 px a 16 x 16 bridge.

ASPP dilation rates.  Jha et al. use 6, 12 and 18 (plus a rate-1 branch), chosen for a 32 x 32
bridge.  On a smaller map most taps of such a kernel read zero padding, so the rates are scaled
to the feature map's side ``s`` at run time: ``rate * min(1, s / 32)``, rounded, at least 2 and
strictly increasing (distinct from each other and from the rate-1 branch).  Maps of side >= 32
(the paper's bridge, and the full-resolution head) use 6, 12, 18 unchanged; a 16 x 16 bridge uses
3, 6, 9; an 8 x 8 bridge 2, 3, 5.  The kernels themselves do not depend on the rate.

Deviations from Jha et al. (all cheap on CPU, none change the data flow): the attention gate
max-pools the skip before (not after) its 3x3 convolution, maps to a single-channel attention
map through a 1x1 convolution and bounds it with a sigmoid (Oktay et al.'s gate) instead of an
unbounded product; its inner width is the skip's channel count.  ASPP branch sums pass a ReLU
before the 1x1 projection.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..physics import undersample, zero_filled_real
from ..profiles import ResUNetPPConfig

ASPP_BASE_RATES: tuple[int, ...] = (6, 12, 18)
ASPP_REF_SIZE: int = 32  # feature-map side the base rates are meant for (256 px input, 3 downs)
SE_RATIO: int = 8


def scaled_aspp_rates(
    size: int, base: tuple[int, ...] = ASPP_BASE_RATES, ref_size: int = ASPP_REF_SIZE
) -> tuple[int, ...]:
    """Dilation rates for an ASPP block on a feature map of side ``size`` (pixels).

    ``base`` scaled by ``min(1, size / ref_size)``, rounded half up, then forced to be >= 2 and
    strictly increasing (the ASPP also has a rate-1 branch).  E.g. 32 -> (6, 12, 18),
    16 -> (3, 6, 9), 8 -> (2, 3, 5), 4 -> (2, 3, 4).
    """
    scale = min(1.0, size / ref_size)
    rates: list[int] = []
    prev = 1
    for r in base:
        r_s = max(int(math.floor(r * scale + 0.5)), prev + 1)
        rates.append(r_s)
        prev = r_s
    return tuple(rates)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: channel weights in (0, 1) from global average pooling.
    ``[B, C, H, W] -> [B, C, H, W]``."""

    def __init__(self, channels: int, ratio: int = SE_RATIO) -> None:
        super().__init__()
        hidden = max(channels // ratio, 2)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * s[:, :, None, None]


class StemBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3 plus a 1x1 conv-BN shortcut, then SE.
    ``[B, c_in, H, W] -> [B, c_out, H, W]``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.se = SqueezeExcite(c_out)

    def forward(self, x: Tensor) -> Tensor:
        r = self.conv2(F.relu(self.bn1(self.conv1(x))))
        return self.se(r + self.skip(x))


class ResidualBlock(nn.Module):
    """Pre-activation residual block: (BN-ReLU-conv3x3) x 2, the first with ``stride``; a 1x1
    conv-BN shortcut with the same stride; then SE.
    ``[B, c_in, H, W] -> [B, c_out, H / stride, W / stride]``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
        )
        self.se = SqueezeExcite(c_out)

    def forward(self, x: Tensor) -> Tensor:
        r = self.conv1(F.relu(self.bn1(x)))
        r = self.conv2(F.relu(self.bn2(r)))
        return self.se(r + self.skip(x))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: parallel 3x3 conv-BN branches at rate 1 and at the
    size-scaled rates of :func:`scaled_aspp_rates`, summed, ReLU, 1x1 conv.
    ``[B, c_in, H, W] -> [B, c_out, H, W]``."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        base_rates: tuple[int, ...] = ASPP_BASE_RATES,
        ref_size: int = ASPP_REF_SIZE,
    ) -> None:
        super().__init__()
        self.base_rates = tuple(base_rates)
        self.ref_size = ref_size
        n = 1 + len(self.base_rates)
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 3, bias=False) for _ in range(n))
        self.bns = nn.ModuleList(nn.BatchNorm2d(c_out) for _ in range(n))
        self.proj = nn.Conv2d(c_out, c_out, 1)

    def rates(self, size: int) -> tuple[int, ...]:
        """All branch dilation rates (rate 1 first) for a feature map of side ``size``."""
        return (1, *scaled_aspp_rates(size, self.base_rates, self.ref_size))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor | None = None
        for conv, bn, r in zip(self.convs, self.bns, self.rates(min(x.shape[-2:])), strict=True):
            b = bn(F.conv2d(x, conv.weight, None, padding=r, dilation=r))
            out = b if out is None else out + b
        assert out is not None
        return self.proj(F.relu(out))


class AttentionGate(nn.Module):
    """ResUNet++ attention: a spatial map in (0, 1) computed from the skip (max-pooled to the
    decoder's resolution) and the decoder features, multiplied onto the decoder features.
    ``skip [B, c_skip, 2H, 2W]``, ``dec [B, c_dec, H, W]`` -> ``[B, c_dec, H, W]``."""

    def __init__(self, c_skip: int, c_dec: int, c_int: int) -> None:
        super().__init__()
        self.bn_s = nn.BatchNorm2d(c_skip)
        self.conv_s = nn.Conv2d(c_skip, c_int, 3, padding=1)
        self.bn_d = nn.BatchNorm2d(c_dec)
        self.conv_d = nn.Conv2d(c_dec, c_int, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(c_int)
        self.conv_a = nn.Conv2d(c_int, 1, 1)

    def forward(self, skip: Tensor, dec: Tensor) -> Tensor:
        s = self.conv_s(F.max_pool2d(F.relu(self.bn_s(skip)), 2))
        d = self.conv_d(F.relu(self.bn_d(dec)))
        a = torch.sigmoid(self.conv_a(F.relu(self.bn_a(s + d))))
        return dec * a


def check_kspace_input(model: str, y: Tensor, mask: Tensor, divisor: int) -> None:
    """Raise ``ValueError`` naming the problem unless ``y`` is complex ``[B, 1, H, W]`` with
    ``H`` and ``W`` divisible by ``divisor`` and ``mask`` is a bool ``[W]``."""
    if not torch.is_complex(y):
        raise ValueError(f"{model}: y must be complex k-space, got dtype {y.dtype}")
    if y.ndim != 4 or y.shape[1] != 1:
        raise ValueError(f"{model}: y must have shape [B, 1, H, W], got {tuple(y.shape)}")
    if y.shape[-2] % divisor or y.shape[-1] % divisor:
        raise ValueError(
            f"{model}: image sides must be divisible by {divisor}, got {tuple(y.shape[-2:])}"
        )
    if mask.ndim != 1 or mask.dtype != torch.bool:
        raise ValueError(
            f"{model}: mask must be a 1-D bool tensor over columns, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    if mask.shape[0] != y.shape[-1]:
        raise ValueError(
            f"{model}: mask has {mask.shape[0]} columns but y has {y.shape[-1]} "
            f"(shape {tuple(y.shape)})"
        )


class ResUNetPP(nn.Module):
    """ResUNet++ reconstructor: ``forward(y [B, 1, H, W] complex, mask [W] bool)`` ->
    image ``[B, 1, H, W]`` float in (0, 1).

    The input image is ``Re F^-1 (M y)`` (``y`` is masked again, so anything in unsampled
    columns is ignored).  The output is non-negative because it is a sigmoid.  ``H`` and ``W``
    must be divisible by ``2 ** (len(filters) - 2)``.
    """

    name = "resunetpp"

    def __init__(self, cfg: ResUNetPPConfig) -> None:
        super().__init__()
        f = tuple(int(c) for c in cfg.filters)
        if len(f) < 3 or min(f) < 1:
            raise ValueError(f"ResUNet++ needs >= 3 positive filter counts, got {cfg.filters}")
        self.cfg = cfg
        self.filters = f
        n = len(f)
        self.stem = StemBlock(1, f[0])
        self.encoder = nn.ModuleList(
            ResidualBlock(f[i - 1], f[i], stride=2) for i in range(1, n - 1)
        )
        self.bridge = ASPP(f[n - 2], f[n - 1])
        self.gates = nn.ModuleList()
        self.decoder = nn.ModuleList()
        c_dec = f[n - 1]
        for j in range(n - 3, -1, -1):  # skips: encoder outputs f[n-3] .. f[0]
            self.gates.append(AttentionGate(f[j], c_dec, f[j]))
            self.decoder.append(ResidualBlock(c_dec + f[j], f[j + 1]))
            c_dec = f[j + 1]
        self.head = ASPP(c_dec, f[0])
        self.out = nn.Conv2d(f[0], 1, 1)

    @property
    def divisor(self) -> int:
        """Image sides must be divisible by this (``2 ** number of stride-2 blocks``)."""
        return 2 ** (len(self.filters) - 2)

    def config_dict(self) -> dict:
        """Architecture hyper-parameters (JSON-serialisable) for checkpoint sidecars."""
        return {
            "filters": list(self.filters),
            "aspp_base_rates": list(ASPP_BASE_RATES),
            "aspp_ref_size": ASPP_REF_SIZE,
            "se_ratio": SE_RATIO,
            "input": "real zero-filled image",
            "output": "sigmoid",
        }

    def aspp_rates(self, image_size: int) -> dict[str, tuple[int, ...]]:
        """The dilation rates the bridge and the head use for an ``image_size`` px input."""
        return {
            "bridge": self.bridge.rates(image_size // self.divisor),
            "head": self.head.rates(image_size),
        }

    def forward(self, y: Tensor, mask: Tensor) -> Tensor:
        check_kspace_input("ResUNet++", y, mask, self.divisor)
        x = zero_filled_real(undersample(y, mask))
        x = x.to(self.out.weight.dtype)
        skips = [self.stem(x)]
        for block in self.encoder:
            skips.append(block(skips[-1]))
        d = self.bridge(skips.pop())
        for gate, block in zip(self.gates, self.decoder, strict=True):
            skip = skips.pop()
            d = gate(skip, d)
            d = F.interpolate(d, scale_factor=2.0, mode="bilinear", align_corners=False)
            d = block(torch.cat([d, skip], dim=1))
        return torch.sigmoid(self.out(self.head(d)))


__all__ = ["ResUNetPP", "scaled_aspp_rates"]
