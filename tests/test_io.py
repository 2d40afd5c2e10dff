"""mripkg.io: every file is written atomically, JSON refuses NaN, one writer for both key orders."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mripkg.io import (
    atomic_write,
    atomic_write_json,
    copy_file,
    json_text,
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
