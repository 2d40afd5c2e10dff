"""Benchmarks: speed, memory and sampler quality, printed and saved (never asserted in tests).

``python -m mripkg.bench --profile quick`` writes ``runs/<profile>/bench.json`` with, per model:
parameter count, training-step time at the profile's batch size, reconstruction time per slice
at batch 1 and 8, attack step time (one Adam step of the Eq. 5 attack, batch 1) and the peak
resident memory of a process that does only that; for the DDPM sampler, test PSNR / SSIM and
time per slice against the number of sampler steps.  Each model runs in a fresh subprocess so
that the peak memory belongs to it alone.

``--levers base,bf16,spacing,compile,warm_start,combo,dds,attack`` (beyond ``make bench``,
issue 12) measures speed levers of the diffusion sampler on ``--lever-slices`` VALIDATION slices
(settings are chosen on validation; the test split appears only in one final row, the chosen
setting's, for reporting; the lever functions refuse a test split),
each a row with seconds per slice and PSNR against the paper's 1000-step projection sampler
on the same slices (computed once, cached), into ``runs/<profile>/bench_levers.json``;
``dds`` adds the DDS-style sampler rows (the quick default among them), ``attack`` the attack
step time in float32 and bfloat16; ``--models "" --sampler-steps ""`` runs only those.

``attack`` in bench.json (on unless ``--no-attack``; issue 18): the attack variants (cold
100 steps, continuation along the eps grid with a plateau stop) on validation slices, with ms
per (pair, step), mean steps used, damage relative to the cold attack and to a 300-step
reference, and the estimated attack CPU seconds of notebook 03 (:mod:`mripkg.app.attack_bench`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..fingerprint import stamp
from ..io import atomic_write_json, cache_key, legacy_cache_key, save_safetensors
from ..models import SUPERVISED
from ..paths import checkpoint_dir, run_dir, shipped_weights_dir
from ..profiles import Profile, cli_profile, get_profile, setup_torch

SAMPLER_STEPS = (25, 50, 100, 250, 1000)
PROJECTION_STEPS = 100  # the lever rows' baseline: quick's sampler before issue 12


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
    from ..attacks.kspace import kspace_attack
    from ..data import load_dataset
    from ..models.ddpm import DiffusionReconstructor, NoiseSchedule, ddpm_loss
    from ..physics import MRIOperator, equispaced_mask, fft2c
    from ..training.train import build_model, load_model, model_settings

    profile = get_profile(profile_name)
    setup_torch(profile)
    ds = load_dataset(profile)
    mask = equispaced_mask(profile.image_size)
    x8 = ds["test"].images[:8]
    y8 = MRIOperator(mask).A(x8)
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
        yb = MRIOperator(mask).A(xb)

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
    model = DiffusionReconstructor.from_config(net, profile.ddpm) if name == "ddpm" else net
    for p in net.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        out["recon_s_per_slice_b1"] = _timeit(
            lambda: model(y8[:1], mask), 1 if name == "ddpm" else 3
        )
        out["recon_s_per_slice_b8"] = _timeit(lambda: model(y8, mask), 1) / 8
    if name == "ddpm":
        out["sampler_steps"] = profile.ddpm.sampler_steps
        short = DiffusionReconstructor.from_config(
            net, profile.ddpm, steps=profile.attack.diffusion_steps
        )

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


def _bench_sampler(
    profile_name: str, steps_list: tuple[int, ...], n_slices: int, split: str = "val"
) -> dict[str, Any]:
    """PSNR / SSIM / time of the profile's sampler against its step count on ``split``
    (validation: the step count is a tuned setting; a test split raises)."""
    from .. import metrics
    from ..evaluation.selection import require_tuning_split

    require_tuning_split(split, "the sampler step sweep")
    from ..data import load_dataset
    from ..models.ddpm import DiffusionReconstructor
    from ..physics import MRIOperator, equispaced_mask
    from ..training.train import load_model

    profile = get_profile(profile_name)
    setup_torch(profile)
    wp = _weights_path("ddpm", profile)
    if wp is None:
        return {"skipped": "no trained DDPM weights for this profile"}
    net, meta = load_model("ddpm", profile, wp)
    ds = load_dataset(profile)
    part = ds[split]
    idx = torch.linspace(0, len(part) - 1, n_slices).round().long().tolist()
    x = part.images[idx]
    mask = equispaced_mask(profile.image_size)
    y = MRIOperator(mask).A(x)
    rows = []
    for steps in steps_list:
        rec = DiffusionReconstructor.from_config(net, profile.ddpm, seed=0, steps=steps)
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
    return {
        "weights": str(wp),
        "train_step": meta.get("step"),
        "split": split,
        "slices": idx,
        "rows": rows,
    }


def _reference_1000(net, meta, y, mask, idx, profile: Profile, split: str = "val") -> torch.Tensor:
    """The 1000-step projection sampler on the benchmark slices (seed 0), computed once and
    kept in ``runs/<profile>/bench_reference_1000.safetensors`` (keyed by the weights' hash
    and the slice ids, :func:`mripkg.io.cache_key`; a reference saved under the old key still
    reads)."""
    from safetensors.torch import load_file

    from ..models.ddpm import DiffusionReconstructor

    fields = {"weights": meta.get("sha256", "")[:12], "split": split, "slices": list(idx)}
    key = cache_key(fields)
    path = run_dir(profile.name) / "bench_reference_1000.safetensors"
    if path.is_file():
        saved = load_file(str(path))
        if bytes(saved["key"].tolist()).decode() in (
            key,
            legacy_cache_key("bench_reference", fields),
        ):
            return saved["x"]
    t0 = time.perf_counter()
    with torch.no_grad():
        x = DiffusionReconstructor(net, steps=1000, seed=0).reconstruct(y, mask, slice_ids=idx)
    print(f"  1000-step reference: {(time.perf_counter() - t0) / len(idx):.1f} s/slice", flush=True)
    save_safetensors(
        path, {"x": x.contiguous(), "key": torch.tensor(list(key.encode()), dtype=torch.uint8)}
    )
    return x


class _SpacedSchedule:
    """A noise schedule whose respaced timesteps follow ``t = (T - 1) * u ** power`` for
    ``u`` evenly spaced in [0, 1] (``power = 1``: the default even spacing; ``> 1``: denser
    near t = 0), optionally stopping at ``t_start < T - 1`` (a start from a noised image)."""

    def __init__(self, base, power: float = 1.0, t_start: int | None = None) -> None:
        self.base, self.power = base, power
        self.t_start = base.num_timesteps - 1 if t_start is None else int(t_start)
        self.num_timesteps = base.num_timesteps
        self.alphas_cumprod = base.alphas_cumprod

    def respaced(self, steps: int, power: float = 1.0) -> torch.Tensor:
        """(``power``: the sampler's own spacing argument; this schedule's ``power`` wins.)"""
        import numpy as np

        u = np.linspace(0.0, 1.0, steps) ** self.power
        ts = np.unique(np.round(u * self.t_start).astype(np.int64))[::-1].copy()
        return torch.from_numpy(ts)


#: what --models and --levers accept
BENCH_MODELS = ("resunetpp", "irim", "ddpm")
LEVERS = ("base", "bf16", "spacing", "compile", "warm_start", "combo", "dds", "attack")


def _bench_levers(
    profile_name: str, n_slices: int, levers: tuple[str, ...], split: str = "val"
) -> dict[str, Any]:
    """Speed levers of the diffusion sampler, each a row: seconds per slice (best of
    ``repeat`` runs, the profile's threads) and PSNR against the ground truth and against the
    1000-step sampler on the same slices (same seed), on ``split`` (validation; a test split
    raises).  A last row reports the profile's chosen sampler once on as many test slices
    (``split: "test"``, for reporting only).  The default sampler is not changed."""
    from .. import metrics
    from ..evaluation.selection import require_tuning_split

    require_tuning_split(split, "the sampler lever table")
    from ..data import load_dataset
    from ..models.ddpm import DiffusionReconstructor, draw_sampler_noise, projection_sample
    from ..physics import MRIOperator, equispaced_mask
    from ..training.train import load_model

    profile = get_profile(profile_name)
    setup_torch(profile)
    wp = _weights_path("ddpm", profile)
    if wp is None:
        return {"skipped": "no trained DDPM weights for this profile"}
    net, meta = load_model("ddpm", profile, wp)
    net.eval()
    ds = load_dataset(profile)
    part = ds[split]
    idx = torch.linspace(0, len(part) - 1, n_slices).round().long().tolist()
    x = part.images[idx]
    mask = equispaced_mask(profile.image_size)
    y = MRIOperator(mask).A(x)
    ref = _reference_1000(net, meta, y, mask, idx, profile, split)
    ref_psnr = float(metrics.psnr(ref, x).mean())
    rec = DiffusionReconstructor(net, steps=PROJECTION_STEPS, seed=0)  # the paper's sampler
    sched = rec.schedule
    rows: list[dict[str, Any]] = []

    def row(name: str, fn, repeat: int = 2) -> None:
        try:
            best = float("inf")
            with torch.no_grad():
                for _ in range(repeat):  # the first run includes warm-up costs
                    t0 = time.perf_counter()
                    out = fn()
                    best = min(best, time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - a lever that fails is a result too
            rows.append({"lever": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
            print(f"  {name:42s} failed: {rows[-1]['error']}", flush=True)
            return
        p = float(metrics.psnr(out, x).mean())
        rows.append(
            {
                "lever": name,
                "s_per_slice": best / len(idx),
                "psnr": p,
                "psnr_vs_1000": p - ref_psnr,
            }
        )
        print(
            f"  {name:42s} {best / len(idx):6.2f} s/slice, PSNR {p:.2f} dB "
            f"({p - ref_psnr:+.2f} vs 1000 steps)",
            flush=True,
        )

    def plain(steps: int, schedule=None, batch: int | None = None, model=None, init=None):
        m = model if model is not None else net
        sch = schedule if schedule is not None else sched

        def run() -> torch.Tensor:
            b = batch or len(idx)
            outs = []
            for i in range(0, len(idx), b):
                yb, ib = y[i : i + b], idx[i : i + b]
                noise = None
                if init is not None:
                    n_steps = len(sch.respaced(steps))
                    xt, zs, ms = draw_sampler_noise(tuple(yb.shape), n_steps, 0, ib)
                    t0 = int(sch.respaced(steps)[0])
                    a = float(sch.alphas_cumprod[t0])
                    xt = a**0.5 * (2 * init[i : i + b] - 1) + (1 - a) ** 0.5 * xt
                    noise = (xt, zs, ms)
                outs.append(projection_sample(m, yb, mask, sch, steps, 0, ib, noise=noise))
            return torch.cat(outs)

        return run

    base_steps = PROJECTION_STEPS
    if "base" in levers:
        row(f"{base_steps} steps, fp32, channels_last, batch {len(idx)}", plain(base_steps))
        row(f"{base_steps} steps, batch 1", plain(base_steps, batch=1))

    def bf16(steps: int, **kw):
        run = plain(steps, **kw)

        def wrapped() -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return run().float()

        return wrapped

    if "bf16" in levers:
        row(f"{base_steps} steps, bfloat16 autocast", bf16(base_steps))
        row("50 steps, bfloat16 autocast", bf16(50))
    if "spacing" in levers:
        for steps in (50, 30):
            for power in (1.0, 2.0):
                row(
                    f"{steps} steps, spacing t ~ u^{power:g}",
                    plain(steps, schedule=_SpacedSchedule(sched, power)),
                )
    if "compile" in levers:
        row(f"{base_steps} steps, torch.compile", plain(base_steps, model=torch.compile(net)))
    if "warm_start" in levers:
        sup, _ = load_model("resunetpp", profile, _weights_path("resunetpp", profile))
        with torch.no_grad():
            x_sup = sup.eval()(y, mask).clamp(0, 1)
        row("ResUNet++ alone (the start)", lambda: sup(y, mask), repeat=2)
        for t_start, steps in ((300, 30), (500, 50), (200, 20)):
            row(
                f"start from noised ResUNet++ at t={t_start}, {steps} steps",
                plain(steps, schedule=_SpacedSchedule(sched, 1.0, t_start), init=x_sup),
            )
    if "combo" in levers:  # bfloat16 with the denser-near-0 spacing: the candidates for 3 s
        for steps in (50, 40):
            row(
                f"{steps} steps, spacing t ~ u^2, bfloat16",
                bf16(steps, schedule=_SpacedSchedule(sched, 2.0)),
            )
    if "dds" in levers:  # data consistency on the denoised estimate (models.ddpm.dds_sample)
        default = DiffusionReconstructor.from_config(net, profile.ddpm, seed=0)
        best = {"steps": 50, "spacing": 2.0, "precision": "bf16"}
        for kw in (
            {**best, "spacing": 1.0},
            {**best, "precision": "fp32"},
            best,
            {**best, "eta": 0.5},
            {**best, "eta": 0.0},
            {**best, "steps": 40},
            {**best, "steps": 30},
            {**best, "steps": 20},
        ):
            r = DiffusionReconstructor(net, seed=0, sampler="dds", **kw)  # type: ignore[arg-type]
            row(r.describe(), lambda r=r: r.reconstruct(y, mask, slice_ids=idx))
            rows[-1]["default"] = (r.sampler_tag, r.steps) == (default.sampler_tag, default.steps)
    # the one test row: the chosen setting (the profile's sampler), reported, never compared
    test = ds["test"]
    t_idx = torch.linspace(0, len(test) - 1, n_slices).round().long().tolist()
    x_t = test.images[t_idx]
    y_t = MRIOperator(mask).A(x_t)
    chosen = DiffusionReconstructor.from_config(net, profile.ddpm, seed=0)
    t0 = time.perf_counter()
    with torch.no_grad():
        out_t = chosen.reconstruct(y_t, mask, slice_ids=t_idx)
    rows.append(
        {
            "lever": f"chosen: {chosen.describe()} (test split, reported once)",
            "split": "test",
            "s_per_slice": (time.perf_counter() - t0) / len(t_idx),
            "psnr": float(metrics.psnr(out_t, x_t).mean()),
            "psnr_vs_1000": None,
            "default": True,
        }
    )
    load = os.getloadavg()[0]
    return {
        "weights": str(wp),
        "split": split,
        "test_slices": t_idx,
        "slices": idx,
        "threads": torch.get_num_threads(),
        "psnr_1000": ref_psnr,
        "default": DiffusionReconstructor.from_config(net, profile.ddpm).describe(),
        "rows": rows,
        # 1-min load average at the end: above the thread count, other work shared the CPU
        # and the times are inflated (the PSNRs are not)
        "load_average": load,
        "shared_cpu": load > torch.get_num_threads() + 0.5,
    }


def _bench_attack_precision(profile_name: str, n_pairs: int = 8, steps: int = 20) -> dict[str, Any]:
    """Attack step time per (slice, eps) pair at batch ``n_pairs`` in float32 and bfloat16
    (:func:`mripkg.attacks.in_precision`), and the damage each finds in ``steps`` Adam steps
    (measured in float32, eps 0.01 and 0.04) relative to float32's."""
    from ..attacks.kspace import kspace_attack
    from ..data import load_dataset
    from ..evaluation.clean import build_reconstructors
    from ..physics import equispaced_mask, fft2c

    profile = get_profile(profile_name)
    setup_torch(profile)
    ds = load_dataset(profile)
    models, _, _ = build_reconstructors(profile, ds)
    mask = equispaced_mask(profile.image_size)
    k = fft2c(ds["test"].images[: n_pairs // 2])
    y = k * mask.to(k.real.dtype)
    rows = []
    for name in SUPERVISED:
        net = models[name]
        damage: dict[str, float] = {}
        for precision in ("fp32", "bf16"):
            t0 = time.perf_counter()
            res = kspace_attack(
                net, k, mask, [0.01, 0.04], steps=steps, progress=False, precision=precision
            )
            dt = (time.perf_counter() - t0) / (steps * n_pairs)
            with torch.no_grad():
                f0 = net(y, mask)
                f1 = net(res.y_adv.reshape(-1, *k.shape[1:]), mask)
            damage[precision] = float((f1 - f0.repeat(2, 1, 1, 1)).pow(2).sum())
            rows.append(
                {
                    "model": name,
                    "precision": precision,
                    "ms_per_pair_step": 1e3 * dt,
                    "damage_vs_fp32": damage[precision] / damage["fp32"],
                }
            )
            print(
                f"  attack {name:10s} {precision}: {1e3 * dt:6.1f} ms per pair and step, damage "
                f"{damage[precision] / damage['fp32']:.3f} of float32's",
                flush=True,
            )
    return {"pairs": n_pairs, "steps": steps, "eps": [0.01, 0.04], "rows": rows}


def _bench_attack(profile_name: str) -> dict[str, Any]:
    """The ``attack`` rows (issue 18): :func:`mripkg.attack_bench.run` on validation slices."""
    from .attack_bench import run

    return run(get_profile(profile_name))


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
    ap.add_argument(
        "--levers",
        default="",
        help="comma list of sampler speed levers to measure against the 1000-step sampler: "
        "base,bf16,spacing,compile,warm_start,combo,dds,attack (rows in bench_levers.json)",
    )
    ap.add_argument("--lever-slices", type=int, default=2)
    ap.add_argument(
        "--attack",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="attack speed against damage on validation slices (bench.json 'attack'; cached)",
    )
    args = ap.parse_args(argv)
    profile = cli_profile(args.profile)
    models = [m for m in args.models.split(",") if m]
    levers = tuple(v for v in args.levers.split(",") if v)
    try:
        steps = tuple(int(s) for s in args.sampler_steps.split(",") if s)
    except ValueError:
        steps = (0,)
    bad = (
        [
            f"unknown model {m!r} (known: {', '.join(BENCH_MODELS)})"
            for m in models
            if m not in BENCH_MODELS
        ]
        + [f"unknown lever {v!r} (known: {', '.join(LEVERS)})" for v in levers if v not in LEVERS]
        + (
            [f"--sampler-steps {args.sampler_steps!r}: positive integers, comma-separated"]
            if any(s < 1 for s in steps)
            else []
        )
        + (
            ["--sampler-slices and --lever-slices must be >= 1"]
            if min(args.sampler_slices, args.lever_slices) < 1
            else []
        )
    )
    if bad:
        print(f"error: {bad[0]}", file=sys.stderr)
        return 2
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
    for name in models:
        print(f"[bench] {name} ...", flush=True)
        res = _in_subprocess("_bench_model", name, profile.name)
        report["models"][name] = res
        print(f"  {json.dumps(res)}", flush=True)
    if steps:
        print("[bench] DDPM sampler: PSNR and time against steps", flush=True)
        report["sampler"] = _in_subprocess(
            "_bench_sampler", profile.name, steps, args.sampler_slices
        )
    if args.attack:
        print("[bench] attack: continuation and plateau stop against the cold attack", flush=True)
        report["attack"] = _in_subprocess("_bench_attack", profile.name)
    if levers:
        print("[bench] sampler speed levers (time and PSNR against 1000 steps)", flush=True)
        report["levers"] = _in_subprocess("_bench_levers", profile.name, args.lever_slices, levers)
        if "attack" in levers:
            report["attack_precision"] = _in_subprocess("_bench_attack_precision", profile.name)
        path = run_dir(profile.name) / "bench_levers.json"
        atomic_write_json(path, stamp({k: v for k, v in report.items() if k != "models"}))
        print(f"wrote {path}")
    if report["models"] or steps or "attack" in report:
        path = run_dir(profile.name) / "bench.json"
        atomic_write_json(path, stamp({k: v for k, v in report.items() if k != "levers"}))
        print(f"wrote {path}")
    failed = _errors(report)
    for where, msg in failed:
        print(f"error: {where}: {msg}", file=sys.stderr)
    return 1 if failed else 0


def _errors(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, message) of every measurement of ``report`` that failed."""
    out = [(f"model {k}", v["error"]) for k, v in report["models"].items() if "error" in v]
    for key in ("sampler", "levers", "attack_precision", "attack"):
        v = report.get(key)
        if isinstance(v, dict) and "error" in v:
            out.append((key, v["error"]))
        elif isinstance(v, dict):
            out += [
                (f"{key} {r.get('lever', r.get('variant', '?'))}", r["error"])
                for r in v.get("rows", [])
                if isinstance(r, dict) and "error" in r
            ]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
