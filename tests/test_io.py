"""mripkg.io: every file is written atomically, JSON refuses NaN, one writer for both key orders."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

from mripkg.io import (
    atomic_write,
    atomic_write_json,
    cache_key,
    copy_file,
    json_text,
    legacy_cache_key,
    read_json,
    save_safetensors,
    sha256_file,
    write_csv,
    write_json,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"x": 1})

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, broken)
    assert read_json(path) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_one_json_writer_with_explicit_key_order_and_nan_policy(tmp_path):
    obj = {"b": 1.5, "a": [1, 2]}
    write_json(tmp_path / "r.json", obj, machine=False)
    atomic_write_json(tmp_path / "s.json", obj)
    assert (tmp_path / "r.json").read_text() == json.dumps(obj, indent=2) + "\n"
    stamped = json.loads(write_json(tmp_path / "m.json", obj).read_text())  # a result file
    assert (
        list(stamped) == ["b", "a", "machine_fingerprint"] and read_json(tmp_path / "m.json") == obj
    )
    assert (tmp_path / "s.json").read_text() == json.dumps(obj, indent=2, sort_keys=True) + "\n"
    with pytest.raises(ValueError):  # a result must be a number
        write_json(tmp_path / "nan.json", {"x": math.nan})
    atomic_write_json(tmp_path / "side.json", {"best": -math.inf})  # sidecars, as before
    assert (tmp_path / "side.json").read_text() == '{\n  "best": -Infinity\n}\n'
    assert json_text({"x": 1}) == '{\n  "x": 1\n}\n'


def test_safetensors_csv_and_copy(tmp_path):
    digest = save_safetensors(tmp_path / "t.safetensors", {"x": torch.arange(4.0)})
    assert digest == sha256_file(tmp_path / "t.safetensors")
    path = write_csv(tmp_path / "r.csv", [{"a": 1, "b": "x"}])
    assert path.read_text().splitlines() == ["a,b", "1,x"]
    copy_file(path, tmp_path / "c.csv")
    assert (tmp_path / "c.csv").read_bytes() == path.read_bytes()
    with pytest.raises(ValueError, match="no rows"):
        write_csv(tmp_path / "e.csv", [])


def test_cache_key_is_sorted_json_then_blobs():
    a = cache_key({"b": 1, "a": [1.5, "x"]}, b"\x00\x01")
    assert a == cache_key({"a": [1.5, "x"], "b": 1}, b"\x00", b"\x01")  # order does not matter
    want = hashlib.sha256(json.dumps({"a": [1.5, "x"], "b": 1}, sort_keys=True).encode())
    want.update(b"\x00\x01")
    assert a == want.hexdigest()[:32] and len(cache_key({}, length=12)) == 12
    assert cache_key({"a": 1}) != cache_key({"a": 1}, b"\x00") != cache_key({"a": 2})
    with pytest.raises(ValueError, match="length"):
        cache_key({}, length=0)


def test_legacy_cache_key_gives_each_old_scheme():
    fields = {"target": "diffusion|w|steps=3", "slice": 4}
    old = hashlib.sha256(b"diffusion|w|steps=3|slice=4" + b"yy").hexdigest()[:32]
    assert legacy_cache_key("recon", fields, b"yy") == old
    assert (
        legacy_cache_key("recon", {"target": "tv|w", "slice": None}, b"yy")
        == (hashlib.sha256(b"tv|w" + b"yy").hexdigest()[:32])
    )
    assert legacy_cache_key("tv_lambda", {"iters": 3}) == {"iters": 3}
    bench = {"weights": "abc", "split": "val", "slices": [0, 5]}
    assert legacy_cache_key("bench_reference", bench) == "abc|val|[0, 5]"
    with pytest.raises(ValueError, match="unknown cache scheme"):
        legacy_cache_key("attack", {})


def test_attack_settings_digest_is_the_old_scheme():
    """The attack cache's file names did not change: its settings digest was already the
    sorted-JSON sha256 that cache_key computes."""
    from mripkg.attacks import AttackSettings

    for s in (AttackSettings(), AttackSettings(steps=7, model_id="abc", precision="bf16")):
        old = hashlib.sha256(json.dumps(s.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
        assert s.digest() == old == cache_key(s.to_dict(), length=12)


def test_bench_reference_saved_under_the_old_key_still_reads(monkeypatch, tmp_path):
    """The 1000-step benchmark reference stored with its old key string is reused (the sampler
    is never run: ``net`` is None)."""
    from mripkg.app import bench
    from mripkg.profiles import SMOKE

    monkeypatch.setattr(bench, "run_dir", lambda name: tmp_path)
    x = torch.arange(6.0).reshape(2, 1, 1, 3)
    old = "0123456789ab|val|[0, 5]"
    save_safetensors(
        tmp_path / "bench_reference_1000.safetensors",
        {"x": x, "key": torch.tensor(list(old.encode()), dtype=torch.uint8)},
    )
    meta = {"sha256": "0123456789abcdef"}
    got = bench._reference_1000(None, meta, None, None, [0, 5], SMOKE)
    assert torch.equal(got, x)
