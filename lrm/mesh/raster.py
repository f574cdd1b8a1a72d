"""Rasterise triangles in UV space (no OpenGL): which triangle covers each texel centre, and
with which barycentric weights. Used by texture baking to find each texel's 3D point.

Texel (row, col) of an H x W texture has its centre at u = (col + 0.5) / W,
v = 1 - (row + 0.5) / H (uv origin bottom-left, image row 0 at the top). A texel is covered
when its centre lies inside or on the edge of a triangle; where triangles overlap, the one with
the larger index wins.

`rasterize_uv` is vectorised (triangles expanded to the texels of their bounding boxes, in
batches); `rasterize_uv_reference` is the obvious double loop, kept for tests.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-9  # barycentric tolerance: centres on an edge count as inside


def _pixel_coords(uv: np.ndarray, size: int) -> np.ndarray:
    """uv: [V, 2] -> [V, 2] (col, row) in texel units, integers at texel centres"""
    return np.stack([uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5], axis=-1).astype(np.float64)


def _barycentric(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """2D points p and triangle corners a, b, c: [N, 2] each -> weights [N, 3] (NaN if degenerate)"""
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        wa = ((b[:, 0] - p[:, 0]) * (c[:, 1] - p[:, 1]) - (b[:, 1] - p[:, 1]) * (c[:, 0] - p[:, 0])) / area
        wb = ((c[:, 0] - p[:, 0]) * (a[:, 1] - p[:, 1]) - (c[:, 1] - p[:, 1]) * (a[:, 0] - p[:, 0])) / area
        return np.stack([wa, wb, 1.0 - wa - wb], axis=-1)


def rasterize_uv(
    uv: np.ndarray, faces: np.ndarray, size: int, batch: int = 2 ** 21
) -> tuple[np.ndarray, np.ndarray]:
    """uv: [V, 2] in [0, 1]; faces: [F, 3]; size: texture side
    -> face index per texel [size, size] int64 (-1: empty), barycentrics [size, size, 3] float32"""
    px = _pixel_coords(uv, size)
    tri = px[faces]  # [F, 3, 2]
    lo = np.clip(np.ceil(tri.min(axis=1) - EPS), 0, size - 1).astype(np.int64)  # [F, 2] (col, row)
    hi = np.clip(np.floor(tri.max(axis=1) + EPS), 0, size - 1).astype(np.int64)
    ext = np.maximum(hi - lo + 1, 0)
    ext[(tri.max(axis=1) < 0).any(axis=1) | (tri.min(axis=1) > size - 1).any(axis=1)] = 0
    count = ext[:, 0] * ext[:, 1]  # texels in each bounding box
    face = np.full(size * size, -1, np.int64)
    bary = np.zeros((size * size, 3), np.float32)
    ends = np.cumsum(count)
    start_face = 0
    while start_face < len(faces):  # batches of triangles with about `batch` candidate texels
        stop = int(np.searchsorted(ends, (ends[start_face - 1] if start_face else 0) + batch, side="right"))
        stop = max(stop, start_face + 1)
        ids = np.arange(start_face, stop)
        n = count[ids]
        t = np.repeat(ids, n)
        k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)  # index inside the box
        col = lo[t, 0] + k % ext[t, 0]
        row = lo[t, 1] + k // ext[t, 0]
        w = _barycentric(np.stack([col, row], axis=-1).astype(np.float64), tri[t, 0], tri[t, 1], tri[t, 2])
        inside = (w >= -EPS).all(axis=1)
        texel = row[inside] * size + col[inside]
        last = len(texel) - 1 - np.unique(texel[::-1], return_index=True)[1]  # larger face index wins
        face[texel[last]] = t[inside][last]
        bary[texel[last]] = w[inside][last]
        start_face = stop
    return face.reshape(size, size), bary.reshape(size, size, 3)


def rasterize_uv_reference(uv: np.ndarray, faces: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The same, one triangle and one texel at a time (slow; for tests)."""
    px = _pixel_coords(uv, size)
    face = np.full((size, size), -1, np.int64)
    bary = np.zeros((size, size, 3), np.float32)
    for f, (ia, ib, ic) in enumerate(faces):
        a, b, c = px[ia], px[ib], px[ic]
        for row in range(size):
            for col in range(size):
                w = _barycentric(np.array([[col, row]], np.float64), a[None], b[None], c[None])[0]
                if (w >= -EPS).all():
                    face[row, col] = f
                    bary[row, col] = w
    return face, bary
