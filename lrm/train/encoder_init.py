"""Start a new model's encoder from pretrained DINO / DINOv2 weights (as the LRM paper does).

`spec` is a file (Meta's DINOv2 `.pth`, or a `.safetensors`/`.bin` in the Hugging Face
layout), a folder holding `model.safetensors` or `pytorch_model.bin` (Hugging Face layout),
or a hub id (e.g. facebook/dinov2-base). The keys are converted to ours by
`lrm.convert.encoder.convert_encoder_state` and loaded strictly.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lrm.errors import CheckpointError, LRMError
from lrm.model.lrm import LRM

HF_FILES = ("model.safetensors", "pytorch_model.bin")


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """A flat state dict from a .safetensors or a torch file (weights_only; a top-level
    "model", "state_dict" or "teacher" entry is unwrapped)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or one that needs unpickling code
        raise CheckpointError(f"{path}: cannot read as a weights-only torch file ({exc})") from None
    for key in ("model", "state_dict", "teacher"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def resolve_file(spec: str) -> Path:
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        found = next((path / n for n in HF_FILES if (path / n).is_file()), None)
        if found is None:
            raise LRMError(f"{spec}: no {' or '.join(HF_FILES)} in the folder")
        return found
    try:
        from huggingface_hub import hf_hub_download

        for name in HF_FILES:
            try:
                return Path(hf_hub_download(spec, name))
            except Exception as exc:  # EntryNotFound: try the next name
                last = exc
        raise last
    except Exception as exc:
        raise LRMError(f"--encoder-init {spec}: not a local file or folder, and the hub "
                       f"download failed ({type(exc).__name__})") from None


def init_encoder(model: LRM, spec: str) -> list[str]:
    """Load encoder weights into `model.encoder` strictly; returns the loaded key names."""
    try:
        from lrm.convert.encoder import convert_encoder_state
    except ImportError:
        raise LRMError("--encoder-init needs lrm.convert.encoder, which this build lacks") from None
    path = resolve_file(spec)
    ours = convert_encoder_state(read_state(path), model.cfg.encoder)
    own = model.encoder.state_dict()
    missing, unexpected = sorted(set(own) - set(ours)), sorted(set(ours) - set(own))
    shapes = sorted(k for k in set(own) & set(ours) if own[k].shape != ours[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointError(f"{path}: encoder weights do not fit the model's encoder "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]}, "
                              f"shape mismatch {shapes[:3]})")
    model.encoder.load_state_dict({k: v.to(own[k].dtype) for k, v in ours.items()}, strict=True)
    return sorted(ours)
