"""Triplanes: token grid -> feature planes (upsampler), and point sampling.

Each plane p is a feature map `[C, h, w]` indexed [row, column]; a point's two coordinates for
that plane are given explicitly as an axis pair `(u_axis, v_axis)`: u selects the column
(grid_sample's x), v the row (grid_sample's y). Lookups are bilinear, align_corners=False,
zero padding, and the three plane features are concatenated in plane order -> 3C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

AxisPairs = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

# OpenLRM (EG3D with fixed axes): (x, y), (x, z), (z, y).
OPENLRM_AXES: AxisPairs = ((0, 1), (0, 2), (2, 1))
# TripoSR: (x, y), (x, z), (y, z).
TRIPOSR_AXES: AxisPairs = ((0, 1), (0, 2), (1, 2))


class Upsampler(nn.Module):
    """ConvTranspose2d(D, C, kernel 2, stride 2), shared by the three planes."""

    def __init__(self, dim: int, channels: int) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(dim, channels, kernel_size=2, stride=2)

    def forward(self, tokens: torch.Tensor, res: int) -> torch.Tensor:
        """tokens: [B, 3*r*r, D] -> planes [B, 3, C, 2r, 2r]"""
        x = rearrange(tokens, "b (p h w) d -> (b p) d h w", p=3, h=res, w=res)
        return rearrange(self.deconv(x), "(b p) c h w -> b p c h w", p=3)


def sample_triplane(planes: torch.Tensor, xyz: torch.Tensor, axes: AxisPairs) -> torch.Tensor:
    """Bilinear triplane lookup, features concatenated plane-major.

    planes: [B, 3, C, h, w]; xyz: [B, N, 3] in plane coordinates [-1, 1] -> [B, N, 3C]
    """
    b, p, c, h, w = planes.shape
    assert p == 3 and xyz.shape[0] == b and xyz.shape[-1] == 3, (planes.shape, xyz.shape)
    grid = torch.stack([xyz[..., list(pair)] for pair in axes], dim=1)  # [B, 3, N, 2]
    feats = F.grid_sample(
        rearrange(planes, "b p c h w -> (b p) c h w"),
        rearrange(grid, "b p n t -> (b p) 1 n t").to(planes.dtype),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )  # [(B*3), C, 1, N]
    return rearrange(feats, "(b p) c 1 n -> b n (p c)", p=3)
