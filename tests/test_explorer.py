"""Tests of mripkg.explorer: the study loader over the attack / reconstruction caches, the
widget driven by setting its controls, the bundle, missing entries and bad settings; built on
a temporary runs folder filled by the pipeline's own functions with tiny models (32 px)."""

from __future__ import annotations

import dataclasses

import matplotlib
import numpy as np
import pytest
import torch
from tiny_models import TinyNet
from torch import nn

from mripkg import io
from mripkg.app import explorer
from mripkg.attacks import control
from mripkg.data import MRIDataset, Split
from mripkg.evaluation import attack_runs, scoring, selection, targets
from mripkg.models import ZeroFilled
from mripkg.models.ddpm import DiffusionReconstructor, EpsUNet
from mripkg.physics import equispaced_mask
from mripkg.profiles import SMOKE, AttackConfig, DataConfig, DDPMConfig

matplotlib.use("Agg")

N = 32
PROFILE = dataclasses.replace(
    SMOKE,
    data=dataclasses.replace(SMOKE.data, image_size=N, n_test_slices=3),
    attack=AttackConfig(
        steps=3,
        n_slices=3,
        eps_grid=(0.0, 0.02, 0.08),
        diffusion_steps=2,
        diffusion_whitebox_slices=1,
        diffusion_whitebox_eps=(0.04,),
        diffusion_eps=(0.04,),
        diffusion_slices=2,
        diffusion_seeds=2,
        route_eps=0.04,
    ),
)
assert isinstance(PROFILE.data, DataConfig)
METAS = {
    "zero_filled": {},
    "resunetpp": {"sha256": "a" * 64},
    "irim": {"sha256": "b" * 64},
    "diffusion": {"sha256": "c" * 64},
}


def _phantoms(n_img: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.arange(N), torch.arange(N), indexing="ij")
    out = torch.zeros(n_img, 1, N, N)
    for i in range(n_img):
        for _ in range(4):
            cy, cx = (torch.rand(2, generator=g) * 0.5 + 0.25) * N
            ry, rx = (torch.rand(2, generator=g) * N / 5 + 3).tolist()
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
            out[i, 0][inside] = float(torch.rand(1, generator=g)) * 0.6 + 0.4
    return out


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def test_split() -> Split:
    images = _phantoms(3)
    masks = images > 0
    return Split("test", images, masks, ["phantom"] * 3, [10, 20, 30])


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    cfg = DDPMConfig(
        base_channels=8,
        channel_mults=(1, 2),
        num_res_blocks=1,
        train_steps=1,
        batch_size=1,
        crop_size=N,
        sampler_steps=2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        sup = {"resunetpp": TinyNet().eval(), "irim": TinyNet().eval()}
        net = EpsUNet(cfg)
        nn.init.normal_(net.conv_out.weight, std=0.05)
    for p in net.parameters():
        p.requires_grad_(False)
    diff = DiffusionReconstructor(net, steps=2, seed=PROFILE.seed).eval()
    return {"zero_filled": ZeroFilled(), **sup, "diffusion": diff}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, test_split, models):
    """A runs folder as notebooks 03/04 leave it: attacks on ResUNet++ and i-RIM (not on
    zero-filled), diffusion reconstructions at eps 0.04 only (clean, ResUNet++ transfer,
    control), and the per-slice transfer CSV."""
    root = tmp_path_factory.mktemp("runs") / "smoke"
    a = PROFILE.attack
    mask = equispaced_mask(N)
    data = selection.slice_set(test_split, mask, a.n_slices)
    cache = explorer.AttackCache(PROFILE, root / "attacks")
    eps = [0.0, 0.02, 0.04, 0.08]
    attacks = {
        m: attack_runs.run_whitebox(
            models[m],
            m,
            data,
            eps,
            attack_runs.attack_settings(PROFILE, METAS[m]),
            profile=PROFILE,
            cache=cache,
            progress=False,
        )
        for m in ("resunetpp", "irim")
    }
    ctl = control.budget_controls(data.kspace, mask, data.slice_ids, eps, seed=PROFILE.seed)
    rows = []
    for s, res in attacks.items():
        for t in ("resunetpp", "irim"):
            target = targets.Target(t, models[t], mask)
            ev = scoring.evaluate_attack(target, data, res, source=s, controls=ctl)
            rows += scoring.per_slice_rows(ev)
    d_ids = [data.slice_ids[i] for i in selection.spread_ids(len(data), a.diffusion_slices)]
    ddata = data.take(d_ids)
    dt = targets.Target(
        "diffusion",
        models["diffusion"],
        mask,
        weights_id=attack_runs.model_id(METAS["diffusion"]),
        cache=targets.ReconCache(root / "recons"),
    )
    sub = selection.subset_result(attacks["resunetpp"], data, d_ids, [0.0, 0.04])
    dctl = control.budget_controls(ddata.kspace, mask, d_ids, [0.0, 0.04], seed=PROFILE.seed)
    ev = scoring.evaluate_attack(dt, ddata, sub, source="resunetpp", controls=dctl)
    rows += scoring.per_slice_rows(ev)
    io.write_csv(root / "metrics_transfer_per_slice.csv", rows)
    return {"root": root, "d_ids": d_ids, "diffusion_eval": ev}


def _study(runs, test_split, models, **kw) -> explorer.Study:
    kw.setdefault("root", runs["root"])
    return explorer.Study(PROFILE, test_split, models, METAS, **kw)


def test_widget_changes_panels_and_numbers(runs, test_split, models):
    study = _study(runs, test_split, models)
    assert study.eps == [0.0, 0.02, 0.04, 0.08]
    ex = explorer.Explorer(study, slice_id=2, target="resunetpp", source="resunetpp", eps=0.0)
    v0 = ex.view
    assert v0 is not None and v0.psnr == v0.psnr_clean and not v0.artifact.any()
    assert v0.rel_norm == 0 and not v0.kspace.any()
    png0 = ex.image.value
    ex.eps.value = 0.08  # as a user moving the slider
    v1 = ex.view
    assert v1 is not None and v1.eps == 0.08
    assert v1.psnr < v0.psnr  # the white-box attack damages the reconstruction
    assert abs(v1.rel_norm - 0.08) < 1e-3 and v1.artifact.std() > 0
    cols = equispaced_mask(N).numpy()
    assert v1.kspace[:, cols].any() and not v1.kspace[:, ~cols].any()  # sampled columns only
    assert ex.image.value != png0
    assert ex.panels.ax["gt"].get_xlim() == (-0.5, N - 0.5)
    assert v1.curve["eps"] == [0.0, 0.02, 0.04, 0.08] and v1.curve["n_slices"] == 3
    ex.source.value = "irim"  # transferred from i-RIM: another perturbation, another artifact
    v2 = ex.view
    assert v2 is not None and not np.allclose(v2.artifact, v1.artifact)
    assert not np.allclose(v2.kspace, v1.kspace)
    ex.source.value = explorer.RANDOM
    v3 = ex.view
    assert v3 is not None and abs(v3.rel_norm - 0.08) < 1e-3
    assert v3.psnr_clean - v3.psnr < v1.psnr_clean - v1.psnr  # the control hurts less
    ex.target.value = "irim"  # the source list follows the target; the value is kept
    assert ex.source.value == explorer.RANDOM and ex.view.target == "irim"
    assert ("white-box on i-RIM", "irim") in ex.source.options
    before = ex.settings()
    assert len(ex.sweep("slice_id")) == 2 and ex.settings() == before  # and back


def test_diffusion_views_come_from_the_cache(runs, test_split, models):
    study = _study(runs, test_split, models)
    ev = runs["diffusion_eval"]
    sid = runs["d_ids"][1]
    b = ev.slice_ids.index(sid)
    v = study.view(sid, "diffusion", "resunetpp", 0.04, PROFILE.seed)
    assert np.array_equal(v.clean, ev.clean[b, 0].numpy())
    assert np.array_equal(v.perturbed, ev.adv[1, b, 0].numpy())
    vr = study.view(sid, "diffusion", explorer.RANDOM, 0.04, PROFILE.seed)
    assert np.array_equal(vr.perturbed, ev.rand[1, b, 0].numpy())
    assert all(t.computed == 0 for t in study._seeded.values())  # nothing was sampled
    assert "runs/smoke/recons" in v.origin


def test_missing_entries_say_so_and_the_button_computes_them(runs, test_split, models, tmp_path):
    import shutil

    root = tmp_path / "smoke"
    shutil.copytree(runs["root"], root)
    study = _study(runs, test_split, models, root=root)
    sid = runs["d_ids"][0]
    ex = explorer.Explorer(study, slice_id=sid, target="diffusion", source="irim", eps=0.08)
    assert ex.view is None and "No saved diffusion reconstruction" in ex.message
    assert ex.all_values.value  # asked for by name: offered, marked as not saved
    assert ex.button.layout.display != "none" and ex.image.layout.display != "none"
    assert ex.button.description.startswith("Reconstruct 1 image with the diffusion model, ")
    notes = {k: t.get_text() for k, t in ex.panels.note.items()}
    assert notes["gt"] == "" and notes["kspace"] == ""  # the saved perturbation is shown
    assert notes["clean"] == "" and notes["perturbed"] == notes["artifact"] == "not computed yet"
    n_before = len(list((root / "recons").rglob("*.safetensors")))
    v = ex.run_missing(progress=False)
    assert ex.view is v and ex.message == "" and np.isfinite(v.psnr)
    assert len(list((root / "recons").rglob("*.safetensors"))) == n_before + 1  # clean cached
    again = _study(runs, test_split, models, root=root)
    assert np.array_equal(again.view(sid, "diffusion", "irim", 0.08, 0).perturbed, v.perturbed)
    assert again._seeded[0].computed == 0  # stored in the same cache
    ex.set(target="zero_filled", source="zero_filled", eps=0.02)
    assert ex.view is None and "No saved perturbation crafted on zero-filled" in ex.message
    assert ex.button.description.startswith("Attack zero-filled, ")
    ex.run_missing(progress=False)
    assert ex.view is not None and abs(ex.view.rel_norm - 0.02) < 1e-3
    assert list((root / "attacks" / "zero_filled").rglob("*.safetensors"))


def test_bundle_round_trip(runs, test_split, models, tmp_path):
    study = _study(runs, test_split, models)
    path = explorer.export_bundle(study, tmp_path / "explorer.npz")
    b = explorer.Bundle(path)
    assert b.meta["profile"] == PROFILE.name and b.meta["slice_ids"] == study.slice_ids
    assert b.curves == study.curves
    key = explorer.Bundle.delta_key("irim", 1, 0.08)
    assert b.get(key).dtype == np.float16 and b.get(key).shape == (N, int(study.mask.sum()))
    # without the runs/ caches, everything comes from the bundle, equal to float16 precision
    empty = tmp_path / "no_runs"
    only = _study(runs, test_split, models, root=empty, bundle=path, curve_dirs=[empty])
    assert only.curves == study.curves
    fallback = _study(runs, test_split, models, root=empty, curve_dirs=[empty, runs["root"]])
    assert fallback.curve_files == [runs["root"] / "metrics_transfer_per_slice.csv"]
    for args in (
        (1, "irim", "resunetpp", 0.08, 0),
        (runs["d_ids"][1], "diffusion", "resunetpp", 0.04, 0),
        (runs["d_ids"][0], "diffusion", explorer.RANDOM, 0.04, 0),
    ):
        vr, vb = study.view(*args), only.view(*args)
        assert "bundle" in vb.origin or args[2] == explorer.RANDOM
        for name in ("clean", "perturbed", "kspace", "image_delta"):
            a, c = getattr(vr, name), getattr(vb, name)
            tol = 2e-3 * max(float(np.abs(a).max()), 1e-6)
            assert np.abs(a - c).max() <= tol, (args, name)
        assert abs(vr.psnr - vb.psnr) < 0.05
    with pytest.raises(explorer.Missing, match="No saved perturbation"):
        only.view(1, "irim", "zero_filled", 0.08, 0)
    retrained = {**METAS, "irim": {"sha256": "d" * 64}}
    with pytest.raises(ValueError, match=r"other weights or attack settings for \['irim'\]"):
        explorer.Study(PROFILE, test_split, models, retrained, root=empty, bundle=path)
    resampled = {**models, "diffusion": models["diffusion"].variant(steps=3)}
    with pytest.raises(ValueError, match="diffusion reconstructions"):
        explorer.Study(PROFILE, test_split, resampled, METAS, root=empty, bundle=path)
    other = dataclasses.replace(PROFILE, name="quick")
    with pytest.raises(ValueError, match="is for profile 'smoke'"):
        explorer.Study(other, test_split, models, METAS, root=empty, bundle=path)


def test_bad_settings_raise_clear_errors(runs, test_split, models, monkeypatch):
    study = _study(runs, test_split, models)
    with pytest.raises(explorer.ExplorerError, match="eps 0.5 is not in this study's grid"):
        study.view(1, "irim", "irim", 0.5, 0)
    with pytest.raises(explorer.ExplorerError, match="unknown target 'unet'"):
        study.view(1, "unet", "irim", 0.08, 0)
    with pytest.raises(explorer.ExplorerError, match="unknown source"):
        study.view(1, "irim", "gan", 0.08, 0)
    with pytest.raises(explorer.ExplorerError, match="test slice 7 not attacked"):
        study.view(7, "irim", "irim", 0.08, 0)
    with pytest.raises(explorer.ExplorerError, match="sampler seed 9"):
        study.view(1, "diffusion", "irim", 0.04, 9)
    ex = explorer.Explorer(study, target="irim", source="irim", eps=0.02)
    with pytest.raises(explorer.ExplorerError, match="eps"):
        ex.set(eps=-0.1)
    with pytest.raises(explorer.ExplorerError, match="unknown controls"):
        ex.set(epsilon=0.02)
    with pytest.raises(TypeError, match="get_profile"):  # a name is resolved at the edge
        explorer.load_study("quick")


def test_slice_scroller_follows_its_controls(test_split):
    val = Split("val", test_split.images.flip(-1), test_split.masks, ["v1"] * 3, [1, 2, 3])
    ds = MRIDataset(N, {"test": test_split, "val": val}, "phantoms")
    sc = explorer.SliceScroller(ds, equispaced_mask(N))
    assert list(sc.volumes) == ["test: phantom", "val: v1"]
    c0 = sc.current()
    png0 = sc.image.value
    sc.slice.value = 0
    c1 = sc.current()
    assert c1["z"] == 10 and not np.array_equal(c0["image"], c1["image"])
    assert np.isfinite(c1["psnr"]) and 0 < c1["ssim"] <= 1 and sc.image.value != png0
    for ax in sc.axs:  # images drawn in pixel coordinates, so the head contour lines up
        assert ax.get_xlim() == (-0.5, N - 0.5) and ax.get_ylim() == (N - 0.5, -0.5)
    sc.volume.value = "val: v1"
    assert np.array_equal(sc.current()["image"], val.images[0, 0].numpy())


def _walk(ex: explorer.Explorer):
    """Every position the controls offer, reached by setting the controls as a user would
    (target -> perturbation -> seed -> slice -> eps); yields the settings after each move."""
    for t in [v for _l, v in ex.target.options]:
        ex.target.value = t
        for src in [v for _l, v in ex.source.options]:
            ex.source.value = src
            for seed in [v for _l, v in ex.seed.options] if t == "diffusion" else [None]:
                if seed is not None:
                    ex.seed.value = seed
                for sid in [v for _l, v in ex.slice.options]:
                    ex.slice.value = sid
                    for e in [v for _l, v in ex.eps.options]:
                        ex.eps.value = e
                        yield ex.settings()


def test_every_offered_position_shows_its_panels(runs, test_split, models, monkeypatch):
    study = _study(runs, test_split, models)
    ex = explorer.Explorer(study)
    assert not ex.all_values.value and ex.view is not None
    rendered = []
    real_png = ex.panels.png
    monkeypatch.setattr(ex.panels, "png", lambda: b"drawn")  # render a sample only (below)
    seen = []
    for k, s in enumerate(_walk(ex)):
        v = ex.view
        assert v is not None, (s, ex.message)
        assert ex.button.layout.display == "none" and ex.image.value == b"drawn"
        assert (v.slice_id, v.target, v.source, v.eps) == (
            s["slice_id"],
            s["target"],
            s["source"],
            s["eps"],
        )
        assert np.array_equal(ex.panels.im["perturbed"].get_array(), v.perturbed)
        assert np.array_equal(ex.panels.im["artifact"].get_array(), v.artifact)
        seen.append((s["target"], s["source"], s["slice_id"], s["eps"]))
        if k % 23 == 0:
            rendered.append(real_png())
    # what the fixture saved, and nothing else: supervised targets see the two attacked sources
    # and the control everywhere; the diffusion model only its cached reconstructions
    sup = {
        (t, src, sid, e)
        for t in ("zero_filled", "resunetpp", "irim")
        for src in ("resunetpp", "irim", explorer.RANDOM)
        for sid in study.slice_ids
        for e in study.eps
    }
    diff = {
        ("diffusion", src, sid, e)
        for src in ("resunetpp", explorer.RANDOM)
        for sid in runs["d_ids"]
        for e in (0.0, 0.04)
    }
    assert sorted(seen) == sorted(sup | diff)
    kept = [k for k in study._memo if k[0] == "view"]
    assert len(kept) == study.MEMO_LIMIT["view"] < len(seen)  # a long session stays bounded
    ex.set(target="diffusion", source="resunetpp")
    assert [v for _l, v in ex.seed.options] == [PROFILE.seed]  # seed 1 has nothing saved
    assert [v for _l, v in ex.slice.options] == runs["d_ids"]
    assert "2 of 3 test slices, at ε 0.04" in ex.offer.value
    assert len(rendered) >= 5 and all(r[:8] == b"\x89PNG\r\n\x1a\n" for r in rendered)
    assert len(set(rendered)) == len(rendered)


def test_fixed_scales_readable_text_and_curve_markers(runs, test_split, models):
    study = _study(runs, test_split, models)
    ex = explorer.Explorer(study, slice_id=1, target="resunetpp", source="resunetpp", eps=0.02)
    for settings in ({}, {"eps": 0.08}, {"source": "irim"}, {"target": "diffusion", "eps": 0.04}):
        ex.set(**settings)
        assert ex.view is not None
        p = ex.panels
        assert p.im["artifact"].get_clim() == explorer.ARTIFACT_CLIM
        assert p.im["image_delta"].get_clim() == explorer.IMAGE_DELTA_CLIM
        assert p.im["kspace"].get_clim() == explorer.KSPACE_CLIM
        assert p.im["perturbed"].get_clim() == explorer.IMAGE_CLIM
        ex.panels.png()  # draws the figure: every text now exists
        texts = [t for t in p.fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text()]
        small = [(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() < 9]
        assert not small
        labels = [t.get_text() for t in texts]
        assert not any(lab in ("-0", "−0", "-0.0", "−0.0") for lab in labels)
        for k in ("perturbed", "artifact", "kspace", "image_delta"):  # every colour bar: a unit
            cax = p.ax[k].child_axes[0]
            assert cax.get_ylabel(), k
        for line in p.ax["curve"].get_lines():  # one point alone is drawn as a marker
            n = len(line.get_xdata())
            assert n >= 2 or line.get_marker() not in ("None", "", None), line.get_label()


def test_duration_and_plan_words():
    assert explorer.duration(0.3) == "under a second"
    assert explorer.duration(9.6) == "about 10 s"
    assert explorer.duration(327) == "about 5 min"
    assert explorer.duration(float("nan")) == "time unknown"
    jobs = [
        explorer.Job("attack", "attack i-RIM", 30.0, lambda _p: None),
        explorer.Job("reconstruction", "clean", 5.0, lambda _p: None),
        explorer.Job("reconstruction", "perturbed", 5.0, lambda _p: None),
    ]
    assert explorer.describe_plan(jobs) == ("attack i-RIM, then reconstruct 2 images, about 40 s")
    assert (
        explorer.describe_plan(jobs[1:2])
        == "reconstruct 1 image with the diffusion model, about 5 s"
    )


def test_compute_button_runs_in_background_and_cancels(runs, test_split, models, tmp_path):
    import shutil
    import threading
    import time

    root = tmp_path / "smoke"
    shutil.copytree(runs["root"], root)
    study = _study(runs, test_split, models, root=root)
    sid = runs["d_ids"][0]
    ex = explorer.Explorer(study, slice_id=sid, target="diffusion", source="irim", eps=0.04)
    assert ex.view is None
    ex.button.click()  # as the user: a thread, with the cancel button and a progress bar
    ex.wait(60)
    assert ex.view is not None and ex.last_outcome.startswith("Computed in")
    assert ex.progress.layout.display == "none" and ex.cancel_button.layout.display == "none"
    assert not ex.slice.disabled and "Computed in" in ex.status.value
    # a slow step: cancel stops it, the controls come back, nothing stays on screen
    started, stop = threading.Event(), time.monotonic() + 30

    def slow(_progress):
        started.set()
        while time.monotonic() < stop:
            sum(range(1000))

    study.plan = lambda *a, **k: [explorer.Job("attack", "attack slowly", 600.0, slow)]
    ex.set(eps=0.02)
    assert ex.view is None and "about 10 min" in ex.button.description
    ex.button.click()
    assert started.wait(10)
    assert ex.cancel_button.layout.display != "none" and ex.slice.disabled
    assert ex.cancel()
    ex.wait(10)
    assert not ex._thread.is_alive() and time.monotonic() < stop
    assert ex.last_outcome.startswith("Cancelled")
    assert ex.progress.layout.display == "none" and not ex.slice.disabled
    assert not ex.cancel()  # nothing running
