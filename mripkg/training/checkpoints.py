"""Checkpoints: safetensors weights + a JSON sidecar, written atomically, verified on load.

* ``<name>.safetensors``: the weights (optionally stored as float16);
* ``<name>.json``: profile, model name and config, training steps, seed, CPU time, validation
  metrics, package version and the sha256 of the weights file.

Loading checks the sha256 and that the sidecar's profile and model config match what the
caller expects; any mismatch raises :class:`CheckpointError` naming the file and the problem.
Resumable training state (optimiser, EMA, step) is a separate ``torch.save`` file read back with
``weights_only=True`` (never unpickled blindly).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from .. import __version__
from ..io import atomic_write, atomic_write_json, save_safetensors, sha256_file
from ..profiles import Profile


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, or from another profile or configuration."""


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def save_weights(
    path: str | os.PathLike, state: dict[str, Tensor], meta: dict[str, Any], fp16: bool = False
) -> Path:
    """Save a state dict as safetensors plus a JSON sidecar (both atomically).

    ``meta`` must hold at least ``profile``, ``model`` and ``config``.  Returns the path.
    """
    path = Path(path)
    for key in ("profile", "model", "config"):
        if key not in meta:
            raise ValueError(f"checkpoint metadata needs {key!r}")
    tensors = {}
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        if fp16 and v.is_floating_point():
            v = v.to(torch.float16)
        tensors[k] = v
    digest = save_safetensors(path, tensors)
    side = dict(meta)
    side.update({"sha256": digest, "fp16": fp16, "package_version": __version__})
    atomic_write_json(sidecar_path(path), side)
    return path


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON sidecar of a weights file (raises CheckpointError if missing or corrupt)."""
    side = sidecar_path(Path(path))
    if not side.is_file():
        raise CheckpointError(f"{path}: sidecar {side.name} is missing")
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{side}: corrupt JSON sidecar ({exc})") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{side}: corrupt JSON sidecar (a {type(meta).__name__}, not a JSON object)"
        )
    return meta


def load_weights(
    path: str | os.PathLike,
    profile: Profile | None = None,
    model: str | None = None,
    config: dict[str, Any] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load and verify weights; returns ``(state_dict in float32, sidecar)``.

    Refuses (``CheckpointError``) a missing file, a sha256 mismatch, or a sidecar whose
    profile (its name), model name or config differs from the expected ones (``None``: not
    checked).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    meta = read_sidecar(path)
    digest = sha256_file(path)
    if digest != meta.get("sha256"):
        raise CheckpointError(
            f"{path}: sha256 {digest[:12]}... does not match the sidecar's "
            f"{str(meta.get('sha256'))[:12]}...: the file is corrupt or was replaced"
        )
    if profile is not None and meta.get("profile") != profile.name:
        raise CheckpointError(
            f"{path}: checkpoint is from profile {meta.get('profile')!r}, not {profile.name!r}"
        )
    if model is not None and meta.get("model") != model:
        raise CheckpointError(
            f"{path}: checkpoint holds model {meta.get('model')!r}, not {model!r}"
        )
    if config is not None:
        want = json.loads(json.dumps(config))
        if meta.get("config") != want:
            raise CheckpointError(
                f"{path}: model config {meta.get('config')} does not match the profile's {want}"
            )
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from exc
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    return state, meta


def save_training_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically save a resumable training state (tensors, numbers, strings, dicts)."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """Load a training state with ``torch.load(..., weights_only=True)``."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable training state ({exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: corrupt training state (a {type(state).__name__})")
    return state
