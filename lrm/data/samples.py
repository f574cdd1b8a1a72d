"""3D point samples of an object's ground truth: the cheap, direct supervision of the field.

A rendered view supervises the field only through volume rendering (tens of field queries per
pixel, and a gradient that says little about where the surface is). We own the ground-truth
mesh of every training object, so we also store, per object, points whose answer is known:

- **surface points** (area-uniform on the visible, non-cut-out triangles) with the colour the
  renderer shows there (albedo under the dataset's world-fixed light, lrm.data.gl_render) and the
  outward normal;
- **occupancy points**: half near the surface (surface points moved by a normal-distributed
  offset), half uniform in the box [-1, 1]³, each labelled inside/outside.

Inside/outside comes from a solid voxelisation (lrm.evaluate.geometry.solid_voxels): the surface
is voxelised on a `grid`³ lattice over [-1, 1]³, closed by one voxel and its enclosed cavities
filled. It needs no watertight mesh and no consistent winding; an open surface (a sign, a leaf)
is a one-voxel-thick solid. The normal of a surface point is oriented towards the side that is
empty; its colour is shaded with that normal.

Stored as `samples.npz` in the object folder (lrm.data.format), in the same world frame as the
cameras:

    surface_xyz    [S, 3] float16      surface_rgb  [S, 3] uint8    surface_normal [S, 3] int8 (x127)
    occupancy_xyz  [Q, 3] float16      occupancy    [Q] uint8 (1 inside, 0 outside)
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrm.data.mesh import AssetMesh
from lrm.data.gl_render import LightConfig
from lrm.errors import LRMError

SAMPLES_NAME = "samples.npz"
FIELDS = ("surface_xyz", "surface_rgb", "surface_normal", "occupancy_xyz", "occupancy")


@dataclass
class SampleConfig:
    surface: int = 8192  # surface points with colour and normal
    near: int = 8192  # occupancy points near the surface
    uniform: int = 8192  # occupancy points uniform in [-1, 1]³
    near_sigma: float = 0.03  # std of the offset of near-surface points, world units
    grid: int = 96  # voxels per side of the [-1, 1]³ lattice that decides inside/outside


@dataclass
class PointSamples:
    surface_xyz: np.ndarray  # [S, 3] float32
    surface_rgb: np.ndarray  # [S, 3] float32 in [0, 1]
    surface_normal: np.ndarray  # [S, 3] float32, unit, towards the empty side
    occupancy_xyz: np.ndarray  # [Q, 3] float32
    occupancy: np.ndarray  # [Q] float32, 1 inside, 0 outside


def _triangles(mesh: AssetMesh) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per part: triangle corners [F, 3, 3] float64 and triangle areas [F]."""
    tris = [p.positions[p.faces].astype(np.float64) for p in mesh.parts]
    return tris, [0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=-1) for t in tris]


def _surface(mesh: AssetMesh, tris: list[np.ndarray], areas: list[np.ndarray], n: int, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-uniform points on the mesh (`tris`, `areas`: from `_triangles`) with albedo and
    geometric normal; texels cut out by an alpha test are holes (their points are dropped).
    -> xyz [M, 3], albedo [M, 3], normal [M, 3]"""
    sizes = np.array([a.sum() for a in areas])
    if sizes.sum() <= 0:
        raise ValueError("mesh has zero area")
    counts = rng.multinomial(n, sizes / sizes.sum())
    xyz, albedo, normal = [], [], []
    for part, t, a, k in zip(mesh.parts, tris, areas, counts):
        if k == 0:
            continue
        cdf = np.cumsum(a)
        face = np.searchsorted(cdf, rng.random(k) * cdf[-1], side="right").clip(0, len(t) - 1)
        u, v = rng.random(k), rng.random(k)
        flip = u + v > 1
        u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
        w = np.stack([1 - u - v, u, v], axis=1)  # barycentric weights [k, 3]
        corners = part.faces[face]  # [k, 3]
        xyz.append(np.einsum("kc,kcd->kd", w, t[face]))
        n_geo = np.cross(t[face, 1] - t[face, 0], t[face, 2] - t[face, 0])
        normal.append(n_geo / np.maximum(np.linalg.norm(n_geo, axis=1, keepdims=True), 1e-12))
        col = np.ones((k, 4))
        if part.colors is not None:
            col = np.einsum("kc,kcd->kd", w, part.colors[corners].astype(np.float64))
        keep = np.ones(k, bool)
        if part.texture is not None and part.uv is not None:
            uv = np.einsum("kc,kcd->kd", w, part.uv[corners].astype(np.float64))
            h, wd = part.texture.shape[:2]
            col_i = np.floor(np.mod(uv[:, 0], 1.0) * wd).astype(np.int64).clip(0, wd - 1)
            row_i = np.floor((1.0 - np.mod(uv[:, 1], 1.0)) * h).astype(np.int64).clip(0, h - 1)
            texel = part.texture[row_i, col_i].astype(np.float64) / 255.0
            col = col * texel
            if part.alpha_cutoff is not None:
                keep = col[:, 3] >= part.alpha_cutoff
        xyz[-1], normal[-1] = xyz[-1][keep], normal[-1][keep]
        albedo.append(col[keep, :3])
    return np.concatenate(xyz), np.concatenate(albedo), np.concatenate(normal)


def shade(albedo: np.ndarray, normal: np.ndarray, light: LightConfig) -> np.ndarray:
    """The renderer's colour of a surface seen from its `normal` side (lrm.data.gl_render):
    albedo · (ambient + key·max(n·l, 0) + sky·(n_z + 1)/2). albedo, normal: [N, 3] -> [N, 3]"""
    d = np.asarray(light.direction, np.float64)
    d = d / np.linalg.norm(d)
    s = light.ambient + light.key * np.maximum(normal @ d, 0.0) + light.sky * 0.5 * (normal[:, 2] + 1.0)
    return np.clip(albedo * s[:, None], 0.0, 1.0)


def _lookup(solid: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """solid: bool [G, G, G] over [-1, 1]³; xyz: [N, 3] -> bool [N] (outside the box: empty)"""
    g = solid.shape[0]
    ijk = np.floor((xyz + 1.0) * (g / 2.0)).astype(np.int64)
    inside_box = ((ijk >= 0) & (ijk < g)).all(axis=1)
    ijk = ijk.clip(0, g - 1)
    return solid[ijk[:, 0], ijk[:, 1], ijk[:, 2]] & inside_box


def _orient(solid: np.ndarray, xyz: np.ndarray, normal: np.ndarray, voxel: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Turn normals [N, 3] towards the empty side, probing the voxels 1.5 voxels along ±n.
    -> normals [N, 3], sided [N] (True where exactly one side is solid)"""
    step = 1.5 * voxel
    plus, minus = _lookup(solid, xyz + step * normal), _lookup(solid, xyz - step * normal)
    return np.where((plus & ~minus)[:, None], -normal, normal), plus != minus


def compute_samples(mesh: AssetMesh, light: LightConfig, cfg: SampleConfig, seed: int) -> PointSamples:
    """Point samples of a normalised mesh (inside [-1, 1]³). Deterministic for a seed."""
    from scipy.spatial import cKDTree

    from lrm.evaluate.geometry import solid_voxels

    rng = np.random.default_rng(seed)
    g = cfg.grid
    voxel = 2.0 / g
    tris, areas = _triangles(mesh)
    area = sum(float(a.sum()) for a in areas)
    # Dense surface points decide the voxels (about 6 per voxel-sized area; the closing fills gaps).
    dense, _, dense_n = _surface(mesh, tris, areas, int(min(1e6, max(2e4, 6 * area / voxel**2))), rng)
    if len(dense) == 0:
        raise ValueError("no visible surface (every texel cut out)")
    solid = solid_voxels(dense, np.full(3, -1.0), voxel, (g, g, g))
    dense_n, dense_sided = _orient(solid, dense, dense_n, voxel)
    xyz, albedo, normal = _surface(mesh, tris, areas, cfg.surface, rng)
    for _ in range(6):  # alpha-tested holes drop points: draw more until there are enough
        if len(xyz) >= cfg.surface or len(xyz) == 0:
            break
        more = _surface(mesh, tris, areas, 2 * (cfg.surface - len(xyz)) * cfg.surface // len(xyz), rng)
        xyz, albedo, normal = (np.concatenate([a, b]) for a, b in zip((xyz, albedo, normal), more))
    if len(xyz) < cfg.surface:
        raise ValueError("no visible surface (nearly every texel cut out)")
    xyz, albedo, normal = xyz[:cfg.surface], albedo[:cfg.surface], normal[:cfg.surface]
    normal, _ = _orient(solid, xyz, normal, voxel)
    rgb = shade(albedo, normal, light)
    base = xyz[rng.integers(0, len(xyz), cfg.near)]
    near = base + rng.normal(0.0, cfg.near_sigma, size=(cfg.near, 3))
    uniform = rng.uniform(-1.0, 1.0, size=(cfg.uniform, 3))
    occ_xyz = np.concatenate([near, uniform]).clip(-1.0, 1.0)
    occ = _lookup(solid, occ_xyz)
    # Within two voxels of a surface with a solid side, the voxels are too coarse: the side of
    # the nearest surface point's oriented tangent plane decides instead.
    dist, idx = cKDTree(dense).query(occ_xyz, k=1)
    close = (dist < 2 * voxel) & dense_sided[idx]
    behind = np.einsum("nd,nd->n", occ_xyz - dense[idx], dense_n[idx]) < 0
    occ = np.where(close, behind, occ)
    return PointSamples(xyz.astype(np.float32), rgb.astype(np.float32), normal.astype(np.float32),
                        occ_xyz.astype(np.float32), occ.astype(np.float32))


def write_samples(folder: str | Path, s: PointSamples) -> Path:
    """Write `samples.npz` into an object folder atomically (temp file + rename)."""
    folder = Path(folder)
    tmp = folder / f".{SAMPLES_NAME}.{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                surface_xyz=s.surface_xyz.astype(np.float16),
                surface_rgb=np.round(s.surface_rgb * 255.0).clip(0, 255).astype(np.uint8),
                surface_normal=np.round(s.surface_normal * 127.0).clip(-127, 127).astype(np.int8),
                occupancy_xyz=s.occupancy_xyz.astype(np.float16),
                occupancy=(s.occupancy > 0.5).astype(np.uint8),
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / SAMPLES_NAME)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return folder / SAMPLES_NAME


def read_samples(folder: str | Path) -> PointSamples:
    """Read an object's `samples.npz`; a missing or malformed file is an LRMError."""
    path = Path(folder) / SAMPLES_NAME
    if not path.is_file():
        raise LRMError(f"{folder}: no {SAMPLES_NAME}; add point samples with `lrm data samples DATASET SOURCE ...`")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in FIELDS}
    except (KeyError, ValueError, OSError) as exc:
        raise LRMError(f"{path}: unreadable point samples ({exc})") from None
    s, q = len(arrays["surface_xyz"]), len(arrays["occupancy_xyz"])
    shapes = {"surface_xyz": (s, 3), "surface_rgb": (s, 3), "surface_normal": (s, 3),
              "occupancy_xyz": (q, 3), "occupancy": (q,)}
    for k, shape in shapes.items():
        if arrays[k].shape != shape:
            raise LRMError(f"{path}: {k} has shape {arrays[k].shape}, expected {shape}")
    return PointSamples(
        arrays["surface_xyz"].astype(np.float32),
        arrays["surface_rgb"].astype(np.float32) / 255.0,
        arrays["surface_normal"].astype(np.float32) / 127.0,
        arrays["occupancy_xyz"].astype(np.float32),
        arrays["occupancy"].astype(np.float32),
    )
