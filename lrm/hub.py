"""Resolve a model name to weights and load them strictly.

`load_model(name)` accepts:
- a local folder in our layout (`config.json` + `model.safetensors`);
- "default" (the model bundled in the package) or a preset name with random weights
  prefixed "random:" (e.g. "random:tiny"), for tests and benchmarks;
- a Hugging Face hub id (downloaded into the normal hub cache).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from lrm.configs import from_dict
from lrm.errors import CheckpointError, LRMError
from lrm.model.lrm import CONFIG_NAME, LRM, WEIGHTS_NAME, LRMConfig

BUNDLED_DIR = Path(__file__).parent / "assets" / "default"


def strict_load(model: LRM, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into `model`, failing with the names of missing, unexpected or mis-shaped keys.

    Tensors are assigned (no copy) after casting to each parameter's dtype.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_names(unexpected)}")
    if shapes:
        problems.append("shape mismatch: " + _names(
            [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shapes]))
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    cast = {k: v.to(dtype=own[k].dtype) for k, v in state.items()}
    model.load_state_dict(cast, strict=True, assign=True)


def _names(keys: list[str], limit: int = 6) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


@contextlib.contextmanager
def _skip_init() -> Iterator[None]:
    """Skip the default random initialisation of standard layers (weights are loaded next)."""
    layers = (nn.Linear, nn.modules.conv._ConvNd, nn.LayerNorm, nn.GroupNorm)
    saved = [(cls, cls.reset_parameters) for cls in layers]
    try:
        for cls in layers:
            cls.reset_parameters = lambda self: None
        yield
    finally:
        for cls, fn in saved:
            cls.reset_parameters = fn


def build_empty(cfg: LRMConfig) -> LRM:
    """Construct a model with uninitialised parameters; fill it with `strict_load`."""
    with _skip_init():
        return LRM(cfg)


def load_folder(folder: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LRM:
    """Load our own layout: config.json + model.safetensors."""
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not cfg_path.is_file() or not weights.is_file():
        raise LRMError(f"{folder}: expected {CONFIG_NAME} and {WEIGHTS_NAME} in the folder")
    try:
        cfg = from_dict(LRMConfig, json.loads(cfg_path.read_text()), str(cfg_path))
    except json.JSONDecodeError as exc:
        raise LRMError(f"{cfg_path}: not valid JSON ({exc})") from None
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights}: cannot read safetensors ({exc})") from None
    model = build_empty(cfg)
    strict_load(model, state, str(weights))
    return model.to(device=device, dtype=dtype).eval()


def load_model(name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LRM:
    """Resolve `name` (see module docstring) and load the model in eval mode."""
    if name == "default":
        if not (BUNDLED_DIR / WEIGHTS_NAME).is_file():
            raise LRMError("the bundled default model is missing from this installation")
        return load_folder(BUNDLED_DIR, device, dtype)
    if name.startswith("random:"):
        from lrm.model.presets import PRESETS

        preset = name.split(":", 1)[1]
        if preset not in PRESETS:
            raise LRMError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        torch.manual_seed(0)
        return LRM(PRESETS[preset]()).to(device=device, dtype=dtype).eval()
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise LRMError(f"{name}: a model must be a folder (config.json + model.safetensors)")
        return load_folder(path, device, dtype)
    raise LRMError(f"unknown model {name!r}: not a local folder, preset or known hub id")
