"""Marching cubes on a value volume (PyMCubes), made reproducible across sub-volumes.

- `marching_cubes` runs PyMCubes on a [X, Y, Z] volume indexed like the grid; vertices come
  back in index space with axis order (x, y, z), and with "inside = value > threshold" the
  triangles are counter-clockwise seen from outside (positive signed volume; tests check both).
- `snap_to_edges` recomputes every vertex from the two grid values of the edge it lies on, in
  one fixed formula. Marching the whole volume or a sub-volume then gives bit-identical
  vertices (the vertex no longer depends on the offset at which PyMCubes saw the edge).
- `merge_parts` joins per-chunk meshes, welding the vertices shared on chunk faces.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def marching_cubes(volume: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """volume: [X, Y, Z] float32, inside = value > threshold
    -> vertices [V, 3] float64 in index space (x, y, z), faces [F, 3] int64 (outward)"""
    import mcubes

    v, f = mcubes.marching_cubes(np.ascontiguousarray(volume), float(threshold))
    return np.asarray(v, dtype=np.float64).reshape(-1, 3), np.asarray(f, dtype=np.int64).reshape(-1, 3)


def snap_to_edges(
    verts: np.ndarray, values_at: Callable[[np.ndarray], np.ndarray], threshold: float
) -> np.ndarray:
    """Place each vertex at start + (τ - f0) / (f1 - f0) along its grid edge.

    verts: [V, 3] float64 index space (modified in place and returned); values_at(idx [M, 3]
    int64) -> [M] grid values. Vertices on a grid point (all coordinates integral) are kept."""
    base = np.floor(verts)
    frac = verts != base  # [V, 3]
    rows = np.nonzero(frac.sum(axis=1) == 1)[0]
    if rows.size == 0:
        return verts
    axis = frac[rows].argmax(axis=1)
    start = base[rows].astype(np.int64)
    end = start.copy()
    end[np.arange(rows.size), axis] += 1
    f0 = values_at(start).astype(np.float64)
    f1 = values_at(end).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (threshold - f0) / (f1 - f0)
    ok = np.isfinite(t)
    t = np.clip(t, 0.0, 1.0)
    verts[rows[ok], axis[ok]] = start[ok, axis[ok]] + t[ok]
    return verts


def merge_parts(
    parts: list[tuple[np.ndarray, np.ndarray]],
    spacing: int,
    snap: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-chunk meshes, snap them (see `snap_to_edges`), and weld the identical
    vertices that neighbouring chunks both produced on their common face.

    parts: [(vertices [V_i, 3] float64 global index space, faces [F_i, 3] int64 local)];
    spacing: chunk side in cells (only vertices with a coordinate on a multiple of it can be
    shared); snap: verts [V, 3] -> verts -> vertices [V, 3], faces [F, 3]"""
    if not parts:
        return np.zeros((0, 3), np.float64), np.zeros((0, 3), np.int64)
    sizes = np.array([len(v) for v, _ in parts])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    verts = np.concatenate([v for v, _ in parts])
    faces = np.concatenate([f + o for (_, f), o in zip(parts, offsets)])
    if snap is not None:
        verts = snap(verts)
    on_face = ((verts == np.round(verts)) & (np.round(verts) % spacing == 0)).any(axis=1)
    cand = np.nonzero(on_face)[0]
    remap = np.arange(len(verts))
    if cand.size:
        keys = np.ascontiguousarray(verts[cand]).view(np.dtype((np.void, 24))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        remap[cand] = cand[first][inverse.ravel()]
    keep = remap == np.arange(len(verts))
    new_index = np.cumsum(keep) - 1
    return verts[keep], new_index[remap[faces]]
