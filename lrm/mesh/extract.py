"""Density field -> mesh: grid, marching cubes, vertex colours.

    method="dense":  query all R³ grid points, marching cubes on the whole volume (the obvious
                     reference; what OpenLRM and TripoSR do).
    method="sparse": coarse-to-fine (lrm.mesh.sparse): queries only blocks that can hold the
                     surface and gives the same mesh as "dense" (see the guarantee there).

Colours are queried at the final vertices only. Grid convention: lrm.mesh.grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import torch

from lrm.errors import EmptySurfaceError
from lrm.mesh.grid import Field, evaluate_grid, query, suggest_threshold, vertices_to_world
from lrm.mesh.marching import marching_cubes, snap_to_edges
from lrm.mesh.sparse import SparseConfig, sparse_surface
from lrm.mesh.types import Mesh


def model_field(model, planes: torch.Tensor) -> tuple[Field, Field]:
    """The (density_fn, color_fn) pair of one triplane for extract_mesh / bake_texture:
    model: an LRM; planes: [1, 3, C, h, w] -> functions of xyz [N, 3] world (put on the planes'
    device) returning activated density [N] and rgb [N, 3], as LRM.query computes them."""
    assert planes.ndim == 5 and planes.shape[0] == 1, planes.shape

    def density(xyz: torch.Tensor) -> torch.Tensor:
        return model.query(planes, xyz.to(planes.device)[None])[0][0]

    def color(xyz: torch.Tensor) -> torch.Tensor:
        return model.query(planes, xyz.to(planes.device)[None])[1][0]

    return density, color


@dataclass
class ExtractStats:
    """Filled in by `extract_mesh` when passed: what was done and how long it took."""

    method: str = ""
    resolution: int = 0
    points: int = 0  # grid points queried for density
    density_s: float = 0.0  # density queries (and, for sparse, the refinement bookkeeping)
    marching_s: float = 0.0  # marching cubes (+ chunk stitching)
    colors_s: float = 0.0  # colour queries at the vertices
    faces: int = 0
    vertices: int = 0
    detail: dict = field(default_factory=dict)  # method-specific counts


def vertex_colors(color_fn: Callable[[torch.Tensor], torch.Tensor], vertices: np.ndarray, chunk: int = 2 ** 18,
                  device: torch.device | str | None = None) -> np.ndarray:
    """color_fn queried at vertices [V, 3] world -> rgb [V, 3] float32 clipped to [0, 1]"""
    return np.clip(query(color_fn, torch.from_numpy(vertices), chunk, device).reshape(-1, 3), 0.0, 1.0)


def extract_mesh(
    density_fn: Callable[[torch.Tensor], torch.Tensor],
    resolution: int,
    radius: float,
    threshold: float,
    color_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    method: Literal["sparse", "dense"] = "sparse",
    chunk: int = 2 ** 18,
    device: torch.device | str | None = None,
    sparse: SparseConfig | None = None,
    stats: ExtractStats | None = None,
) -> Mesh:
    """Iso-surface of an activated density field over the box [-radius, radius]³.

    density_fn: xyz [N, 3] world -> density [N]; resolution: grid points per axis (endpoints
    included); threshold: inside = density > threshold; color_fn: xyz [N, 3] -> rgb [N, 3] in
    [0, 1], queried at the vertices; chunk: points per query; device: where query points are
    put (default: CPU); sparse: tuning of method="sparse".
    Raises EmptySurfaceError (one line, with the density range and a threshold to try) when
    no grid cell crosses the threshold."""
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    st = stats if stats is not None else ExtractStats()
    if method not in ("sparse", "dense"):
        raise ValueError(f"method must be 'sparse' or 'dense', got {method!r}")
    st.method, st.resolution = method, resolution
    t0 = time.perf_counter()
    if method == "sparse":
        res = sparse_surface(density_fn, resolution, radius, threshold, sparse or SparseConfig(), chunk, device)
        verts, faces, sample = res.verts, res.faces, res.sample
        st.points = res.evaluated
        st.density_s = time.perf_counter() - t0 - res.stats.get("marching_s", 0.0)
        st.marching_s = res.stats.get("marching_s", 0.0)
        st.detail = res.stats
        if res.stats.get("rough"):  # pieces the lattice cannot see: the dense grid, which sees all
            st.method = "sparse->dense"
    if st.method != "sparse":
        t0 = time.perf_counter()
        vol = evaluate_grid(density_fn, resolution, radius, chunk, device)
        st.points += vol.size
        st.density_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        if vol.max() < threshold or vol.min() > threshold:
            verts, faces = np.zeros((0, 3)), np.zeros((0, 3), np.int64)
        else:
            verts, faces = marching_cubes(vol, threshold)
            snap_to_edges(verts, lambda idx: vol[idx[:, 0], idx[:, 1], idx[:, 2]], threshold)
        st.marching_s = time.perf_counter() - t0
        step = max(1, resolution // 48)
        sample = np.concatenate([vol[::step, ::step, ::step].ravel(), [vol.min(), vol.max()]])

    if len(faces) == 0:
        raise EmptySurfaceError(
            f"no surface at density threshold {threshold:g} ({method} grid {resolution}³): "
            + suggest_threshold(np.asarray(sample).ravel(), threshold)
        )
    vertices = vertices_to_world(verts, resolution, radius)
    colors = None
    if color_fn is not None:
        t0 = time.perf_counter()
        colors = vertex_colors(color_fn, vertices, chunk, device)
        st.colors_s = time.perf_counter() - t0
    st.faces, st.vertices = len(faces), len(vertices)
    return Mesh(vertices=vertices, faces=faces, colors=colors)
