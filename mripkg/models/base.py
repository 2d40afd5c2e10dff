"""The interface every reconstruction model shares."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from ..physics import zero_filled


@runtime_checkable
class Reconstructor(Protocol):
    """``recon(y, mask) -> image``.

    ``y``: measured k-space, complex ``[B, 1, H, W]`` (unsampled columns zero);
    ``mask``: bool ``[W]`` over columns; returns a real, non-negative image ``[B, 1, H, W]``.
    Differentiable with respect to ``y`` (the attacks need that).
    """

    name: str

    def __call__(self, y: Tensor, mask: Tensor) -> Tensor: ...


class ZeroFilled(nn.Module):
    """The trivial baseline: the magnitude of the zero-filled inverse FFT, ``|F^-1 y|``
    (non-negative by construction).  No parameters."""

    name = "zero_filled"

    def forward(self, y: Tensor, mask: Tensor) -> Tensor:  # noqa: D102
        return zero_filled(y)
