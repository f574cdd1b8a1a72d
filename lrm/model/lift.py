"""Image features carried onto the triplane along the input camera's rays ("lifting").

A triplane texel of plane p stands for the line through the field's box along the axis p does not
span. The lift places `samples` points on that line, projects them into the input image with
the source camera, and reads there, bilinearly, the encoder's patch features and the image's own
RGB. The per-texel stack [samples x (E + 3)] goes through one linear map per plane (a 1x1
convolution) and is added to that plane's features:

    planes[b, p, :, i, j] += W_p @ concat_k [tokens_map, image](project(point_k(p, i, j))) + b_p

The plane that faces the camera thus sees, at each texel, the pixel behind it (the silhouette
and colour of the photo, exactly registered); the two side planes see each image row or column
in depth order. The learned cross-attention must otherwise discover this registration from
scratch, which a small model on a CPU budget does slowly (docs/training.md, "Lifting").

W and b start at zero: a model that gains a lift behaves exactly as before until trained. No
published family has one (`samples = 0`, no parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lrm import cameras
from lrm.configs import require
from lrm.model.triplane import AxisPairs


@dataclass
class LiftConfig:
    samples: int = 0  # points per texel line projected into the input image; 0 = no lift

    def __post_init__(self) -> None:
        require([(0 <= self.samples <= 64, f"lift samples must be in [0, 64], got {self.samples}")])


def texel_points(res: int, samples: int, axes: AxisPairs, radius: float) -> torch.Tensor:
    """World points on each texel's line: [3, K, res, res, 3] (plane, sample, row, column, xyz).

    Texel (row i, column j) of a plane with axis pair (u, v) sits at u = (j + 0.5)/res*2 - 1 and
    v = (i + 0.5)/res*2 - 1 (grid_sample, align_corners=False); the K points are cell centres of
    [-1, 1] along the remaining axis; everything is scaled by `radius`.
    """
    centres = lambda n: (torch.arange(n, dtype=torch.float32) + 0.5) / n * 2 - 1  # noqa: E731
    grid = centres(res)
    depth = centres(samples)
    out = torch.zeros(3, samples, res, res, 3)
    for p, (u, v) in enumerate(axes):
        w = 3 - u - v
        out[p, :, :, :, u] = grid[None, None, :]
        out[p, :, :, :, v] = grid[None, :, None]
        out[p, :, :, :, w] = depth[:, None, None]
    return out * radius


def lift_grid(points: torch.Tensor, cameras16: torch.Tensor) -> torch.Tensor:
    """grid_sample coordinates ([-1, 1], x right, y down) of world points in each input view.

    points: [N, 3]; cameras16: [B, 16] (OpenGL 3x4 c2w row-major, fx, fy, cx, cy normalised)
    -> [B, N, 2]; points on or behind the camera plane map to 2 (outside: zero features)
    """
    c2w = cameras16[:, :12].reshape(-1, 3, 4).float()
    xy, depth = cameras.project(points[None].float(), c2w, cameras16[:, 12:].float(), eps=1e-6)
    grid = xy * 2 - 1
    return torch.where((depth > 1e-6)[..., None], grid, torch.full_like(grid, 2.0))


class ImageLift(nn.Module):
    def __init__(self, cfg: LiftConfig, feat_dim: int, channels: int, axes: AxisPairs, radius: float) -> None:
        super().__init__()
        self.cfg, self.axes, self.radius = cfg, axes, radius
        width = cfg.samples * (feat_dim + 3)
        self.weight = nn.Parameter(torch.zeros(3, channels, width))
        self.bias = nn.Parameter(torch.zeros(3, channels))

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, cameras16: torch.Tensor, res: int) -> torch.Tensor:
        """images: [B, 3, S, S] in [0, 1]; tokens: [B, 1 + h*w, E] (CLS first); cameras16: [B, 16];
        res: plane side -> plane offsets [B, 3, C, res, res]"""
        b, k = images.shape[0], self.cfg.samples
        side = int(round((tokens.shape[1] - 1) ** 0.5))
        assert side * side == tokens.shape[1] - 1, f"expected a square patch grid, got {tokens.shape}"
        fmap = rearrange(tokens[:, 1:], "b (h w) e -> b e h w", h=side, w=side)
        pts = texel_points(res, k, self.axes, self.radius).to(images.device)
        grid = lift_grid(pts.reshape(-1, 3), cameras16).reshape(b, 3 * k, res * res, 2)
        read = lambda m: F.grid_sample(m, grid.to(m.dtype), mode="bilinear", padding_mode="zeros",  # noqa: E731
                                       align_corners=False)  # [B, F, 3K, res²]
        feats = torch.cat([read(fmap), read(images.to(fmap.dtype))], dim=1)
        feats = rearrange(feats, "b f (p k) n -> b p (k f) n", p=3, k=k)
        out = torch.einsum("bpin,pci->bpcn", feats, self.weight.to(feats.dtype)) + self.bias.to(feats.dtype)[None, :, :, None]
        return out.reshape(b, 3, -1, res, res)
