"""Image-quality metrics: conventions and sanity."""

from __future__ import annotations

import math

import pytest
import torch

from mripkg import metrics


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reference(b: int = 2, n: int = 48, seed: int = 0) -> torch.Tensor:
    """Images whose min is exactly 0 and max exactly 1 (min-max normalisation is then the
    identity); every other pixel lies in [0.2, 0.8]."""
    ref = 0.2 + 0.6 * torch.rand(b, 1, n, n, generator=_gen(seed), dtype=torch.float64)
    ref[:, :, 0, 0] = 0.0
    ref[:, :, 0, 1] = 1.0
    return ref


def _interior_noise(ref: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    """+-sigma on every pixel except the two extremes: the MSE is known exactly and the noisy
    image keeps min 0 and max 1."""
    sign = torch.randint(0, 2, ref.shape, generator=_gen(seed), dtype=torch.int64) * 2 - 1
    noise = sigma * sign.to(ref.dtype)
    noise[:, :, 0, :2] = 0.0
    return ref + noise


def test_identical_images():
    ref = _reference()
    assert torch.allclose(metrics.ssim(ref, ref), torch.ones(2, dtype=torch.float64), atol=1e-6)
    p = metrics.psnr(ref, ref)
    assert p.shape == (2,)
    assert bool((torch.isinf(p) | (p > 100)).all())
    assert torch.all(metrics.nmse(ref, ref) == 0)
    assert torch.allclose(metrics.ssim_fastmri(ref, ref), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("sigma", [0.01, 0.05])
def test_known_noise_level_gives_expected_psnr(sigma):
    ref = _reference()
    noisy = _interior_noise(ref, sigma)
    n_pix = ref[0].numel()
    mse = sigma**2 * (n_pix - 2) / n_pix
    expected = 10 * math.log10(1.0 / mse)
    got = metrics.psnr(noisy, ref)
    assert torch.allclose(got, torch.full_like(got, expected), atol=1e-6)
    # no normalisation and data range = max(ref) = 1: the fastMRI variant agrees here
    got_fm = metrics.psnr_fastmri(noisy, ref)
    assert torch.allclose(got_fm, torch.full_like(got_fm, expected), atol=1e-6)
    # more noise, lower SSIM
    assert bool((metrics.ssim(noisy, ref) < 1).all())


def test_paper_convention_ignores_affine_intensity_changes():
    ref = _reference()
    x = _interior_noise(ref, 0.03)
    scaled = 3.0 * x + 0.5  # min-max normalisation undoes this
    assert torch.allclose(metrics.psnr(scaled, ref), metrics.psnr(x, ref), atol=1e-9)
    assert torch.allclose(metrics.ssim(scaled, ref), metrics.ssim(x, ref), atol=1e-9)


def test_more_noise_lower_psnr_and_ssim():
    ref = _reference()
    low, high = _interior_noise(ref, 0.01), _interior_noise(ref, 0.08)
    assert bool((metrics.psnr(high, ref) < metrics.psnr(low, ref)).all())
    assert bool((metrics.ssim(high, ref) < metrics.ssim(low, ref)).all())


def _head_case(n: int = 64):
    """A disk-shaped 'head' (radius 16) with the extremes 0 and 1 inside it, a zero
    background, a noisy reconstruction, and the same reconstruction with its far background
    (more than 10 pixels from the head) changed."""
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    dist = ((yy - n / 2) ** 2 + (xx - n / 2) ** 2).sqrt()
    head = (dist < 16)[None, None]
    ref = torch.where(head, 0.2 + 0.6 * torch.rand(1, 1, n, n, generator=_gen(3)), 0.0)
    ref = ref.to(torch.float64)
    ref[0, 0, n // 2, n // 2] = 1.0
    ref[0, 0, n // 2, n // 2 + 1] = 0.0
    rec = ref + torch.where(head, 0.03 * torch.randn(1, 1, n, n, generator=_gen(4)), 0.0)
    rec = rec.clamp(0, 1)
    far = (dist > 26)[None, None]
    rec2 = torch.where(far, 0.1 + 0.4 * torch.rand(1, 1, n, n, generator=_gen(5)), rec)
    rec2 = rec2.to(torch.float64)
    return ref, rec, rec2, head


def test_head_metrics_ignore_the_background():
    ref, rec, rec2, head = _head_case()
    assert torch.allclose(metrics.psnr_head(rec2, ref, head), metrics.psnr_head(rec, ref, head))
    assert torch.allclose(metrics.ssim_head(rec2, ref, head), metrics.ssim_head(rec, ref, head))
    # ... while the whole-image metrics do see the background change
    assert float(metrics.psnr(rec2, ref)) < float(metrics.psnr(rec, ref)) - 1.0
    assert float(metrics.ssim(rec2, ref)) < float(metrics.ssim(rec, ref))


def test_head_mask_must_match_and_be_non_empty():
    ref, rec, _, head = _head_case()
    with pytest.raises(ValueError, match="mask shape"):
        metrics.psnr_head(rec, ref, head[..., :10])
    with pytest.raises(ValueError, match="empty"):
        metrics.ssim_head(rec, ref, torch.zeros_like(head))


def test_nan_input_raises():
    ref = _reference()
    bad = ref.clone()
    bad[0, 0, 5, 5] = float("nan")
    for fn in (metrics.psnr, metrics.ssim, metrics.nmse, metrics.psnr_fastmri):
        with pytest.raises(ValueError, match="NaN"):
            fn(bad, ref)
        with pytest.raises(ValueError, match="NaN"):
            fn(ref, bad)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.psnr(_reference(n=48), _reference(n=32))
    with pytest.raises(ValueError, match="shape"):
        metrics.ssim(torch.rand(48, 48), torch.rand(48, 48))  # a 2-D image is not a batch


def test_batch_without_channel_axis_and_all_metrics():
    ref = _reference()
    x = _interior_noise(ref, 0.02)
    p3 = metrics.psnr(x[:, 0], ref[:, 0])
    assert torch.allclose(p3, metrics.psnr(x, ref))
    out = metrics.all_metrics(x, ref, torch.ones_like(ref, dtype=torch.bool))
    assert set(out) >= {"psnr", "ssim", "nmse", "psnr_head", "ssim_head", "psnr_fastmri"}
    for v in out.values():
        assert v.shape == (2,) and torch.isfinite(v).all()
    mean, sd = metrics.summarize(out["psnr"])
    assert math.isfinite(mean) and sd >= 0


def test_ssim_does_not_depend_on_the_chunking() -> None:
    g = torch.Generator().manual_seed(3)
    ref = torch.rand(11, 1, 32, 32, generator=g)
    x = ref + 0.1 * torch.rand(11, 1, 32, 32, generator=g)
    mask = torch.ones(11, 1, 32, 32, dtype=torch.bool)
    whole = [
        torch.cat([metrics.ssim(x[i : i + 1], ref[i : i + 1]) for i in range(11)]),
        torch.cat(
            [metrics.ssim_head(x[i : i + 1], ref[i : i + 1], mask[i : i + 1]) for i in range(11)]
        ),
    ]
    assert metrics.SSIM_CHUNK < 11  # several chunks
    torch.testing.assert_close(metrics.ssim(x, ref), whole[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(metrics.ssim_head(x, ref, mask), whole[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 3, 11])
def test_ssim_chunk_size_changes_no_bit(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunk size is a memory setting: every value is bit-identical to chunks of 2."""
    g = torch.Generator().manual_seed(4)
    ref = torch.rand(11, 1, 32, 32, generator=g)
    x = ref + 0.2 * torch.rand(11, 1, 32, 32, generator=g)
    monkeypatch.setattr(metrics, "SSIM_CHUNK", 2)
    want, want_map = metrics.ssim(x, ref), metrics.ssim_map(x, ref)
    monkeypatch.setattr(metrics, "SSIM_CHUNK", chunk)
    assert torch.equal(metrics.ssim(x, ref), want)
    assert torch.equal(metrics.ssim_map(x, ref), want_map)
