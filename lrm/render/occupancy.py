"""Empty-space skipping: an occupancy grid derived from the field's density.

The box [-r, r]³ is cut into G³ cells. The activated density is evaluated on the (G+1)³ cell
corners; a cell is occupied when the largest density at its corners exceeds `threshold`, and
the occupied set is then dilated by one cell (density can peak between corners). The renderer
evaluates the field only at samples in occupied cells (and their neighbours along the ray, see
`lrm.render.renderer`); all other samples count as density 0.

Choosing the threshold: a skipped sample of density σ < ε removes at most ε·δ of optical depth,
so a ray loses at most τ = ε·L in total (L: the longest ray segment in metric units for the
interval quadrature, 1 for the point quadrature whose δ = 1/S). Each pixel then changes by at
most 1 - exp(-τ) ≈ τ: τ = 3e-3 bounds the error far below the 40 dB PSNR budget (1e-2 RMS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from lrm.render.renderer import RenderConfig

DensityFn = Callable[[torch.Tensor], torch.Tensor]  # xyz [N, 3] world -> activated density [N]


def skip_threshold(cfg: RenderConfig, tau: float = 3e-3) -> float:
    """Largest density that may be skipped so that each ray loses at most `tau` optical depth."""
    if cfg.quadrature == "point":
        return tau
    length = 2 * cfg.radius * (math.sqrt(3) if cfg.bounds == "box" else 1.0)
    return tau / length


@dataclass
class OccupancyGrid:
    occupied: torch.Tensor  # [G, G, G] bool, indexed [x, y, z]
    radius: float  # half-side of the box the grid spans, world units

    @property
    def resolution(self) -> int:
        return self.occupied.shape[0]

    def fraction(self) -> float:
        """Share of occupied cells."""
        return float(self.occupied.float().mean())

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """World-space box around the occupied cells: lo [3], hi [3]; None when nothing is occupied."""
        idx = self.occupied.nonzero()
        if len(idx) == 0:
            return None
        cell = 2 * self.radius / self.resolution
        return idx.amin(0) * cell - self.radius, (idx.amax(0) + 1) * cell - self.radius

    def __call__(self, xyz: torch.Tensor) -> torch.Tensor:
        """xyz: [..., 3] world -> [...] bool; points outside the box count as occupied."""
        g = self.resolution
        cell = ((xyz / self.radius + 1) * (g / 2)).floor()
        outside = ((cell < 0) | (cell >= g)).any(-1)
        i = cell.clamp(0, g - 1).long()
        flat = (i[..., 0] * g + i[..., 1]) * g + i[..., 2]
        return self.occupied.reshape(-1)[flat] | outside


@torch.no_grad()
def occupancy_grid(
    density: DensityFn, radius: float, resolution: int, threshold: float,
    device: str | torch.device = "cpu", chunk: int = 1 << 18,
) -> OccupancyGrid:
    """Build the grid from an activated-density function (see module docstring).

    density: xyz [N, 3] -> [N]; radius: box half-side; resolution: cells per side G.
    """
    g = resolution
    axis = torch.linspace(-radius, radius, g + 1, device=device)
    corners = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    values = torch.cat([density(corners[i : i + chunk]).float() for i in range(0, len(corners), chunk)])
    values = values.reshape(1, 1, g + 1, g + 1, g + 1)
    cell_max = F.max_pool3d(values, kernel_size=2, stride=1)  # [1, 1, G, G, G]
    occupied = F.max_pool3d((cell_max > threshold).float(), kernel_size=3, stride=1, padding=1)
    return OccupancyGrid(occupied[0, 0] > 0, radius)
