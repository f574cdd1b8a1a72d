"""Which points of an integer grid each 2D triangle covers, with barycentric weights: the one
scan conversion behind every numpy rasteriser in lrm (the texel map of texture baking,
lrm.mesh.texel_map; the mesh renderer, lrm.mesh.view_render; the parity voxeliser of fitting,
lrm.fitting.targets).

Grid points sit at integer coordinates (x, y) = (column, row), 0 <= x < width, 0 <= y < height.
A point p is covered by triangle (a, b, c) when its barycentric weights (wa, wb, wc), with
p = wa·a + wb·b + wc·c, are all >= -eps; degenerate triangles (|area| <= 1e-12) cover nothing.
Triangles are expanded to the grid points of their bounding boxes, a batch of about `batch`
candidate points at a time, so memory stays bounded whatever the triangles' sizes. The slow
reference (one triangle, one point at a time) is lrm.mesh.texel_map.rasterize_uv_reference,
and tests/test_mesh_texture.py checks this against it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

EPS = 1e-9  # barycentric tolerance: points on an edge count as inside
MIN_AREA = 1e-12  # twice the area, in grid units², below which a triangle is degenerate


class Fragments(NamedTuple):
    face: np.ndarray  # [K] int64 index of the covering triangle
    x: np.ndarray  # [K] int64 column of the covered grid point
    y: np.ndarray  # [K] int64 row
    bary: np.ndarray  # [K, 3] float64 barycentric weights of the point in the triangle


def barycentric(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """2D points p and triangle corners a, b, c: [N, 2] each -> weights [N, 3] (NaN if degenerate)"""
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        wa = ((b[:, 0] - p[:, 0]) * (c[:, 1] - p[:, 1]) - (b[:, 1] - p[:, 1]) * (c[:, 0] - p[:, 0])) / area
        wb = ((c[:, 0] - p[:, 0]) * (a[:, 1] - p[:, 1]) - (c[:, 1] - p[:, 1]) * (a[:, 0] - p[:, 0])) / area
        return np.stack([wa, wb, 1.0 - wa - wb], axis=-1)


def cover(tri: np.ndarray, width: int, height: int, eps: float = EPS, batch: int = 2 ** 21
          ) -> Iterator[Fragments]:
    """tri: [F, 3, 2] corners in grid units (x, y) -> the covered (triangle, point) pairs, in
    batches of increasing triangle index (within a batch, ordered by triangle)."""
    tri = np.asarray(tri, np.float64).reshape(-1, 3, 2)
    size = np.array([width, height])
    # (numpy's reductions over short axes are slow: corners and weights are combined pairwise)
    low = np.minimum(np.minimum(tri[:, 0], tri[:, 1]), tri[:, 2])  # [F, 2] bounding box
    high = np.maximum(np.maximum(tri[:, 0], tri[:, 1]), tri[:, 2])
    lo = np.clip(np.ceil(low - eps), 0, size - 1).astype(np.int64)  # [F, 2] (x, y)
    hi = np.clip(np.floor(high + eps), 0, size - 1).astype(np.int64)
    ext = np.maximum(hi - lo + 1, 0)
    area = ((tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1])
            - (tri[:, 1, 1] - tri[:, 0, 1]) * (tri[:, 2, 0] - tri[:, 0, 0]))
    off_grid = (high[:, 0] < -eps) | (high[:, 1] < -eps) | (low[:, 0] > width - 1 + eps) | (low[:, 1] > height - 1 + eps)
    ext[off_grid | ~(np.abs(area) > MIN_AREA)] = 0
    count = ext[:, 0] * ext[:, 1]  # candidate points in each bounding box
    ends = np.cumsum(count)
    start = 0
    while start < len(tri):
        stop = int(np.searchsorted(ends, (ends[start - 1] if start else 0) + batch, side="right"))
        stop = max(stop, start + 1)
        ids = np.arange(start, stop)
        n = count[ids]
        t = np.repeat(ids, n)
        k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)  # index inside the box
        x = lo[t, 0] + k % ext[t, 0]
        y = lo[t, 1] + k // ext[t, 0]
        w = barycentric(np.stack([x, y], axis=-1).astype(np.float64), tri[t, 0], tri[t, 1], tri[t, 2])
        inside = (w[:, 0] >= -eps) & (w[:, 1] >= -eps) & (w[:, 2] >= -eps)
        if inside.any():
            yield Fragments(t[inside], x[inside], y[inside], w[inside])
        start = stop
