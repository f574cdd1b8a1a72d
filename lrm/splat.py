"""Gaussian splats from a NeRF field, written as the INRIA 3D Gaussian Splatting `.ply`.

The splats cover the same surface as the mesh: the field's iso-surface at density `level` (the
model's mesh threshold). The field's box is cut into n³ voxels of side s; every voxel whose
centre x is inside (σ(x) >= level) and that has a 6-neighbour outside (or lies on the box's
wall) becomes one Gaussian, flattened along the surface normal n = -∇σ / |∇σ| (central
differences on the grid):

    centre  = x                                          (inside, within a voxel of the surface)
    scales  = (`scale_factor` s, `scale_factor` s, `thickness` s) along (t1, t2, n)
    opacity = 1 - 2^(-σ(x - s n) / level)              (1/2 where one voxel in is at the level,
                                                        -> 1 deeper)
    colour  = the field's colour at the centre

Opacity is measured against the iso-level rather than as the absorption 1 - exp(-σ s) of one
voxel: trained NeRFs differ by orders of magnitude in density scale (the bundled model peaks
near 5, TripoSR's surface is at 25), and voxel absorption drew the bundled model as a faint
ghost. tests/test_splat.py renders the splats with an independent numpy rasteriser and checks
them against volume renders of sharp fields and against the mesh of the bundled model.

The file holds, per splat, the float32 properties of the INRIA format, spherical-harmonic degree
3 as its loader expects, with the higher-order coefficients zero:
`x y z nx ny nz f_dc_0..2 f_rest_0..44 opacity scale_0..2 rot_0..3`, where
`f_dc = (rgb - 0.5) / C0` (C0 = 0.28209479, the degree-0 SH constant), `opacity` is stored as a
logit, `scale_*` as logarithms, and `rot` is the unit quaternion (w, x, y, z) turning the splat's
local z axis onto its normal. Viewers that read it: SuperSplat / PlayCanvas, gsplat.js (checked in
a real browser by tests/test_splat_viewer.py), Open3D.

Frame: 3DGS files live in the OpenCV-style frame of the cameras they were trained from (x right,
y down, z forward), and viewers made for them show such a scene upright; gsplat.js's default
camera looks along +z with +y pointing down the screen. So positions, normals and rotations are
written in the meshes' viewer frame (glTF: Y up, the input camera on +Z) turned 180° about X
(`GLTF_TO_3DGS`): x is the photo's right, y its down, and the input camera sits on -Z looking
along +Z. gsplat.js then opens the file showing the object upright, as the photo shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from lrm.errors import LRMError
from lrm.mesh.grid import query

SH_C0 = 0.28209479177387814
GLTF_TO_3DGS = np.diag([1.0, -1.0, -1.0])  # glTF viewer frame (Y up, viewer on +Z) -> 3DGS (Y down, viewer on -Z)
REST = 45  # f_rest_0..44: degree-3 spherical harmonics beyond degree 0, 15 per colour channel
PROPERTIES = ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *[f"f_rest_{i}" for i in range(REST)],
              "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")


@dataclass
class Splats:
    xyz: np.ndarray  # [N, 3] centres, world frame
    rgb: np.ndarray  # [N, 3] colours in [0, 1]
    opacity: np.ndarray  # [N] in (0, 1)
    scale: np.ndarray  # [N, 3] standard deviations along the splat's local x, y, z (z = normal), world units
    normal: np.ndarray  # [N, 3] unit outward surface normals, world frame


def splats_from_field(
    density_fn: Callable[[torch.Tensor], torch.Tensor],
    color_fn: Callable[[torch.Tensor], torch.Tensor],
    radius: float,
    level: float,
    resolution: int = 128,
    scale_factor: float = 0.6,
    thickness: float = 0.1,
    chunk: int = 1 << 18,
) -> Splats:
    """density_fn, color_fn: xyz [N, 3] world -> [N] activated density / [N, 3] rgb; the field
    spans [-radius, radius]³; level: the iso-density of the surface -> splats (module docstring)."""
    if resolution < 2 or not level > 0:
        raise LRMError(f"splats need a grid of at least 2 and a surface density level (--mesh-threshold) > 0, "
                       f"got {resolution} and {level:g}")
    n, step = resolution, 2.0 * radius / resolution
    centres = (torch.arange(n, dtype=torch.float32) + 0.5) * step - radius
    grid = torch.stack(torch.meshgrid(centres, centres, centres, indexing="ij"), -1).reshape(-1, 3)
    sigma = torch.from_numpy(query(density_fn, grid, chunk)).clamp(min=0).reshape(n, n, n)  # [x, y, z]
    inside = sigma >= level
    padded = F.pad(inside[None, None].float(), (1, 1, 1, 1, 1, 1))[0, 0] > 0  # beyond the box: outside
    interior = inside.clone()
    for axis in range(3):
        for shift in (0, 2):
            interior &= _shifted(padded, axis, shift, n)
    keep = inside & ~interior
    if not keep.any():
        z3 = np.zeros((0, 3), np.float32)
        return Splats(z3, z3, np.zeros(0, np.float32), z3, z3)
    index = keep.nonzero()  # [K, 3] the shell's voxels
    grad = _gradient(sigma, index, step)  # [K, 3] -> outward normals; flat spots fall back on the mask
    fallback = _gradient(inside.float(), index, step)
    flat = grad.norm(dim=-1) <= 1e-6 * grad.norm(dim=-1).max().clamp(min=1e-12)
    direction = torch.where(flat[:, None], fallback, grad)
    direction = torch.where(direction.norm(dim=-1, keepdim=True) > 0, direction, torch.tensor([0.0, 0.0, 1.0]))
    normal = -direction / direction.norm(dim=-1, keepdim=True)
    xyz = grid[keep.reshape(-1)]
    sigma_in = _trilinear(sigma, xyz - normal * step, radius)
    opacity = (1.0 - torch.exp2(-sigma_in.clamp(min=level) / level)).clamp(1e-6, 1 - 1e-6)
    rgb = torch.from_numpy(query(color_fn, xyz, chunk))
    scale = torch.tensor([scale_factor * step, scale_factor * step, thickness * step]).expand(len(xyz), 3)
    return Splats(xyz.numpy(), rgb.clamp(0, 1).numpy(), opacity.numpy(), scale.numpy().copy(), normal.numpy())


def _trilinear(grid: torch.Tensor, xyz: torch.Tensor, radius: float) -> torch.Tensor:
    """grid: [n, n, n] cell-centred values over [-radius, radius]³ ([x, y, z]); xyz: [K, 3] ->
    [K] trilinear values (the nearest wall's beyond the box)."""
    coords = (xyz / radius).flip(-1)[None, :, None, None, :]  # grid_sample wants (W, H, D) = (z, y, x)
    return F.grid_sample(grid[None, None], coords, align_corners=False, padding_mode="border").reshape(-1)


def _shifted(padded: torch.Tensor, axis: int, shift: int, n: int) -> torch.Tensor:
    """The [n, n, n] window of a 1-padded grid moved by shift - 1 along `axis`."""
    return padded.narrow(axis, shift, n).narrow((axis + 1) % 3, 1, n).narrow((axis + 2) % 3, 1, n)


def _gradient(field: torch.Tensor, index: torch.Tensor, step: float) -> torch.Tensor:
    """Central-difference gradient [K, 3] of a grid [n, n, n] at voxels index [K, 3] (zero
    beyond the box)."""
    p = F.pad(field[None, None], (1, 1, 1, 1, 1, 1))[0, 0]
    at = index + 1  # in the padded grid
    out = []
    for axis in range(3):
        hi, lo = at.clone(), at.clone()
        hi[:, axis] += 1
        lo[:, axis] -= 1
        out.append((p[tuple(hi.T)] - p[tuple(lo.T)]) / (2 * step))
    return torch.stack(out, -1)


def z_to(normal: np.ndarray) -> np.ndarray:
    """normal: [N, 3] unit -> [N, 4] unit quaternions (w, x, y, z) of the shortest rotation taking
    the z axis onto each normal (the half-way quaternion; a normal along -z turns about x)."""
    q = np.stack([1.0 + normal[:, 2], -normal[:, 1], normal[:, 0], np.zeros(len(normal))], 1)
    flip = q[:, 0] < 1e-6
    q[flip] = [0.0, 1.0, 0.0, 0.0]
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def write_splat_ply(splats: Splats, path: str | Path, frame: np.ndarray | None = None) -> Path:
    """Write the INRIA 3DGS binary `.ply`; frame: [3, 3] world -> the meshes' glTF viewer frame
    (Reconstruction.frame; None: the world is that frame). The file is in the 3DGS convention:
    that frame turned by GLTF_TO_3DGS (module docstring)."""
    from lrm.fileio import write_atomic

    n = len(splats.xyz)
    if n == 0:
        raise LRMError(f"refusing to write an empty splat file to {str(path)!r} (no voxel of the field reaches "
                       f"the surface's density level; a lower --mesh-threshold may find one)")
    rot = GLTF_TO_3DGS @ (np.eye(3) if frame is None else np.asarray(frame, np.float64))
    normal = np.asarray(splats.normal, np.float64) @ rot.T
    data = np.zeros((n, len(PROPERTIES)), np.float32)
    data[:, 0:3] = np.asarray(splats.xyz, np.float64) @ rot.T
    data[:, 3:6] = normal
    data[:, 6:9] = (splats.rgb - 0.5) / SH_C0
    op = np.clip(splats.opacity, 1e-6, 1 - 1e-6)
    at = 9 + REST
    data[:, at] = np.log(op / (1 - op))
    data[:, at + 1:at + 4] = np.log(splats.scale)
    data[:, at + 4:at + 8] = z_to(normal)
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
