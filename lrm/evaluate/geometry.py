"""Geometry metrics between two surfaces: Chamfer distance, F-score, volume IoU.

All functions work in whatever frame they are given; the evaluation protocol (normalise to the
unit bounding box, then align) lives in lrm.evaluate.align and is applied before these.

- Chamfer distance (CD): the mean of the two directional mean Euclidean (not squared)
  nearest-neighbour distances, CD = ½ (mean_p min_q |p − q| + mean_q min_p |p − q|).
- F-score at τ: precision = share of predicted points whose nearest ground-truth point is
  closer than τ, recall = the same from ground truth to prediction, F = 2PR / (P + R) (0 if both 0).
- Volume IoU: both meshes are voxelised on one grid over their common bounding box; a voxel is
  occupied when the surface passes through it or it is enclosed by surface voxels (after a
  one-voxel morphological closing, so that holes a few voxels wide do not leak; a surface with
  larger holes, or an open one, counts with its one-voxel shell only).
"""

from __future__ import annotations

import numpy as np
import trimesh

THRESHOLDS = (0.05, 0.1, 0.2, 0.5)  # F-score thresholds reported by default, unit-bbox units


def as_trimesh(mesh) -> trimesh.Trimesh:
    """An lrm Mesh (vertices, faces, colors in [0, 1]) or a trimesh.Trimesh -> trimesh.Trimesh."""
    if isinstance(mesh, trimesh.Trimesh):
        return mesh
    colors = getattr(mesh, "colors", None)
    vc = None
    if colors is not None:
        vc = np.clip(np.asarray(colors, np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return trimesh.Trimesh(np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64),
                           vertex_colors=vc, process=False)


def sample_surface(mesh: trimesh.Trimesh, n: int, seed: int = 0) -> np.ndarray:
    """n points uniformly distributed by area on the surface. -> [N, 3] float64"""
    tri = np.asarray(mesh.triangles, np.float64)  # [F, 3, 3]
    if len(tri) == 0:
        raise ValueError("cannot sample an empty mesh")
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1)
    rng = np.random.default_rng(seed)
    face = rng.choice(len(tri), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1  # fold the unit square onto the triangle
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    t = tri[face]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


def nn_distances(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Distance from each point of src [N, 3] to its nearest neighbour in dst [M, 3]. -> [N]"""
    from scipy.spatial import cKDTree

    return cKDTree(dst).query(src, k=1)[0]


def chamfer(pred: np.ndarray, gt: np.ndarray) -> float:
    """pred: [N, 3]; gt: [M, 3] -> ½ (mean pred->gt + mean gt->pred) Euclidean NN distance."""
    return float(0.5 * (nn_distances(pred, gt).mean() + nn_distances(gt, pred).mean()))


def fscores(d_pred: np.ndarray, d_gt: np.ndarray, thresholds=THRESHOLDS) -> dict[float, float]:
    """d_pred: [N] pred->gt NN distances; d_gt: [M] gt->pred -> {τ: F-score}"""
    out = {}
    for tau in thresholds:
        p, r = float((d_pred < tau).mean()), float((d_gt < tau).mean())
        out[tau] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return out


def occupancy(mesh: trimesh.Trimesh, lo: np.ndarray, voxel: float, shape: tuple[int, int, int],
              seed: int = 0) -> np.ndarray:
    """Solid voxel occupancy of `mesh` on the grid with corner `lo` and cell side `voxel`, from
    area-uniform surface samples (about 16 per voxel-sized area); see `solid_voxels`.
    -> bool [X, Y, Z]"""
    n = int(min(4e6, max(1e4, 16 * mesh.area / voxel**2)))
    return solid_voxels(sample_surface(mesh, n, seed), lo, voxel, shape)


def solid_voxels(points: np.ndarray, lo: np.ndarray, voxel: float, shape: tuple[int, int, int]) -> np.ndarray:
    """Solid occupancy from dense surface points [N, 3]: the voxels they fall in (the shell),
    closed by one voxel, enclosed cavities filled, then opened again by one voxel inside the
    solid (the shell voxels themselves are kept). Needs no watertight mesh. -> bool [X, Y, Z]"""
    from scipy import ndimage

    ijk = np.floor((points - lo) / voxel).astype(np.int64)
    ijk = ijk[((ijk >= 0) & (ijk < np.array(shape))).all(axis=1)]
    shell = np.zeros(shape, bool)
    shell[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = True
    closed = ndimage.binary_dilation(shell)
    solid = ndimage.binary_erosion(ndimage.binary_fill_holes(closed), border_value=1)
    return solid | shell


def volume_iou(pred: trimesh.Trimesh, gt: trimesh.Trimesh, resolution: int = 64, seed: int = 0) -> float:
    """IoU of the voxel occupancies of two meshes on a common grid: `resolution` cells along the
    longest side of the union of their bounding boxes, plus a two-cell margin on every side."""
    lo = np.minimum(pred.bounds[0], gt.bounds[0])
    hi = np.maximum(pred.bounds[1], gt.bounds[1])
    voxel = float((hi - lo).max()) / resolution
    lo = lo - 2 * voxel
    shape = tuple(int(s) for s in np.ceil((hi - lo) / voxel).astype(int) + 2)
    a = occupancy(pred, lo, voxel, shape, seed)
    b = occupancy(gt, lo, voxel, shape, seed)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


def geometry_metrics(pred: trimesh.Trimesh, gt: trimesh.Trimesh, points: int = 10_000,
                     thresholds=THRESHOLDS, iou_resolution: int = 64, seed: int = 0) -> dict[str, float]:
    """CD, F-scores and volume IoU of two meshes in a common frame (no normalisation here).

    -> {"chamfer": .., "fscore@0.1": .., ..., "volume_iou": ..}
    """
    p = sample_surface(pred, points, seed)
    g = sample_surface(gt, points, seed)  # same stream: identical meshes give identical points
    d_pred, d_gt = nn_distances(p, g), nn_distances(g, p)
    out = {"chamfer": float(0.5 * (d_pred.mean() + d_gt.mean()))}
    out.update({f"fscore@{t:g}": f for t, f in fscores(d_pred, d_gt, thresholds).items()})
    out["volume_iou"] = volume_iou(pred, gt, iou_resolution, seed)
    return out
