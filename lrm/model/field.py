"""The NeRF field: triplane features at a point -> raw density and colour.

    OpenLRM: 4 Linear layers, ReLU, density softplus(s - 1), colour sigmoid*1.002 - 0.001.
    TripoSR: 10 Linear layers, SiLU, density exp(s - 1), colour sigmoid.

World points are mapped to plane coordinates by dividing by `radius` (the half-side of the
box the planes span: 1.0 for OpenLRM, 0.87 for TripoSR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lrm.model.triplane import AxisPairs, sample_triplane
from lrm.configs import require


@dataclass
class FieldConfig:
    channels: int = 48  # triplane channels C (decoder input is 3C)
    hidden: int = 64  # hidden width of the MLP
    layers: int = 4  # number of Linear layers (the last maps to 4 outputs)
    activation: Literal["relu", "silu"] = "relu"  # hidden activation
    density: Literal["softplus", "exp"] = "softplus"  # density activation of (raw + density_bias)
    density_bias: float = -1.0  # added to the raw density before the activation
    color_margin: float = 0.001  # colour = sigmoid*(1+2m) - m (OpenLRM 0.001, TripoSR 0)
    radius: float = 1.0  # world half-extent spanned by the planes
    axes: AxisPairs = ((0, 1), (0, 2), (2, 1))  # plane axis pairs, see lrm.model.triplane

    def __post_init__(self) -> None:
        require([(self.channels > 0 and self.hidden > 0 and self.layers >= 2,
                  f"field channels and hidden must be > 0 and layers >= 2 (got {self.channels}, {self.hidden}, "
                  f"{self.layers})"),
                 (self.radius > 0, f"field radius must be > 0, got {self.radius}"),
                 (sorted(len(set(a)) for a in self.axes) == [2, 2, 2] and all(0 <= i < 3 for a in self.axes for i in a),
                  f"field axes must be three pairs of distinct axes 0-2, got {self.axes}")])


class Field(nn.Module):
    def __init__(self, cfg: FieldConfig) -> None:
        super().__init__()
        self.cfg = cfg
        act = nn.ReLU if cfg.activation == "relu" else nn.SiLU
        dims = [3 * cfg.channels] + [cfg.hidden] * (cfg.layers - 1) + [4]
        mods: list[nn.Module] = []
        for i in range(cfg.layers):
            mods.append(nn.Linear(dims[i], dims[i + 1]))
            if i < cfg.layers - 1:
                mods.append(act())
        self.mlp = nn.Sequential(*mods)

    def forward(self, planes: torch.Tensor, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """planes: [B, 3, C, h, w]; xyz: [B, N, 3] world -> raw density [B, N], colour [B, N, 3]"""
        feats = sample_triplane(planes, xyz / self.cfg.radius, self.cfg.axes)
        out = self.mlp(feats).float()
        return out[..., 0], self.color(out[..., 1:])

    def color(self, raw: torch.Tensor) -> torch.Tensor:
        m = self.cfg.color_margin
        rgb = torch.sigmoid(raw)
        return rgb * (1 + 2 * m) - m if m else rgb

    def density(self, raw: torch.Tensor) -> torch.Tensor:
        """Activated density from raw density (any shape)."""
        x = raw + self.cfg.density_bias
        return F.softplus(x) if self.cfg.density == "softplus" else torch.exp(x)
