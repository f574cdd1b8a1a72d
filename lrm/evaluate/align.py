"""Bring a predicted surface onto the ground truth: unit-bbox normalisation, then a rotation
search followed by rigid ICP (the protocol of the TripoSR/SF3D evaluations, see docs/evaluation.md).

- normalise: translate the axis-aligned bounding-box centre to the origin and scale uniformly so
  that the longest side is 1 (the box [-0.5, 0.5] on that axis).
- rotation search: 144 candidates = 6 choices of which axis points up × 24 turns of 15° about z
  (they include the 24 rotations of the cube); the prediction's centroid is moved onto the ground
  truth's and each candidate is scored by the Chamfer distance on 500 points per surface.
- ICP: point-to-point rigid ICP (Kabsch steps, no scale, at most 50 iterations) on 2,000 points
  per surface from the 3 best candidates; the result with the lowest Chamfer distance wins.
"""

from __future__ import annotations

import math

import numpy as np
import trimesh


def normalize_unit_bbox(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, np.ndarray]:
    """-> (normalised copy, 4x4 transform applied); longest bbox side 1, bbox centred at 0."""
    lo, hi = mesh.bounds
    scale = 1.0 / float(max((hi - lo).max(), 1e-12))
    t = np.eye(4)
    t[:3, :3] *= scale
    t[:3, 3] = -scale * (lo + hi) / 2
    return transformed(mesh, t), t


def transformed(mesh: trimesh.Trimesh, t: np.ndarray) -> trimesh.Trimesh:
    """A copy of `mesh` with `t` [4, 4] applied to its vertices (colours kept)."""
    out = mesh.copy()
    out.apply_transform(t)
    return out


def _axis_rot(axis: int, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def rotation_candidates(step_deg: float = 15.0) -> np.ndarray:
    """6 up-axis choices × turns about z every `step_deg`. -> [K, 3, 3]"""
    ups = [np.eye(3), _axis_rot(0, 180), _axis_rot(1, -90), _axis_rot(1, 90), _axis_rot(0, 90), _axis_rot(0, -90)]
    turns = [_axis_rot(2, a) for a in np.arange(0.0, 360.0, step_deg)]
    return np.stack([z @ u for u in ups for z in turns])


def kabsch(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rigid R [3, 3], t [3] minimising Σ |R src_i + t − dst_i|². src, dst: [N, 3]"""
    cs, cd = src.mean(0), dst.mean(0)
    h = (src - cs).T @ (dst - cd)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return r, cd - r @ cs


def icp(src: np.ndarray, dst: np.ndarray, r: np.ndarray, t: np.ndarray, iters: int = 50,
        tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Point-to-point ICP from (r, t). src: [N, 3]; dst: [M, 3] -> refined R [3, 3], t [3]"""
    from scipy.spatial import cKDTree

    tree = cKDTree(dst)
    prev = np.inf
    for _ in range(iters):
        moved = src @ r.T + t
        dist, idx = tree.query(moved, k=1)
        r, t = kabsch(src, dst[idx])
        err = float(dist.mean())
        if prev - err < tol:
            break
        prev = err
    return r, t


def _chamfer_rigid(src, dst, src_tree, dst_tree, r, t) -> float:
    """Chamfer of (R src + t) against dst without rebuilding trees (dst mapped back instead)."""
    d1 = dst_tree.query(src @ r.T + t, k=1)[0].mean()
    d2 = src_tree.query((dst - t) @ r, k=1)[0].mean()
    return float(0.5 * (d1 + d2))


def align_points(src: np.ndarray, dst: np.ndarray, candidates: np.ndarray | None = None, top: int = 3,
                 search_points: int = 500, icp_points: int = 2000, icp_iters: int = 50, seed: int = 0) -> np.ndarray:
    """Rigid transform taking src [N, 3] onto dst [M, 3]: rotation search (Chamfer on
    `search_points` points), then ICP (on `icp_points`) from the `top` best candidates.
    -> 4x4 (the one with the lowest Chamfer distance on the ICP points)"""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    s = src[rng.permutation(len(src))[:icp_points]]
    d = dst[rng.permutation(len(dst))[:icp_points]]
    s_tree, d_tree = cKDTree(s), cKDTree(d)
    cands = rotation_candidates() if candidates is None else candidates
    cs, cd = s.mean(0), d.mean(0)
    ss, ds = s[:search_points], d[:search_points]
    ss_tree, ds_tree = cKDTree(ss), cKDTree(ds)
    scored = sorted((_chamfer_rigid(ss, ds, ss_tree, ds_tree, r, cd - r @ cs), i) for i, r in enumerate(cands))
    best, best_cd = np.eye(4), np.inf
    for _, i in scored[:top]:
        r, t = icp(s, d, cands[i], cd - cands[i] @ cs, icp_iters)
        cd_i = _chamfer_rigid(s, d, s_tree, d_tree, r, t)
        if cd_i < best_cd:
            best_cd = cd_i
            best[:3, :3], best[:3, 3] = r, t
    return best


def align_meshes(pred: trimesh.Trimesh, gt: trimesh.Trimesh, mode: str = "icp", points: int = 10_000,
                 seed: int = 0) -> tuple[trimesh.Trimesh, trimesh.Trimesh, np.ndarray]:
    """Normalise both meshes to the unit bbox, then (mode "icp") align the prediction.

    -> (pred in the normalised gt frame, normalised gt, 4x4 taking the raw pred there)
    """
    from lrm.evaluate.geometry import sample_surface

    pred_n, tp = normalize_unit_bbox(pred)
    gt_n, _ = normalize_unit_bbox(gt)
    if mode == "none":
        return pred_n, gt_n, tp
    if mode != "icp":
        raise ValueError(f"unknown alignment {mode!r}")
    t = align_points(sample_surface(pred_n, points, seed), sample_surface(gt_n, points, seed), seed=seed)
    return transformed(pred_n, t), gt_n, t @ tp
