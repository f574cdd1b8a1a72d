"""Tiny analytic multi-view datasets (coloured spheres, ray-cast exactly) for tests, benchmarks
and smoke runs of the trainer; no GL, no assets. Written in the lrm-mv-1 format, with exact 3D
point samples (lrm.data.samples) when asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lrm import cameras
from lrm.data.format import ObjectViews, index_dataset, write_dataset_info, write_object
from lrm.data.samples import PointSamples
from lrm.render.rays import camera_rays

LIGHT = (0.4, -0.6, 0.7)  # direction towards the light of `render_spheres`


def _shade(normal: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """normal: [..., 3] unit; colour: [3] -> Lambert colour [..., 3] under LIGHT (35 % ambient)."""
    light = torch.tensor(LIGHT)
    light = light / light.norm()
    return colour * (0.35 + 0.65 * (normal @ light).clamp(min=0))[..., None]


def random_cameras(n: int, rng: np.random.Generator, focal: float = 0.75) -> tuple[torch.Tensor, torch.Tensor]:
    """View 0 at (0, -d, 0) looking at the origin (the "front" view), others random around the
    object, distances in [1.9, 2.6]. -> c2w [n, 4, 4], intrinsics [n, 4]"""
    dist = rng.uniform(1.9, 2.6, n)
    dirs = rng.normal(size=(n, 3))
    dirs[:, 2] = np.abs(dirs[:, 2]) * 0.5
    dirs[0] = (0.0, -1.0, 0.0)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    pos = torch.from_numpy(dirs * dist[:, None]).float()
    return cameras.look_at(pos), cameras.intrinsics(focal, n)


def render_spheres(spheres: list[tuple[np.ndarray, float, np.ndarray]], c2w: torch.Tensor,
                   intrinsics: torch.Tensor, size: int) -> np.ndarray:
    """Ray-cast Lambert-shaded spheres (centre [3], radius, colour [3]).

    c2w: [V, 4, 4]; intrinsics: [V, 4] -> rgba [V, size, size, 4] uint8"""
    origins, dirs = camera_rays(c2w, intrinsics, size)  # [V, R, 3]
    best = torch.full(origins.shape[:2], float("inf"))
    rgb = torch.zeros(*origins.shape[:2], 3)
    for centre, radius, colour in spheres:
        c = torch.tensor(centre, dtype=torch.float32)
        oc = origins - c
        b = (oc * dirs).sum(-1)
        disc = b * b - ((oc * oc).sum(-1) - radius**2)
        t = -b - disc.clamp(min=0).sqrt()
        hit = (disc > 0) & (t > 0) & (t < best)
        normal = (origins + t[..., None] * dirs - c) / radius
        col = _shade(normal, torch.tensor(colour, dtype=torch.float32))
        rgb = torch.where(hit[..., None], col, rgb)
        best = torch.where(hit, t, best)
    alpha = torch.isfinite(best).float()[..., None]
    img = torch.cat([rgb * alpha, alpha], -1).reshape(-1, size, size, 4)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def random_object(rng: np.random.Generator) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """A large sphere with a smaller one of another colour attached."""
    big = (rng.uniform(-0.15, 0.15, 3), float(rng.uniform(0.4, 0.6)), rng.uniform(0.1, 1.0, 3))
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    small = (big[0] + d * big[1], float(rng.uniform(0.2, 0.3)), rng.uniform(0.1, 1.0, 3))
    return [big, small]


def sphere_samples(spheres: list[tuple[np.ndarray, float, np.ndarray]], rng: np.random.Generator,
                   surface: int = 2048, occupancy: int = 4096) -> PointSamples:
    """Exact point samples of a union of spheres: visible surface points (not inside another
    sphere) with their Lambert colour and normal, and inside/outside points, half near the surface."""
    pts, normals, cols = [], [], []
    areas = np.array([r * r for _, r, _ in spheres])
    for (centre, radius, colour), k in zip(spheres, rng.multinomial(4 * surface, areas / areas.sum())):
        n = rng.normal(size=(k, 3))
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        pts.append(centre + radius * n)
        normals.append(n)
        cols.append(_shade(torch.from_numpy(n).float(), torch.tensor(colour, dtype=torch.float32)).numpy())
    xyz, normal, rgb = (np.concatenate(a) for a in (pts, normals, cols))
    inside = lambda p, margin=0.0: np.any([np.linalg.norm(p - c, axis=1) < r - margin  # noqa: E731
                                           for c, r, _ in spheres], axis=0)
    keep = np.flatnonzero(~inside(xyz, 1e-6))[:surface]
    near = xyz[rng.integers(0, len(xyz), occupancy // 2)] + rng.normal(0, 0.03, (occupancy // 2, 3))
    occ_xyz = np.concatenate([near, rng.uniform(-1, 1, (occupancy - occupancy // 2, 3))])
    return PointSamples(xyz[keep].astype(np.float32), rgb[keep].astype(np.float32), normal[keep].astype(np.float32),
                        occ_xyz.astype(np.float32), inside(occ_xyz).astype(np.float32))


def write_synthetic(root: str | Path, objects: int = 4, views: int = 6, size: int = 32,
                    val: int = 1, seed: int = 0, points: bool = False) -> Path:
    """Write `objects` training objects and `val` validation objects of `views` views each;
    `points`: with their exact 3D point samples (samples.npz)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    write_dataset_info(root, {"resolution": size, "views": views, "source": "synthetic spheres"})
    for i in range(objects + val):
        c2w, intr = random_cameras(views, rng)
        spheres = random_object(rng)
        rgba = render_spheres(spheres, c2w, intr, size)
        split = "train" if i < objects else "val"
        samples = sphere_samples(spheres, np.random.default_rng([seed, i])) if points else None
        write_object(root, ObjectViews(f"sphere{i:03d}", rgba, c2w.numpy(), intr.numpy(),
                                       meta={"split": split, "source": "synthetic", "license": "CC0-1.0"}),
                     samples=samples)
    index_dataset(root)
    return root
