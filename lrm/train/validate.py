"""Validation on held-out objects: PSNR of deterministic renders, silhouette IoU on the input
view, and an image grid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image

from lrm.model.lrm import LRM
from lrm.evaluate.image_metrics import psnr


def silhouette_iou(opacity: torch.Tensor, alpha: torch.Tensor) -> float:
    """opacity, alpha: [..., H, W] in [0, 1] -> IoU of the masks opacity > 0.5 and alpha > 0.5
    (1.0 when both are empty)"""
    pred, gt = opacity > 0.5, alpha > 0.5
    union = int((pred | gt).sum())
    return float((pred & gt).sum()) / union if union else 1.0


@torch.no_grad()
def validate(model: LRM, items: list[dict], resolution: int) -> tuple[float, np.ndarray, float]:
    """Render each item's target views on white (no jitter) from its input view, and the input
    view itself.

    items: see lrm.train.data.validation_items -> (mean PSNR in dB over objects and views, as
    `lrm evaluate` scores it (lrm.evaluate.image_metrics.psnr); grid [H, W, 3] uint8 with one
    row per object: input, then render / target pairs; mean silhouette IoU of the rendered
    opacity on the input view against its alpha)."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    scores, ious, rows = [], [], []
    for item in items:
        planes = model(item["source"].to(dev), item["source_camera"].to(dev))
        out = model.render(planes, item["c2w"].to(dev), item["intrinsics"].to(dev), resolution, background=1.0)
        pred, target = out["rgb"].float().clamp(0, 1).cpu(), item["target"]
        scores.append(psnr(rearrange(pred[0], "v c h w -> v h w c").numpy(),
                           rearrange(target[0].float(), "v c h w -> v h w c").numpy()))
        own = model.render(planes, item["source_c2w"].to(dev), item["source_intrinsics"].to(dev), resolution)
        ious.append(silhouette_iou(own["opacity"].float().cpu(), item["source_alpha"]))
        source = torch.nn.functional.interpolate(item["source"], size=(resolution, resolution),
                                                 mode="bilinear", antialias=True, align_corners=False)
        tiles = [source[0]] + [t for v in range(pred.shape[1]) for t in (pred[0, v], target[0, v])]
        rows.append(torch.cat(tiles, dim=-1))
    model.train(was_training)
    width = max(r.shape[-1] for r in rows)
    rows = [torch.nn.functional.pad(r, (0, width - r.shape[-1]), value=1.0) for r in rows]
    grid = rearrange(torch.cat(rows, dim=-2), "c h w -> h w c")
    return float(np.mean(scores)), (grid.clamp(0, 1) * 255).round().to(torch.uint8).numpy(), float(np.mean(ious))


def save_grid(grid: np.ndarray, path: Path) -> None:
    """Write a PNG atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(grid).save(tmp, format="PNG")
    os.replace(tmp, path)
