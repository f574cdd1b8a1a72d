"""Baselines evaluated by the same harness, so that model numbers have context.

SphereBaseline: a sphere centred at the origin of the dataset frame, with the radius that
minimises the Chamfer distance to the ground-truth surface (an oracle radius: it sees the
ground truth; without it, the radius falls back to 0.5), coloured uniformly with the mean
colour of the input view's foreground pixels (alpha ≥ 0.5). Its novel views are rendered
exactly (ray–sphere intersection through the same pixel rays as the models, no
anti-aliasing) over the same background; its mesh is an icosphere (5,120 faces).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import trimesh

from lrm.evaluate.geometry import sample_surface
from lrm.evaluate.predictors import DATASET_FRONT_AZIMUTH, Prediction
from lrm.render.rays import camera_rays, ray_sphere


def fit_sphere_radius(gt: trimesh.Trimesh, points: int = 2000, seed: int = 0) -> float:
    """Radius r of the origin-centred sphere with the lowest Chamfer distance to `gt`."""
    from scipy.spatial import cKDTree

    g = sample_surface(gt, points, seed)
    norms = np.linalg.norm(g, axis=1)
    tree = cKDTree(g)
    dirs = np.random.default_rng(seed).standard_normal((points, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)

    def cd(r: float) -> float:  # gt -> sphere is exact: | |p| - r |
        return 0.5 * (np.abs(norms - r).mean() + tree.query(dirs * r, k=1)[0].mean())

    # coarse scan, then golden-section refinement; radii near 0 are skipped (queries from the
    # centre of a round surface are the k-d tree's worst case)
    grid = np.linspace(0.1, 1.0, 10) * norms.max()
    i = int(np.argmin([cd(r) for r in grid]))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = cd(a), cd(b)
    for _ in range(20):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = cd(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = cd(b)
    return float((lo + hi) / 2)


def foreground_colour(rgba: np.ndarray) -> np.ndarray:
    """rgba: [H, W, 4] uint8 -> mean RGB [3] in [0, 1] of pixels with alpha >= 0.5 (grey if none)."""
    fg = rgba[..., 3] >= 128
    return rgba[fg][:, :3].mean(0) / 255.0 if fg.any() else np.full(3, 0.5)


class SphereBaseline:
    name = "sphere"
    front_azimuth = DATASET_FRONT_AZIMUTH  # a sphere at the origin looks the same from anywhere

    def __init__(self, background: float = 1.0):
        self.background = background

    def describe(self) -> dict:
        return {"name": self.name, "kind": "baseline", "front_azimuth": self.front_azimuth,
                "definition": "origin-centred sphere, Chamfer-optimal radius vs ground truth, "
                              "mean foreground colour of the input view"}

    def predict(self, rgba: np.ndarray, distance: float, gt: trimesh.Trimesh | None = None) -> Prediction:
        t0 = time.perf_counter()
        radius = fit_sphere_radius(gt) if gt is not None else 0.5
        colour = foreground_colour(rgba)
        mesh = trimesh.creation.icosphere(subdivisions=4, radius=radius)
        mesh.visual.vertex_colors = np.append(np.round(colour * 255), 255).astype(np.uint8)
        background = self.background

        def render(c2w: np.ndarray, intrinsics: np.ndarray, size: int) -> np.ndarray:
            o, d = camera_rays(torch.as_tensor(c2w, dtype=torch.float32),
                               torch.as_tensor(intrinsics, dtype=torch.float32), size)
            near, far = ray_sphere(o, d, radius, clamp_near=True)
            hit = (far > near).reshape(-1, size, size, 1).numpy()
            return np.where(hit, colour.astype(np.float32), np.float32(background))

        return Prediction(render, mesh, None, {"fit": time.perf_counter() - t0})
