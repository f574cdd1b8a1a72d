"""Training losses: pixel MSE + LPIPS + triplane TV (+ optional mask), OpenLRM's weighting, and
the direct 3D terms at stored point samples (lrm.data.samples):

- occupancy: binary cross-entropy with logits of the density activation's input
  x = raw + density_bias (lrm.model.field) against inside (1) / outside (0): the surface is
  where x = 0, i.e. density = softplus(0) = 0.69 (OpenLRM's activation) or exp(0) = 1 (TripoSR's).
  A logistic loss keeps inside and outside gradients of one size from the first step; a loss on
  the rendering's own opacity 1 - exp(-density·δ) was measured to learn far slower (its inside
  gradient is 1/density, and early on it only raises density everywhere). `occupancy_scale` < 1
  lets x (and the density inside) grow further before the loss saturates: at scale 1 it stalls
  near x = ±5, a density of 5, and volume renders stay foggy;
- surface colour: MSE of the field's colour at surface points against the rendered colour there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from lrm.losses.lpips import LPIPS
from lrm.train.config import LossConfig


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pred, target: [B, V, 3, r, r] -> mean squared error (scalar)"""
    return (pred.float() - target.float()).pow(2).mean()


def tv(planes: torch.Tensor) -> torch.Tensor:
    """planes: [B, 3, C, h, w] -> mean squared neighbour difference along h plus along w"""
    p = planes.float()
    return (p[..., 1:, :] - p[..., :-1, :]).pow(2).mean() + (p[..., :, 1:] - p[..., :, :-1]).pow(2).mean()


def occupancy_bce(logit: torch.Tensor, inside: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """logit: [B, N] density activation input x = raw + density_bias; inside: [B, N] in {0, 1}
    -> mean binary cross-entropy of sigmoid(scale·x)"""
    return F.binary_cross_entropy_with_logits(scale * logit.float(), inside.float())


def total_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], planes: torch.Tensor,
               cfg: LossConfig, lpips: LPIPS | None, step: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
    """out: renders {"rgb": [B, V, 3, r, r], "opacity": [B, V, 1, r, r]}; batch: target
    [B, V, 3, r, r], alpha [B, V, 1, r, r]; planes: [B, 3, C, h, w]; step: the optimizer step
    -> (weighted sum, {term: value} of the terms computed)"""
    terms = {"mse": mse(out["rgb"], batch["target"]), "tv": tv(planes)}
    weights = {"mse": cfg.mse, "tv": cfg.tv}
    if lpips is not None and cfg.lpips > 0:
        flat = lambda x: rearrange(x, "b v c h w -> (b v) c h w")  # noqa: E731
        terms["lpips"] = lpips(flat(out["rgb"]).float().clamp(0, 1), flat(batch["target"])).mean()
        weights["lpips"] = cfg.lpips
    if "point_logit" in out and cfg.occupancy > 0:
        scale = cfg.occupancy_scale if step >= cfg.occupancy_scale_start else 1.0
        terms["occupancy"] = occupancy_bce(out["point_logit"], batch["occupancy"], scale)
        weights["occupancy"] = cfg.occupancy
    if "point_rgb" in out and cfg.surface_rgb > 0 and out["point_rgb"].shape[1]:
        terms["surface_rgb"] = mse(out["point_rgb"], batch["surface_rgb"])
        weights["surface_rgb"] = cfg.surface_rgb
    if cfg.mask > 0:
        terms["mask"] = (out["opacity"].float() - batch["alpha"].float()).pow(2).mean()
        weights["mask"] = cfg.mask
    loss = sum(weights[k] * v for k, v in terms.items())
    return loss, {k: float(v.detach()) for k, v in terms.items()}
