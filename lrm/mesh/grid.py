"""The extraction grid and chunked field queries.

Grid convention (OpenLRM and TripoSR alike): point (i, j, k) of an R³ grid is
(x, y, z) = (a[i], a[j], a[k]) with a = linspace(-radius, radius, R) (endpoints included),
i indexing x (meshgrid "ij"). A vertex (u, v, w) in index space maps to the world as
u / (R - 1) · 2·radius - radius.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from lrm.errors import LRMError

Field = Callable[[torch.Tensor], torch.Tensor]  # xyz [N, 3] world -> [N] or [N, C]


def grid_axis(resolution: int, radius: float) -> torch.Tensor:
    """Grid coordinates along one axis: [R] float32"""
    return torch.linspace(-radius, radius, resolution, dtype=torch.float32)


def index_to_world(idx: np.ndarray, axis: torch.Tensor) -> torch.Tensor:
    """idx: [N, 3] integer grid indices -> xyz [N, 3] float32 (exact grid coordinates)"""
    t = torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64))
    return axis[t]


def vertices_to_world(verts: np.ndarray, resolution: int, radius: float) -> np.ndarray:
    """verts: [V, 3] float64 index space -> [V, 3] float32 world"""
    return (verts / (resolution - 1) * (2.0 * radius) - radius).astype(np.float32)


@torch.no_grad()
def query(fn: Field, xyz: torch.Tensor, chunk: int, device: torch.device | str | None = None) -> np.ndarray:
    """Evaluate fn on xyz: [N, 3] in chunks of `chunk` points -> [N] or [N, C] float32 numpy"""
    outs = []
    for start in range(0, xyz.shape[0], chunk):
        part = xyz[start:start + chunk]
        out = fn(part if device is None else part.to(device))
        outs.append(out.detach().float().cpu().numpy())
    if not outs:
        return np.zeros((0,), np.float32)
    return np.concatenate(outs, axis=0)


def query_density(fn: Field, xyz: torch.Tensor, chunk: int, device=None) -> np.ndarray:
    """Activated density at xyz: [N, 3] -> [N] float32; a NaN is a user-facing error."""
    out = query(fn, xyz, chunk, device).reshape(-1)
    assert out.shape[0] == xyz.shape[0], (out.shape, xyz.shape)
    if np.isnan(out).any():
        raise LRMError(f"the density field returned NaN at {int(np.isnan(out).sum())} grid points")
    return out


@torch.no_grad()
def evaluate_grid(fn: Field, resolution: int, radius: float, chunk: int, device=None) -> np.ndarray:
    """The dense reference: density at every grid point -> [R, R, R] float32 indexed [x, y, z]"""
    from lrm.progress import bar

    r = resolution
    axis = grid_axis(r, radius)
    vol = np.empty(r ** 3, np.float32)
    points = bar(r ** 3, f"mesh grid {r}³", unit="pt")
    for start in range(0, r ** 3, chunk):
        lin = torch.arange(start, min(start + chunk, r ** 3))
        xyz = torch.stack([axis[lin // (r * r)], axis[(lin // r) % r], axis[lin % r]], dim=-1)
        vol[start:start + len(lin)] = query_density(fn, xyz, chunk, device)
        points.update(len(lin))
    points.close()
    return vol.reshape(r, r, r)


def suggest_threshold(values: np.ndarray, threshold: float) -> str:
    """One line describing the density range seen, with a threshold that would give a surface.

    values: [N] a representative sample of the field (e.g. a coarse grid)."""
    v = values[np.isfinite(values)].astype(np.float64)
    if v.size == 0:
        return "the field returned no finite density"
    lo, hi = float(v.min()), float(v.max())
    p = np.percentile(v, [1, 50, 90, 99])
    seen = f"density seen: min {lo:.4g}, p50 {p[1]:.4g}, p90 {p[2]:.4g}, p99 {p[3]:.4g}, max {hi:.4g}"
    if hi - lo <= 1e-6 * max(1.0, abs(hi)):
        return f"{seen}; the field is (nearly) constant, no threshold gives a surface (is the model trained?)"
    if hi <= threshold:  # everything outside: pick a level near the top of the observed range
        cand = p[3] if lo < p[3] < hi else (p[1] + hi) / 2
        return f"{seen}; nothing exceeds {threshold:g}, try a threshold of about {cand:.3g}"
    cand = p[0] if lo < p[0] < hi else (lo + p[1]) / 2  # everything inside
    return f"{seen}; everything exceeds {threshold:g}, try a threshold of about {cand:.3g}"
