"""Camera conditioning (OpenLRM): the 16-number camera embedder and modulated LayerNorm.

The camera vector is the 3x4 camera-to-world matrix, row-major (12 numbers), followed by
fx/W, fy/H, cx/W, cy/H; see `lrm.cameras.camera_vector`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CameraEmbedder(nn.Module):
    """`W2 · SiLU(W1 · cam + b1) + b2`: [B, 16] -> [B, M]."""

    def __init__(self, dim: int, raw_dim: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Linear(raw_dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, cameras: torch.Tensor) -> torch.Tensor:
        """cameras: [B, 16] -> [B, M]"""
        assert cameras.ndim == 2 and cameras.shape[1] == self.fc1.in_features, tuple(cameras.shape)
        return self.fc2(F.silu(self.fc1(cameras)))


class ModLN(nn.Module):
    """Modulated LayerNorm: `LN(x) * (1 + scale) + shift`, `[shift | scale] = Linear(SiLU(c))`.

    Shift comes first in the linear output. No gate, no zero init.
    """

    def __init__(self, dim: int, mod_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.mod = nn.Linear(mod_dim, 2 * dim)

    def forward(self, x: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        """x: [B, L, D]; mod: [B, M] camera embedding -> [B, L, D]"""
        shift, scale = self.mod(F.silu(mod)).unsqueeze(1).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale) + shift
