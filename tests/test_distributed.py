"""Data-parallel training on 2 CPU ranks (gloo) at the smoke profile.

The ranks are spawned with ``torch.multiprocessing`` (and, for the command line, torchrun);
everything else is ``torch.distributed`` and DistributedDataParallel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mripkg.profiles import SMOKE
from mripkg.training.checkpoints import load_training_state, load_weights
from mripkg.training.distributed import Ranks

KILL_AFTER = 4  # steps the killed run completes before rank 1 dies


def _ranks_worker(rank: int, world: int, init_file: str, out: str) -> None:
    """Rank ``rank`` of 2: an i-RIM run, a DDPM run, then a DDPM run in which rank 1 dies
    (``os._exit``) while drawing the batch of step ``KILL_AFTER + 1``."""
    os.environ["MRIPKG_THREADS"] = "1"
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    from mripkg.data import load_dataset
    from mripkg.training import train

    ds = load_dataset(SMOKE)
    out_dir = Path(out)
    train.train_model("irim", SMOKE, ds, out_dir=out_dir / "irim2", steps=4, progress=False)
    train.train_model("ddpm", SMOKE, ds, out_dir=out_dir / "ddpm2", steps=6, progress=False)
    draws = 0
    crop_batch = train._crop_batch

    def dying_crop_batch(*args, **kwargs):
        nonlocal draws
        draws += 1
        if rank == 1 and draws == KILL_AFTER + 1:
            os._exit(3)
        return crop_batch(*args, **kwargs)

    train._crop_batch = dying_crop_batch
    train.train_model(
        "ddpm", SMOKE, ds, out_dir=out_dir / "killed", steps=6, save_every=2, progress=False
    )


def _rel_distance(a: dict, b: dict, start: dict) -> float:
    """``|a - b| / |b - start|`` over all tensors: how far two runs ended apart, relative to how
    far training moved the weights."""
    num = sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in a)
    den = sum(float((b[k].double() - start[k].double()).pow(2).sum()) for k in a)
    return (num / den) ** 0.5


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    with pytest.raises(
        (mp.ProcessExitedException, mp.ProcessRaisedException)
    ):  # rank 1's planned death ends the group
        mp.spawn(_ranks_worker, args=(2, str(out / "init"), str(out)), nprocs=2, join=True)
    return out


def test_two_ranks_give_the_weights_of_one_process(two_rank_runs, tmp_path):
    from mripkg.data import load_dataset
    from mripkg.training.train import build_model, train_model

    ds = load_dataset(SMOKE)
    one = train_model("irim", SMOKE, ds, out_dir=tmp_path / "irim1", steps=4, progress=False)
    two = load_training_state(two_rank_runs / "irim2" / "irim.state.pt")
    assert two["ranks"] == 2 and two["step"] == 4
    ref = load_training_state(tmp_path / "irim1" / "irim.state.pt")
    for k, v in ref["model"].items():  # no BatchNorm, no near-zero gradients: close
        torch.testing.assert_close(two["model"][k], v, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(json.loads(two["history"])["loss"], one.history["loss"])

    # the DDPM: random crops, time steps and noise split over the ranks, EMA weights
    one = train_model("ddpm", SMOKE, ds, out_dir=tmp_path / "ddpm1", steps=6, progress=False)
    two = load_training_state(two_rank_runs / "ddpm2" / "ddpm.state.pt")
    ref = load_training_state(tmp_path / "ddpm1" / "ddpm.state.pt")
    torch.testing.assert_close(json.loads(two["history"])["loss"], one.history["loss"])
    start = build_model("ddpm", SMOKE).state_dict()
    # Adam turns rounding-level gradients of a few biases into full steps, hence a norm test
    assert _rel_distance(two["model"], ref["model"], start) < 1e-2
    assert _rel_distance(two["ema"], ref["ema"], start) < 1e-2
    # rank 0 wrote one best checkpoint; it loads and records the ranks
    _, meta = load_weights(two_rank_runs / "ddpm2" / "ddpm.safetensors", SMOKE, "ddpm")
    assert meta["ranks"] == 2
    assert not list((two_rank_runs / "ddpm2").glob("*.tmp"))


def test_a_run_killed_on_one_rank_resumes_on_another_number_of_ranks(two_rank_runs):
    from mripkg.data import load_dataset
    from mripkg.training.train import build_model, train_model

    killed = two_rank_runs / "killed"
    st = load_training_state(killed / "ddpm.state.pt")
    assert st["step"] == KILL_AFTER and st["ranks"] == 2  # the last state before the kill
    full = load_training_state(two_rank_runs / "ddpm2" / "ddpm.state.pt")
    # up to the kill the two 2-rank runs are the same computation: bit for bit
    assert json.loads(st["history"])["loss"] == json.loads(full["history"])["loss"][:KILL_AFTER]
    res = train_model("ddpm", SMOKE, load_dataset(SMOKE), out_dir=killed, steps=6, progress=False)
    assert res.history["step"] == list(range(1, 7))
    resumed = load_training_state(killed / "ddpm.state.pt")
    assert resumed["step"] == 6 and resumed["ranks"] == 1
    start = build_model("ddpm", SMOKE).state_dict()
    assert _rel_distance(resumed["model"], full["model"], start) < 1e-2
    torch.testing.assert_close(res.history["loss"], json.loads(full["history"])["loss"])


def test_torchrun_command_line_trains_on_two_ranks(tmp_path):
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, MRIPKG_THREADS="1", OMP_NUM_THREADS="1", PYTHONPATH=root)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "mripkg.training.train",
        "--profile",
        "smoke",
        "--model",
        "ddpm",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("best val PSNR") == 1 and "[2 ranks]" in proc.stdout
    hist = json.loads((tmp_path / "ddpm.history.json").read_text())
    loss = hist["loss"]
    assert len(loss) == SMOKE.ddpm.train_steps
    assert sum(loss[-5:]) < 0.95 * sum(loss[:5])  # the loss falls
    st = load_training_state(tmp_path / "ddpm.state.pt")
    assert st["ranks"] == 2 and st["step"] == SMOKE.ddpm.train_steps


def test_batch_shares_cover_the_global_batch_once():
    rows = [Ranks(rank=r, world=4).share(16) for r in range(4)]
    assert [list(range(16))[s] for s in rows] == [list(range(4 * r, 4 * r + 4)) for r in range(4)]
    assert Ranks().share(16) == slice(0, 16)
    with pytest.raises(ValueError, match="does not split evenly over 3 ranks"):
        Ranks(rank=0, world=3).share(16)


def test_one_process_batches_are_the_global_batch():
    """The shares of two ranks, drawn from equal generators, are the one-process batch."""
    from mripkg.data import load_dataset
    from mripkg.physics import equispaced_mask
    from mripkg.training.train import _crop_batch, _supervised_batch

    train = load_dataset(SMOKE)["train"]
    mask = equispaced_mask(SMOKE.image_size)
    whole = _crop_batch(train, 32, 4, torch.Generator().manual_seed(5))
    parts = [
        _crop_batch(train, 32, 4, torch.Generator().manual_seed(5), s)
        for s in (slice(0, 2), slice(2, 4))
    ]
    assert torch.equal(torch.cat(parts), whole)
    y, x = _supervised_batch(train, mask, 4, torch.Generator().manual_seed(5))
    y1, x1 = _supervised_batch(train, mask, 4, torch.Generator().manual_seed(5), slice(2, 4))
    assert torch.equal(x1, x[2:]) and torch.equal(y1, y[2:])


def test_training_options_are_checked(tmp_path):
    from mripkg.train import train_model, train_supervised

    with pytest.raises(ValueError, match="precision"):
        train_model("irim", SMOKE, out_dir=tmp_path, steps=1, precision="fp16")
    with pytest.raises(ValueError, match="save_every"):
        train_model("irim", SMOKE, out_dir=tmp_path, steps=1, save_every=0)
    with pytest.raises(ValueError, match="not a supervised model"):
        train_supervised("ddpm", SMOKE)
    with pytest.raises(TypeError, match="unknown training option"):
        train_supervised("irim", SMOKE, out_dir=tmp_path, step=3)
