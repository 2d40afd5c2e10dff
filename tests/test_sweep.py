"""Sharded white-box sweeps: 2 shards in 2 processes + a merge equal one process, byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from mripkg import paths
from mripkg.attacks.kspace import AttackSettings
from mripkg.attacks.shards import MissingEntries, Shard
from mripkg.data import load_test_split
from mripkg.experiments import whitebox
from mripkg.models.base import ZeroFilled
from mripkg.physics import equispaced_mask
from mripkg.profiles import SMOKE, with_overrides
from tests.tiny_models import TinyNet

# 3 slices x 3 eps = 9 pairs in batches of 2: batches 0-4, shard 0/2 attacks 0, 2 and 4
PROFILE = with_overrides(SMOKE, n_slices=3, eps_grid=[0.0, 0.02, 0.08])
BATCH = 2


def _study(root: Path) -> whitebox.WhiteBox:
    """Notebook 03's study on tiny models, writing under ``root`` instead of runs/."""
    paths.RUNS_DIR = root
    whitebox.REPO_ROOT = root
    torch.set_num_threads(1)
    torch.manual_seed(0)
    wb = whitebox.WhiteBox(
        PROFILE,
        {"test": load_test_split(PROFILE)},  # type: ignore[arg-type]
        equispaced_mask(PROFILE.image_size),
        batch_size=BATCH,
        sources=["zero_filled", "resunetpp"],  # the second one a tiny stand-in
    )
    wb.models = {"zero_filled": ZeroFilled(), "resunetpp": TinyNet().eval()}
    wb.settings = {m: AttackSettings(steps=3, seed=PROFILE.seed) for m in wb.sources}
    wb.select()
    return wb


def _shard_worker(index: int, count: int, root: str) -> None:
    _study(Path(root)).attack_shard(Shard(index, count))


def _merge(root: Path, merge: bool) -> dict[str, bytes]:
    wb = _study(root)
    wb.attack(require_cached=merge)
    wb.evaluate()
    return {p.name: p.read_bytes() for p in wb.save()}


def test_two_shards_and_a_merge_write_the_files_of_one_process(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUNS_DIR", paths.RUNS_DIR)  # restored after the test
    monkeypatch.setattr(whitebox, "REPO_ROOT", whitebox.REPO_ROOT)
    sharded, one = tmp_path / "sharded", tmp_path / "one"
    with pytest.raises(MissingEntries, match="batches"):  # nothing attacked yet
        _merge(sharded, merge=True)
    mp.spawn(_shard_worker, args=(2, str(sharded)), nprocs=2, join=True)
    merged = _merge(sharded, merge=True)
    single = _merge(one, merge=False)
    assert sorted(merged) == ["metrics_white_box.json", "metrics_white_box_per_slice.csv"]
    assert merged == single  # byte for byte
    entries = [len(list((d / "smoke" / "attacks").rglob("*.safetensors"))) for d in (sharded, one)]
    assert entries == [2 * 3 * 3] * 2


def test_shards_own_batches_round_robin_and_parse():
    assert [k for k in range(5) if Shard(0, 2).owns(k)] == [0, 2, 4]
    assert [k for k in range(5) if Shard(1, 2).owns(k)] == [1, 3]
    assert Shard.parse("1/4") == Shard(1, 4) and str(Shard(1, 4)) == "1/4"
    for bad in ("2/2", "1-2", "x/3", "0/0"):
        with pytest.raises(ValueError, match="shard"):
            Shard.parse(bad)


def test_torchrun_variables_give_the_shard(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert Shard.from_torchrun() is None
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert Shard.from_torchrun() == Shard(3, 8)
    assert os.environ["RANK"] == "3"
