"""Point-to-surface distances between meshes, for comparing nearly identical meshes.

Point-to-point Chamfer between two samplings is dominated by the sampling spacing (about 5e-3
for 10k points on an object of the [-1, 1] box) even for identical surfaces; here each sample
of one mesh is measured to the *triangles* of the other, so identical surfaces give 0:

    chamfer(A, B) = ½ (mean_{a ~ A} d(a, B) + mean_{b ~ B} d(b, A)),  d(p, M) = min_tri |p - tri|

Candidate triangles for a point are the `candidates` nearest by centroid (scipy's cKDTree); the
result is therefore an upper bound of the exact distance (equal for fine, even meshes such as
marching-cubes output). Needs scipy (the `fit` extra).
"""

from __future__ import annotations

import numpy as np
import trimesh


def closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest points on triangles (a, b, c) to points p, all [N, 3] -> [N, 3] (Ericson, 5.1.5)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    denom = va + vb + vc
    with np.errstate(divide="ignore", invalid="ignore"):
        v_in, w_in = vb / denom, vc / denom
        v_ab = d1 / (d1 - d3)
        w_ac = d2 / (d2 - d6)
        w_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    out = a + v_in[:, None] * ab + w_in[:, None] * ac  # interior by default
    regions = [  # Voronoi regions in reverse order of Ericson's tests: later entries win
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), b + w_bc[:, None] * (c - b)),  # edge BC
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), a + w_ac[:, None] * ac),  # edge AC
        ((d6 >= 0) & (d5 <= d6), c),  # vertex C
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), a + v_ab[:, None] * ab),  # edge AB
        ((d3 >= 0) & (d4 <= d3), b),  # vertex B
        ((d1 <= 0) & (d2 <= 0), a),  # vertex A
    ]
    for cond, point in regions:
        out = np.where(cond[:, None], point, out)
    bad = ~np.isfinite(out).all(-1)  # degenerate triangles: nearest vertex
    if bad.any():
        verts = np.stack([a[bad], b[bad], c[bad]], 1)
        k = np.linalg.norm(verts - p[bad][:, None], axis=-1).argmin(1)
        out[bad] = verts[np.arange(len(k)), k]
    return out


def point_to_mesh(points: np.ndarray, mesh: trimesh.Trimesh, candidates: int = 16) -> np.ndarray:
    """points: [N, 3] -> distance to the surface of `mesh` [N] (upper bound, see module docstring)."""
    from scipy.spatial import cKDTree

    tri = np.asarray(mesh.triangles, np.float64)  # [F, 3, 3]
    k = min(candidates, len(tri))
    _, idx = cKDTree(tri.mean(1)).query(points, k=k)
    idx = idx.reshape(len(points), k)
    best = np.full(len(points), np.inf)
    for j in range(k):
        t = tri[idx[:, j]]
        q = closest_on_triangles(points, t[:, 0], t[:, 1], t[:, 2])
        best = np.minimum(best, np.linalg.norm(points - q, axis=-1))
    return best


def surface_chamfer(a: trimesh.Trimesh, b: trimesh.Trimesh, points: int = 20_000, seed: int = 0) -> float:
    """½ (mean distance of `points` area-uniform samples of a to b, and of b to a), world units."""
    pa, _ = trimesh.sample.sample_surface(a, points, seed=seed)
    pb, _ = trimesh.sample.sample_surface(b, points, seed=seed + 1)
    return float(0.5 * (point_to_mesh(pa, b).mean() + point_to_mesh(pb, a).mean()))
