"""Targets for fitting a field to a mesh: normalisation, voxel occupancy, surface colours.

- occupancy: the mesh voxelised on a grid by ray parity along z (exact for closed meshes; a
  union of closed parts is voxelised part by part), looked up trilinearly;
- colour: the surface colour (vertex colours, face colours or texture) at area-uniform samples.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from lrm.errors import LRMError
from lrm.evaluate.align import normalize_unit_bbox
from lrm.mesh.triangle_cover import cover


def normalize(mesh: trimesh.Trimesh, radius: float, extent: float) -> trimesh.Trimesh:
    """Centre the mesh's bounding box at the origin, largest half-extent = extent * radius."""
    lo, hi = mesh.bounds
    if not float((hi - lo).max()) > 0:
        raise LRMError("the mesh is empty or flat")
    out, _ = normalize_unit_bbox(mesh)  # longest side 1
    out.apply_scale(2 * extent * radius)
    return out


def load_mesh(path: str) -> trimesh.Trimesh:
    try:
        mesh = trimesh.load(path, force="mesh")
    except Exception as exc:  # trimesh raises many types for bad files
        raise LRMError(f"{path}: cannot load mesh ({type(exc).__name__}: {exc})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise LRMError(f"{path}: no triangles found")
    return mesh


def _parity_fill(tri: np.ndarray, res: int, radius: float) -> np.ndarray:
    """Solid voxels of a closed surface by crossing parity along +z. tri: [F, 3, 3] -> bool [X, Y, Z]"""
    pitch = 2 * radius / res
    # voxel-centre units; an offset unlike in x and y (so it moves no grid point onto an x = y
    # edge) keeps the column centres off the triangles' edges
    g = (tri + radius) / pitch - 0.5 + np.array([1.234567e-4, 0.7654321e-4, 0.0])
    toggles = np.zeros((res, res, res + 1), np.int32)
    for frag in cover(g[..., :2], res, res, eps=0.0):  # the column (x, y) crosses triangle `face`
        z = np.einsum("kj,kj->k", frag.bary, g[frag.face, :, 2])
        kz = np.ceil(z).astype(np.int64).clip(0, res)  # first voxel centre above the crossing
        np.add.at(toggles, (frag.x, frag.y, kz), 1)
    return (np.cumsum(toggles, axis=2)[..., :res] % 2).astype(bool)


def voxelize(mesh: trimesh.Trimesh, res: int, radius: float) -> np.ndarray:
    """bool [X, Y, Z] occupancy of the cells of [-radius, radius]³ (centre inside the mesh)."""
    merged = mesh.copy()
    merged.merge_vertices(merge_tex=True, merge_norm=True)
    parts = merged.split(only_watertight=False)
    if len(parts) > 1 and all(p.is_watertight for p in parts):  # union of closed parts
        return np.logical_or.reduce([_parity_fill(np.asarray(p.triangles), res, radius) for p in parts])
    return _parity_fill(np.asarray(merged.triangles), res, radius)


def surface_colors(mesh: trimesh.Trimesh, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n area-uniform surface samples -> points [n, 3], colours [n, 3] in [0, 1]."""
    pts, face, bary = trimesh.sample.sample_surface(mesh, n, return_barycentric=True, seed=seed)
    vis = mesh.visual
    corners = mesh.faces[face]  # [n, 3] vertex ids
    if isinstance(vis, trimesh.visual.TextureVisuals):
        mat = vis.material
        image = getattr(mat, "image", None)
        if image is None:
            image = getattr(mat, "baseColorTexture", None)
        if image is not None and vis.uv is not None:
            uv = (vis.uv[corners] * bary[..., None]).sum(1)
            rgba = trimesh.visual.color.uv_to_color(uv, image)
            return pts, rgba[:, :3] / 255.0
        return pts, np.broadcast_to(np.asarray(mat.main_color[:3]) / 255.0, (n, 3)).copy()
    if vis.kind == "vertex":
        vc = vis.vertex_colors[:, :3].astype(np.float64) / 255.0
        return pts, (vc[corners] * bary[..., None]).sum(1)
    if vis.kind == "face":
        return pts, vis.face_colors[face, :3] / 255.0
    return pts, np.full((n, 3), 0.7)


class MeshTargets:
    """Occupancy and colour targets of a normalised mesh, sampled in batches."""

    def __init__(self, mesh: trimesh.Trimesh, radius: float, voxels: int, samples: int, seed: int) -> None:
        self.radius = radius
        occ = voxelize(mesh, voxels, radius)
        if not occ.any():
            raise LRMError("the mesh encloses no volume at this voxel size (is it closed?)")
        self.occupancy = torch.from_numpy(occ).float().permute(2, 1, 0)[None, None]  # [1, 1, Z, Y, X]
        pts, cols = surface_colors(mesh, samples, seed)
        self.surface = torch.from_numpy(pts).float()
        self.colors = torch.from_numpy(cols).float()
        self.voxel = 2 * radius / voxels

    def occupancy_at(self, xyz: torch.Tensor) -> torch.Tensor:
        """xyz: [N, 3] world -> soft occupancy [N] in [0, 1] (trilinear)."""
        grid = (xyz / self.radius)[None, None, None]  # [1, 1, 1, N, 3] (x, y, z)
        out = F.grid_sample(self.occupancy, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.reshape(-1)

    def sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """-> xyz [n, 3], occupancy [n], colours [m, 3] of the first m points (near the surface), m"""
        m, wide = n // 2, n // 4
        idx = torch.randint(len(self.surface), (m + wide,), generator=gen)
        near = self.surface[idx[:m]] + torch.randn(m, 3, generator=gen) * self.voxel
        mid = self.surface[idx[m:]] + torch.randn(wide, 3, generator=gen) * 8 * self.voxel
        uniform = (torch.rand(n - m - wide, 3, generator=gen) * 2 - 1) * self.radius
        xyz = torch.cat([near, mid, uniform]).clamp(-self.radius, self.radius)
        return xyz, self.occupancy_at(xyz), self.colors[idx[:m]], m
