"""The authors' attack protocol next to the project's default, white-box on both supervised
models (issue 18, section 2).

``python -m mripkg.experiments.authors_protocol --profile quick [--slices 2] [--eps 0.04,0.08]``
attacks ``--slices`` test slices (spread evenly over the profile's attacked slices) with
:data:`mripkg.attacks.protocols.AUTHORS_PRESET` and with the profile's default settings, both
through the attack cache (one entry per pair, saved per batch, so a killed run resumes), and
writes ``runs/<profile>/metrics_authors_protocol.json``: per model, eps and protocol the PSNR
drop (dB, the paper's min-max convention), the added MSE against the ground truth
(``MSE(f(y + M delta), x) - MSE(f(y), x)``, images in [0, 1]), the amplification of the attack
over the equal-norm random control (ratio of their ``||f(y') - f(y)||``), the Adam steps used
and the attack's CPU seconds.  ``--attack-only`` stops after the attacks (no evaluation);
``--only authors|default`` attacks with one protocol only (to run both in parallel processes).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from ..attacks.cache import AttackCache, steps_used
from ..attacks.kspace import AttackResult, AttackSettings
from ..attacks.protocols import AUTHORS_PRESET, authors_settings, ladder_levels
from ..io import atomic_write_json
from ..paths import run_dir
from ..profiles import Profile, cli_profile, setup_torch

SOURCES = ("irim", "resunetpp")
EPS = (0.04, 0.08)


def _cpu_seconds_of(
    cache: AttackCache, source: str, split: str, ids: list[int], eps: list[float], settings
) -> float:
    """Attack CPU seconds recorded in the cache entries of ``source`` at every eps needed for
    ``eps`` (with continuation: the whole ladder below the largest); NaN if any is missing."""
    need = sorted({lev for e in eps for lev in ladder_levels(settings, e)})
    total = 0.0
    for e in need:
        for sid in ids:
            r = cache.load(source, split, sid, e, settings)
            total += float(r.meta.get("cpu_s", float("nan"))) if r is not None else float("nan")
    return total


def run(
    profile: Profile,
    n_slices: int = 4,
    eps: tuple[float, ...] = EPS,
    sources: tuple[str, ...] = SOURCES,
    attack_only: bool = False,
    only: str = "",
    default_lr_rel: float | None = None,
) -> dict[str, Any]:
    """Attack, evaluate and summarise (see the module docstring); returns the JSON dict."""
    from ..attacks.control import control_deltas
    from ..data import load_dataset
    from ..evaluation.attack_runs import attack_settings, missing_pairs, run_whitebox
    from ..evaluation.clean import build_reconstructors
    from ..evaluation.scoring import evaluate_attack
    from ..evaluation.selection import eps_key, slice_set, spread_ids
    from ..evaluation.targets import Target
    from ..physics import equispaced_mask

    setup_torch(profile)
    ds = load_dataset(profile)
    mask = equispaced_mask(profile.image_size)
    models, metas, _ = build_reconstructors(profile, ds, retrain=False)
    data_all = slice_set(ds["test"], mask, profile.attack.n_slices)
    ids = [data_all.slice_ids[i] for i in spread_ids(len(data_all), n_slices)]
    data = data_all.take(ids)
    cache = AttackCache(profile)
    protocols: dict[str, dict[str, AttackSettings]] = {
        # the project's attack (cold; ``default_lr_rel`` overrides the profile's step size,
        # e.g. 1.0 for the setting behind the committed results), then the authors'
        "default": {
            m: attack_settings(
                profile, metas[m], **({"lr_rel": default_lr_rel} if default_lr_rel else {})
            )
            for m in sources
        },
        "authors": {m: authors_settings(attack_settings(profile, metas[m])) for m in sources},
    }
    results: dict[str, Any] = {}
    for proto, sets in protocols.items():
        if only and proto != only:
            continue
        for m in sources:
            for e in sorted(eps, reverse=True):  # the authors' number is at the largest eps
                before = missing_pairs(m, data, [e], sets[m], profile=profile)
                t0 = time.process_time()
                res = run_whitebox(
                    models[m], m, data, [e], sets[m], profile=profile, batch_size=len(data)
                )
                dt = time.process_time() - t0
                results[(proto, m, e)] = res
                print(
                    f"[authors_report] {proto:8s} {m:10s} eps {e:g}: {dt:.0f} CPU-s "
                    f"({'computed' if before else 'cached'})",
                    flush=True,
                )
    if attack_only:
        return {}
    out: dict[str, Any] = {
        "profile": profile.name,
        "test_slices": ids,
        "slices_note": (
            f"{len(ids)} of the {len(data_all)} attacked test slices (spread evenly), chosen "
            "before any result was seen; attack CPU seconds per model and protocol in "
            "attack_cpu_s"
        ),
        "eps": list(eps),
        "authors_preset": {
            k: list(v) if isinstance(v, tuple) else v for k, v in AUTHORS_PRESET.items()
        },
        "models": {},
    }
    for m in sources:
        target = Target(m, models[m], mask)
        per_m: dict[str, Any] = {}
        for proto, sets in protocols.items():
            res_all = [results[(proto, m, e)] for e in eps]
            res = AttackResult.concat(res_all, "eps")
            ctl = control_deltas(res, mask, data.slice_ids, seed=profile.seed)
            ev = evaluate_attack(target, data, res, source=m, controls=ctl)
            gt = data.images
            mse_clean = (ev.clean - gt).pow(2).flatten(1).mean(1).double()  # [B]
            used = steps_used(cache, m, data.split, data.slice_ids, eps, sets[m]).double()
            rows = {}
            for j, e in enumerate(eps):
                mse_adv = (ev.adv[j] - gt).pow(2).flatten(1).mean(1).double()
                mse_rand = (ev.rand[j] - gt).pow(2).flatten(1).mean(1).double()
                amp = ev.change[j] / ev.change_rand[j].clamp_min(1e-30)
                rows[eps_key(e)] = {
                    "psnr_clean": float(ev.psnr_clean.mean()),
                    "psnr": float(ev.psnr[j].mean()),
                    "psnr_drop": float(ev.psnr_drop[j].mean()),
                    "psnr_drop_random": float(ev.psnr_drop_rand[j].mean()),
                    "added_mse": float((mse_adv - mse_clean).mean()),
                    "added_mse_random": float((mse_rand - mse_clean).mean()),
                    "amplification_over_control": float(amp.mean()),
                    "rel_norm_reaching_model": float(res.rel_norm[j].mean()),
                    "steps_used_mean": float(used[j].mean()),
                    "per_slice_psnr_drop": [float(v) for v in ev.psnr_drop[j]],
                }
            per_m[proto] = {
                "settings": sets[m].to_dict(),
                "attack_cpu_s": _cpu_seconds_of(
                    cache, m, data.split, data.slice_ids, list(eps), sets[m]
                ),
                "attack_cpu_note": (
                    "process CPU seconds of the attack batches (1 thread), all pairs; with "
                    "continuation the whole eps ladder up to the largest eps"
                ),
                "eps": rows,
            }
        out["models"][m] = per_m
    path = run_dir(profile.name) / "metrics_authors_protocol.json"
    atomic_write_json(path, out)
    print(f"wrote {path}")
    print(
        json.dumps(
            {m: {p: v["eps"] for p, v in d.items()} for m, d in out["models"].items()}, indent=1
        )[:4000]
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--eps", default=",".join(map(str, EPS)))
    ap.add_argument("--sources", default=",".join(SOURCES))
    ap.add_argument("--attack-only", action="store_true")
    ap.add_argument(
        "--default-lr-rel", type=float, default=None, help="lr_rel of the default protocol"
    )
    ap.add_argument("--only", default="", help="attack with one protocol only: authors or default")
    args = ap.parse_args(argv)
    profile = cli_profile(args.profile)
    run(
        profile,
        n_slices=args.slices,
        eps=tuple(float(e) for e in args.eps.split(",")),
        sources=tuple(args.sources.split(",")),
        attack_only=args.attack_only,
        only=args.only,
        default_lr_rel=args.default_lr_rel,
    )
    torch.set_num_threads(torch.get_num_threads())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
