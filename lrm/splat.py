"""Gaussian splats from a NeRF field, written as the INRIA 3D Gaussian Splatting `.ply`.

The field's box is cut into n³ voxels. A voxel of side s whose centre has density σ absorbs
`alpha = 1 - exp(-σ s)` of a ray crossing it; voxels with alpha above `min_alpha` that touch a
voxel below it (the visible shell: interior voxels are hidden behind it) each become one
isotropic Gaussian at the voxel centre with

    opacity = alpha,  scale = `scale_factor` * s,  rotation = identity,  colour = field colour there.

The file holds, per splat, the float32 properties of the INRIA format with spherical-harmonic
degree 0: `x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3`,
where `f_dc = (rgb - 0.5) / C0` (C0 = 0.28209479, the degree-0 SH constant), `opacity` is stored
as a logit and `scale_*` as logarithms, `rot` is a quaternion (w, x, y, z). Viewers that read it:
SuperSplat / PlayCanvas, gsplat.js, Open3D. Positions are written in the same viewer frame as
the meshes (glTF: Y up, the input camera on +Z).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lrm.errors import LRMError

SH_C0 = 0.28209479177387814
PROPERTIES = ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
              "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")


@dataclass
class Splats:
    xyz: np.ndarray  # [N, 3] centres, world frame
    rgb: np.ndarray  # [N, 3] colours in [0, 1]
    opacity: np.ndarray  # [N] in (0, 1)
    scale: np.ndarray  # [N] isotropic standard deviation (world units)


def splats_from_field(
    density_fn: Callable[[torch.Tensor], torch.Tensor],
    color_fn: Callable[[torch.Tensor], torch.Tensor],
    radius: float,
    resolution: int = 128,
    min_alpha: float = 0.05,
    scale_factor: float = 0.6,
    chunk: int = 1 << 18,
) -> Splats:
    """density_fn, color_fn: xyz [N, 3] world -> [N] activated density / [N, 3] rgb; the field
    spans [-radius, radius]³ -> the visible shell of voxels as splats (see module docstring)."""
    if resolution < 2:
        raise LRMError(f"splat resolution must be >= 2, got {resolution}")
    n, step = resolution, 2.0 * radius / resolution
    centres = (torch.arange(n, dtype=torch.float32) + 0.5) * step - radius
    grid = torch.stack(torch.meshgrid(centres, centres, centres, indexing="ij"), -1).reshape(-1, 3)
    sigma = torch.cat([density_fn(grid[i:i + chunk]).float().cpu() for i in range(0, len(grid), chunk)])
    alpha = (1.0 - torch.exp(-sigma.clamp(min=0) * step)).reshape(n, n, n)
    solid = alpha > min_alpha
    padded = torch.nn.functional.pad(solid[None, None].float(), (1, 1, 1, 1, 1, 1))[0, 0] > 0  # outside: empty
    interior = solid.clone()
    for axis in range(3):
        for shift in (0, 2):
            interior &= padded.narrow(axis, shift, n).narrow((axis + 1) % 3, 1, n).narrow((axis + 2) % 3, 1, n)
    keep = (solid & ~interior).reshape(-1)
    xyz = grid[keep]
    rgb = torch.cat([color_fn(xyz[i:i + chunk]).float().cpu() for i in range(0, len(xyz), chunk)]) if len(xyz) \
        else torch.zeros(0, 3)
    a = alpha.reshape(-1)[keep].clamp(max=1 - 1e-6)
    return Splats(xyz.numpy(), rgb.clamp(0, 1).numpy(), a.numpy(), np.full(len(xyz), scale_factor * step, np.float32))


def write_splat_ply(splats: Splats, path: str | Path, frame: np.ndarray | None = None) -> Path:
    """Write the INRIA 3DGS binary `.ply` (degree-0 SH); frame: [3, 3] world -> output rotation."""
    from lrm.fileio import write_atomic

    n = len(splats.xyz)
    if n == 0:
        raise LRMError(f"refusing to write an empty splat file to {str(path)!r} (no voxel above the opacity cut)")
    xyz = splats.xyz @ np.asarray(frame, np.float32).T if frame is not None else splats.xyz
    data = np.zeros((n, len(PROPERTIES)), np.float32)
    data[:, 0:3] = xyz
    data[:, 6:9] = (splats.rgb - 0.5) / SH_C0
    op = np.clip(splats.opacity, 1e-6, 1 - 1e-6)
    data[:, 9] = np.log(op / (1 - op))
    data[:, 10:13] = np.log(splats.scale)[:, None]
    data[:, 13] = 1.0  # identity rotation (w, x, y, z)
    header = "\n".join(["ply", "format binary_little_endian 1.0", f"element vertex {n}",
                        *[f"property float {p}" for p in PROPERTIES], "end_header"]) + "\n"
    path = Path(path)
    write_atomic(path, header.encode("ascii") + data.astype("<f4").tobytes())
    return path


def read_splat_ply(path: str | Path) -> dict[str, np.ndarray]:
    """Read back a file written by `write_splat_ply`: property name -> [N] float32."""
    raw = Path(path).read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    lines = raw[:end].decode("ascii").splitlines()
    if lines[:2] != ["ply", "format binary_little_endian 1.0"]:
        raise LRMError(f"{path}: not a binary little-endian PLY")
    n = int(next(line.split()[2] for line in lines if line.startswith("element vertex")))
    names = [line.split()[2] for line in lines if line.startswith("property float")]
    data = np.frombuffer(raw[end:], "<f4").reshape(n, len(names))
    return {name: data[:, i] for i, name in enumerate(names)}
