"""Training losses: pixel MSE + LPIPS + triplane TV (+ optional mask), OpenLRM's weighting."""

from __future__ import annotations

import torch
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


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pred, target: [..., 3, H, W] in [0, 1] -> PSNR in dB of the mean squared error (scalar)"""
    err = (pred.float().clamp(0, 1) - target.float()).pow(2).mean()
    return -10 * torch.log10(err.clamp(min=1e-10))


def total_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], planes: torch.Tensor,
               cfg: LossConfig, lpips: LPIPS | None) -> tuple[torch.Tensor, dict[str, float]]:
    """out: renders {"rgb": [B, V, 3, r, r], "opacity": [B, V, 1, r, r]}; batch: target
    [B, V, 3, r, r], alpha [B, V, 1, r, r]; planes: [B, 3, C, h, w]
    -> (weighted sum, {term: value} of the terms computed)"""
    terms = {"mse": mse(out["rgb"], batch["target"]), "tv": tv(planes)}
    weights = {"mse": cfg.mse, "tv": cfg.tv}
    if lpips is not None and cfg.lpips > 0:
        flat = lambda x: rearrange(x, "b v c h w -> (b v) c h w")  # noqa: E731
        terms["lpips"] = lpips(flat(out["rgb"]).float().clamp(0, 1), flat(batch["target"])).mean()
        weights["lpips"] = cfg.lpips
    if cfg.mask > 0:
        terms["mask"] = (out["opacity"].float() - batch["alpha"].float()).pow(2).mean()
        weights["mask"] = cfg.mask
    loss = sum(weights[k] * v for k, v in terms.items())
    return loss, {k: float(v.detach()) for k, v in terms.items()}
