"""Shared pieces of the trainer tests: a micro model config and tiny datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lrm.losses import lpips
from lrm.train.config import resolve
from lrm.train.synthetic import write_synthetic

MICRO_MODEL = {
    "encoder": {"dim": 32, "depth": 1, "heads": 2, "patch_size": 8, "pos_grid": 4},
    "camera_dim": 32,
    "transformer": {"dim": 32, "layers": 1, "heads": 2, "context_dim": 32, "mod_dim": 32, "token_res": 4},
    "field": {"channels": 8, "hidden": 16},
    "render": {"samples": 8, "importance": 8},
    "inference": {"source_size": 32},
}


def micro_config(root: Path, run_dir: Path, **overrides) -> dict:
    """A config dict for a ~30k-parameter model on 16-24 px crops."""
    data = {
        "preset": "tiny",
        "model": MICRO_MODEL,
        "data": {"root": str(root), "render_low": 16, "render_high": 24, "region": 12, "side_views": 2},
        "loss": {"lpips": 0.0},
        "optim": {"warmup": 2, "lr": 1e-3},
        "steps": 4, "batch_size": 2, "checkpoint_every": 2, "val_every": 0, "log_every": 1,
        "mixed_precision": "no", "run_dir": str(run_dir),
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return data


def micro(root: Path, run_dir: Path, **overrides):
    return resolve(micro_config(root, run_dir, **overrides))


def dataset(tmp: Path, objects: int = 3, views: int = 5, size: int = 24, val: int = 1) -> Path:
    return write_synthetic(tmp / "data", objects=objects, views=views, size=size, val=val)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and far faster than two on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fake_lpips_files(folder: Path):
    """Random weights in torchvision's vgg16 and lpips' vgg.pth key layouts."""
    g = torch.Generator().manual_seed(0)
    vgg, cin, i = {}, 3, 0
    for item in lpips._VGG_LAYOUT:
        if item == "M":
            i += 1
            continue
        vgg[f"features.{i}.weight"] = torch.randn(item, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        vgg[f"features.{i}.bias"] = torch.randn(item, generator=g) * 0.01
        cin, i = item, i + 2
    vgg["classifier.0.weight"] = torch.zeros(4, 4)  # present in torchvision's file, unused
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(lpips.CHANNELS)}
    torch.save(vgg, folder / "vgg16-397923af.pth")
    torch.save(heads, folder / "vgg.pth")
    return vgg, heads
