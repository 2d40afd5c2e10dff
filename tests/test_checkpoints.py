"""Checkpoints: atomic safetensors + sidecar, verified loading, resumable training."""

import json

import pytest
import torch

from mripkg.data import load_dataset
from mripkg.profiles import QUICK, SMOKE
from mripkg.training.checkpoints import (
    CheckpointError,
    load_training_state,
    load_weights,
    save_training_state,
    save_weights,
)
from mripkg.training.train import train_model

META = {"profile": "smoke", "model": "toy", "config": {"width": 3}}


def _state():
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(3, 3, generator=g), "b": torch.randn(3, generator=g)}


def test_roundtrip_and_sidecar(tmp_path):
    p = save_weights(tmp_path / "toy.safetensors", _state(), META)
    state, meta = load_weights(p, SMOKE, "toy", {"width": 3})
    assert all(torch.equal(state[k], v) for k, v in _state().items())
    assert len(meta["sha256"]) == 64 and meta["package_version"]
    assert [f.name for f in tmp_path.iterdir() if f.name.endswith(".tmp")] == []


def test_fp16_storage_loads_as_float32(tmp_path):
    p = save_weights(tmp_path / "toy.safetensors", _state(), META, fp16=True)
    state, meta = load_weights(p)
    assert meta["fp16"] and state["w"].dtype == torch.float32
    assert torch.allclose(state["w"], _state()["w"], atol=1e-2)


def test_refuses_corrupt_foreign_or_mismatched_checkpoints(tmp_path):
    p = save_weights(tmp_path / "toy.safetensors", _state(), META)
    with pytest.raises(CheckpointError, match="profile 'smoke', not 'quick'"):
        load_weights(p, profile=QUICK)
    with pytest.raises(CheckpointError, match="model config"):
        load_weights(p, config={"width": 4})
    with pytest.raises(CheckpointError, match="holds model"):
        load_weights(p, model="irim")
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_weights(p)
    p.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="sidecar"):
        load_weights(p)
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("sidecar", ["null", "[]", "3", '"text"'])
def test_sidecar_that_is_not_an_object_is_corrupt(tmp_path, sidecar):
    p = save_weights(tmp_path / "toy.safetensors", _state(), META)
    p.with_suffix(".json").write_text(sidecar)
    with pytest.raises(CheckpointError, match="not a JSON object"):
        load_weights(p)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="corrupt training state"):
        load_training_state(tmp_path / "list.pt")


def test_state_from_other_steps_or_data_is_not_reused(tmp_path, capsys):
    import dataclasses

    ds = load_dataset(SMOKE)
    out = tmp_path / "a"
    train_model("ddpm", SMOKE, ds, out_dir=out, steps=8, stop_at=3, progress=False)
    st = load_training_state(out / "ddpm.state.pt")
    assert st["target_steps"] == 8 and st["data"] == "embedded"
    with pytest.raises(CheckpointError, match="for 8 steps, not 10"):
        train_model("ddpm", SMOKE, ds, out_dir=out, steps=10, progress=False)
    other = dataclasses.replace(ds, identity="folder:0123456789abcdef")
    with pytest.raises(CheckpointError, match="on data set 'embedded'"):
        train_model("ddpm", SMOKE, other, out_dir=out, steps=8, progress=False)
    with pytest.warns(UserWarning, match="training from step 0"):
        res = train_model(
            "ddpm", SMOKE, ds, out_dir=out, steps=5, progress=False, on_mismatch="fresh"
        )
    assert len(res.history["loss"]) == 5 and res.meta["target_steps"] == 5
    assert "resuming" not in capsys.readouterr().out
    train_model("ddpm", SMOKE, ds, out_dir=tmp_path / "b", steps=6, stop_at=2, progress=False)
    train_model("ddpm", SMOKE, ds, out_dir=tmp_path / "b", steps=6, progress=False)
    assert "ddpm: resuming from step 2 of 6" in capsys.readouterr().out


@pytest.mark.parametrize("steps", [-5, 0])
def test_steps_must_be_positive(tmp_path, steps, capsys):
    from mripkg.training.train import main

    with pytest.raises(ValueError, match="positive"):
        train_model("ddpm", SMOKE, out_dir=tmp_path, steps=steps, progress=False)
    with pytest.raises(SystemExit) as info:
        main(["--profile", "smoke", "--model", "ddpm", "--steps", str(steps)])
    assert info.value.code == 2
    assert "--steps must be a positive integer" in capsys.readouterr().err


def test_metadata_is_required(tmp_path):
    with pytest.raises(ValueError, match="profile"):
        save_weights(tmp_path / "x.safetensors", _state(), {"model": "x", "config": {}})


def test_training_state_uses_weights_only_loading(tmp_path):
    save_training_state(tmp_path / "s.pt", {"step": 3, "t": torch.ones(2), "h": json.dumps([1])})
    st = load_training_state(tmp_path / "s.pt")
    assert st["step"] == 3 and torch.equal(st["t"], torch.ones(2))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_training_state(tmp_path / "bad.pt")


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    ds = load_dataset(SMOKE)
    straight = train_model("ddpm", SMOKE, ds, out_dir=tmp_path / "a", steps=8, progress=False)
    train_model("ddpm", SMOKE, ds, out_dir=tmp_path / "b", steps=8, stop_at=3, progress=False)
    st = load_training_state(tmp_path / "b" / "ddpm.state.pt")
    assert st["step"] == 3
    resumed = train_model("ddpm", SMOKE, ds, out_dir=tmp_path / "b", steps=8, progress=False)
    a = load_training_state(tmp_path / "a" / "ddpm.state.pt")["model"]
    b = load_training_state(tmp_path / "b" / "ddpm.state.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.history["loss"] == resumed.history["loss"]


def test_portable_resume_point_continues_training(tmp_path):
    from mripkg.training.train import export_resume_state

    ds = load_dataset(SMOKE)
    train_model("ddpm", SMOKE, ds, out_dir=tmp_path / "a", steps=8, stop_at=4, progress=False)
    point = export_resume_state("ddpm", SMOKE, state_dir=tmp_path / "a", dst_dir=tmp_path / "w")
    state_file = tmp_path / "a" / "ddpm.state.pt"
    model_bytes = sum(v.numel() * 4 for v in load_training_state(state_file)["model"].values())
    assert point.stat().st_size < 3 * model_bytes  # raw + EMA weights, no Adam moments
    res = train_model(
        "ddpm", SMOKE, ds, out_dir=tmp_path / "b", steps=8, progress=False, resume_point=point
    )
    st = load_training_state(tmp_path / "b" / "ddpm.state.pt")
    assert st["step"] == 8 and st["adam_restart_step"] == 4
    assert len(res.history["loss"]) == 8  # the first 4 losses came with the resume point
    with pytest.raises(CheckpointError, match="profile"):
        load_weights(point, profile=QUICK)
