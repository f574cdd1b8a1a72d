"""Training checkpoints: written atomically, verified on load, the newest K kept.

    RUN_DIR/checkpoints/step-000123/
      config.json, model.safetensors   # the model, loadable by lrm.hub.load_model
      trainer.pt                       # optimizer, scheduler, RNG states, data position
      accelerate/                      # sharded states (FSDP / DeepSpeed runs only)
      manifest.json                    # written last: size and sha256 of every other file

A checkpoint is written into `.tmp-step-…`, every file fsynced, then the folder is renamed
into place: a killed writer leaves no complete-looking checkpoint. On load, a folder whose
manifest is missing or whose files differ from it in size or hash is reported and skipped,
and the previous checkpoint is used. That read side (layout, `verify`, `latest_valid`) is
lrm.run_folder, which inference uses without importing the trainer.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrm.configs import to_dict
from lrm.model.lrm import CONFIG_NAME, WEIGHTS_NAME, LRMConfig
from lrm.run_folder import (  # noqa: F401  (the read side, re-exported for the trainer)
    CHECKPOINTS, FORMAT, MANIFEST, TRAINER_STATE, latest_valid, list_checkpoints, sha256, step_dir, verify,
)

def temp_dir(run_dir: str | Path, step: int) -> Path:
    """Where checkpoint `step` is assembled (the same path on every rank)."""
    return Path(run_dir) / CHECKPOINTS / f".tmp-step-{step:06d}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    """torch, numpy and python RNG states as tensors and lists (loadable with weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), py_gauss],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, py_gauss = state["python"]
    random.setstate((version, tuple(internal), py_gauss))


def write_model(folder: Path, cfg: LRMConfig, state: dict[str, torch.Tensor]) -> None:
    """config.json + model.safetensors in the layout lrm.hub.load_folder reads."""
    from lrm.tensorfile import save_tensors

    (folder / CONFIG_NAME).write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    save_tensors(tensors, folder / WEIGHTS_NAME, {"format": "pt"})
    from lrm.model.card import write_card

    write_card(folder, cfg)


def finalize(tmp: Path, final: Path, step: int) -> Path:
    """Write the manifest of everything in `tmp` (fsynced), then rename `tmp` to `final`."""
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    for p in files:
        _fsync(p)
    manifest = {"format": FORMAT, "step": step,
                "files": {str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": sha256(p)}
                          for p in files}}
    with open(tmp / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    _fsync(tmp)
    if final.exists():  # the same step saved again (e.g. after a resume): swap out the old one
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync(final.parent)
    return final


def prune(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints, and leftover temp folders."""
    root = Path(run_dir) / CHECKPOINTS
    for p in root.glob(".tmp-step-*"):
        shutil.rmtree(p, ignore_errors=True)
    ckpts = list_checkpoints(run_dir)
    for _, folder in ckpts[: max(0, len(ckpts) - max(1, keep))]:
        shutil.rmtree(folder, ignore_errors=True)


def load_trainer_state(folder: Path) -> dict[str, Any]:
    return torch.load(folder / TRAINER_STATE, map_location="cpu", weights_only=True)
