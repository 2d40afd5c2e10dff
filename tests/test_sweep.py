"""Sharded white-box sweeps: 2 shards in 2 processes + a merge equal one process, byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from mripkg.app.sweep import RESULT_FILES, fill_shard, write_results
from mripkg.attacks.cache import AttackCache
from mripkg.attacks.kspace import AttackSettings
from mripkg.attacks.shards import MissingEntries, Shard
from mripkg.data import load_test_split
from mripkg.evaluation.selection import slice_set
from mripkg.physics import equispaced_mask
from mripkg.profiles import SMOKE
from tests.tiny_models import TinyNet

EPS = [0.0, 0.02, 0.08]
BATCH = 2  # 3 slices x 3 eps = 9 pairs: batches 0-4, shard 0/2 takes 0, 2, 4


def _sweep_inputs():
    torch.manual_seed(0)
    models = {"tiny_a": TinyNet().eval(), "tiny_b": TinyNet().eval()}
    data = slice_set(load_test_split(SMOKE), equispaced_mask(SMOKE.image_size), 3)
    settings = {k: AttackSettings(steps=3, seed=SMOKE.seed) for k in models}
    return models, data, settings


def _shard_worker(index: int, count: int, root: str) -> None:
    torch.set_num_threads(1)
    models, data, settings = _sweep_inputs()
    cache = AttackCache("smoke", root=Path(root))
    fill_shard(
        models, data, EPS, settings, shard=Shard(index, count), profile="smoke", cache=cache,
        batch_size=BATCH,
    )  # fmt: skip


def _results(tmp: Path, merge: bool) -> dict[str, bytes]:
    models, data, settings = _sweep_inputs()
    cache = AttackCache("smoke", root=tmp / "attacks")
    paths = write_results(
        models, data, EPS, settings, profile="smoke", seed=SMOKE.seed, cache=cache,
        out_dir=tmp, batch_size=BATCH, merge=merge,
    )  # fmt: skip
    return {p.name: p.read_bytes() for p in paths}


def test_two_shards_and_a_merge_write_the_files_of_one_process(tmp_path):
    torch.set_num_threads(1)
    sharded = tmp_path / "sharded"
    with pytest.raises(MissingEntries, match="batches"):  # nothing attacked yet
        _results(sharded, merge=True)
    mp.spawn(_shard_worker, args=(2, str(sharded / "attacks")), nprocs=2, join=True)
    merged = _results(sharded, merge=True)
    one = _results(tmp_path / "one", merge=False)
    assert sorted(merged) == sorted(RESULT_FILES)
    assert merged == one  # byte for byte
    n_entries = len(list((sharded / "attacks").rglob("*.safetensors")))
    assert n_entries == 2 * 3 * 3 == len(list((tmp_path / "one").rglob("*.safetensors")))


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
