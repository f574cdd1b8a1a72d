"""AdamW with OpenLRM's decay groups, and linear warm-up + cosine decay."""

from __future__ import annotations

import math

import torch
from torch import nn

from lrm.train.config import OptimConfig

NORMS = (nn.LayerNorm, nn.GroupNorm)
WARMUP_START = 1e-10  # learning rate at step 0 of the warm-up


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay every parameter except biases and the parameters of norm layers (also the
    LayerNorm inside ModLN); learned tokens, CLS/register tokens and LayerScale are decayed."""
    no_decay: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, NORMS) or name == "bias":
                no_decay.add(id(p))
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) not in no_decay], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0},
    ]


class WarmupCosine:
    """Multiplier of the peak lr at optimizer step s: linear from WARMUP_START/lr to 1 over
    `warmup` steps, then (1 + cos(π (s - warmup) / (total - warmup))) / 2."""

    def __init__(self, lr: float, warmup: int, total: int) -> None:
        self.start, self.warmup, self.total = WARMUP_START / lr, warmup, total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.start + (1 - self.start) * step / self.warmup
        span = max(1, self.total - self.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - self.warmup) / span)))


def build_optimizer(model: nn.Module, cfg: OptimConfig, total_steps: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(cfg.lr, cfg.warmup, total_steps))
    return opt, sched
