"""Benchmarks: speed, memory and sampler quality, printed and saved (never asserted in tests).

``python -m mripkg.bench --profile quick`` writes ``runs/<profile>/bench.json`` with, per model:
parameter count, training-step time at the profile's batch size, reconstruction time per slice
at batch 1 and 8, attack step time (one Adam step of the Eq. 5 attack, batch 1) and the peak
resident memory of a process that does only that; for the DDPM sampler, test PSNR / SSIM and
time per slice against the number of sampler steps.  Each model runs in a fresh subprocess so
that the peak memory belongs to it alone.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time
from pathlib import Path
from typing import Any

import torch

from .checkpoints import atomic_write_json
from .paths import checkpoint_dir, run_dir, shipped_weights_dir
from .profiles import Profile, cli_profile, get_profile, setup_torch

SAMPLER_STEPS = (25, 50, 100, 250, 1000)


def _weights_path(name: str, profile: Profile) -> Path | None:
    for d in (shipped_weights_dir(profile.name), checkpoint_dir(profile.name)):
        p = d / f"{name}.safetensors"
        if p.is_file():
            return p
    return None


def _timeit(fn, repeat: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _bench_model(name: str, profile_name: str) -> dict[str, Any]:
    from .attacks import kspace_attack
    from .data import load_dataset
    from .models.ddpm import DiffusionReconstructor, NoiseSchedule, ddpm_loss
    from .physics import equispaced_mask, fft2c, undersample
    from .train import build_model, load_model, model_settings

    profile = get_profile(profile_name)
    setup_torch(profile)
    ds = load_dataset(profile)
    mask = equispaced_mask(profile.image_size)
    x8 = ds["test"].images[:8]
    y8 = undersample(fft2c(x8), mask)
    net = build_model(name, profile)
    out: dict[str, Any] = {"params": sum(p.numel() for p in net.parameters())}
    cfg = model_settings(name, profile)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    xb = ds["train"].images[: cfg.batch_size]
    if name == "ddpm":
        c = cfg.crop_size
        xb = 2 * xb[..., :c, :c] - 1
        sched = NoiseSchedule()

        def train_step() -> None:
            opt.zero_grad()
            ddpm_loss(net, xb, sched, g).backward()
            opt.step()
    else:
        yb = undersample(fft2c(xb), mask)

        def train_step() -> None:
            opt.zero_grad()
            (net(yb, mask) - xb).abs().mean().backward()
            opt.step()

    out["train_step_s"] = _timeit(train_step, 2)
    out["train_batch"] = cfg.batch_size
    wp = _weights_path(name, profile)
    if wp is not None:
        net, _ = load_model(name, profile, wp)
        out["weights"] = str(wp)
    net.eval()
    model = DiffusionReconstructor(net, steps=profile.ddpm.sampler_steps) if name == "ddpm" else net
    for p in net.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        out["recon_s_per_slice_b1"] = _timeit(
            lambda: model(y8[:1], mask), 1 if name == "ddpm" else 3
        )
        out["recon_s_per_slice_b8"] = _timeit(lambda: model(y8, mask), 1) / 8
    if name == "ddpm":
        out["sampler_steps"] = profile.ddpm.sampler_steps
        short = DiffusionReconstructor(net, steps=profile.attack.diffusion_steps)

        def attack_step() -> None:
            kspace_attack(
                lambda y, m: short.reconstruct(y, m, grad_checkpoint=True),
                fft2c(x8[:1]),
                mask,
                0.04,
                steps=1,
                generator=torch.Generator().manual_seed(0),
                progress=False,
            )

        out["attack_objective"] = f"{profile.attack.diffusion_steps}-step fixed-noise sampler"
    else:

        def attack_step() -> None:
            kspace_attack(
                model,
                fft2c(x8[:1]),
                mask,
                0.04,
                steps=1,
                generator=torch.Generator().manual_seed(0),
                progress=False,
            )

    out["attack_step_s"] = _timeit(attack_step, 1)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _bench_sampler(profile_name: str, steps_list: tuple[int, ...], n_slices: int) -> dict[str, Any]:
    from . import metrics
    from .data import load_dataset
    from .models.ddpm import DiffusionReconstructor
    from .physics import equispaced_mask, fft2c, undersample
    from .train import load_model

    profile = get_profile(profile_name)
    setup_torch(profile)
    wp = _weights_path("ddpm", profile)
    if wp is None:
        return {"skipped": "no trained DDPM weights for this profile"}
    net, meta = load_model("ddpm", profile, wp)
    ds = load_dataset(profile)
    test = ds["test"]
    idx = torch.linspace(0, len(test) - 1, n_slices).round().long().tolist()
    x = test.images[idx]
    mask = equispaced_mask(profile.image_size)
    y = undersample(fft2c(x), mask)
    rows = []
    for steps in steps_list:
        rec = DiffusionReconstructor(net, steps=steps, seed=0)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = rec.reconstruct(y, mask, slice_ids=idx)
        dt = (time.perf_counter() - t0) / len(idx)
        rows.append(
            {
                "steps": steps,
                "s_per_slice": dt,
                "psnr": float(metrics.psnr(out, x).mean()),
                "ssim": float(metrics.ssim(out, x).mean()),
            }
        )
        print(
            f"  sampler {steps:5d} steps: {dt:6.2f} s/slice, PSNR {rows[-1]['psnr']:.2f} dB, "
            f"SSIM {rows[-1]['ssim']:.3f}",
            flush=True,
        )
    return {"weights": str(wp), "train_step": meta.get("step"), "slices": idx, "rows": rows}


def _child(q: mp.Queue, fn: str, args: tuple) -> None:
    try:
        q.put(("ok", globals()[fn](*args)))
    except Exception as exc:  # report, don't hang the parent
        q.put(("error", f"{type(exc).__name__}: {exc}"))


def _in_subprocess(fn: str, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, fn, args))
    p.start()
    status, res = q.get()
    p.join()
    return res if status == "ok" else {"error": res}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--models", default="resunetpp,irim,ddpm")
    ap.add_argument("--sampler-steps", default=",".join(map(str, SAMPLER_STEPS)))
    ap.add_argument("--sampler-slices", type=int, default=4)
    args = ap.parse_args(argv)
    profile = cli_profile(args.profile)
    setup_torch(profile)
    report: dict[str, Any] = {
        "profile": profile.name,
        "image_size": profile.image_size,
        "threads": profile.threads,
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "models": {},
    }
    for name in [m for m in args.models.split(",") if m]:
        print(f"[bench] {name} ...", flush=True)
        res = _in_subprocess("_bench_model", name, profile.name)
        report["models"][name] = res
        print(f"  {json.dumps(res)}", flush=True)
    steps = tuple(int(s) for s in args.sampler_steps.split(",") if s)
    if steps:
        print("[bench] DDPM sampler: PSNR and time against steps", flush=True)
        report["sampler"] = _in_subprocess(
            "_bench_sampler", profile.name, steps, args.sampler_slices
        )
    path = run_dir(profile.name) / "bench.json"
    atomic_write_json(path, report)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
