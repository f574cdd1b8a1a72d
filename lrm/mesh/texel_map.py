"""Which triangle covers each texel centre of a texture, and with which barycentric weights
(UV-space rasterisation, no OpenGL): texture baking and photo colours use it to find each
texel's 3D point.

Texel (row, col) of an H x W texture has its centre at u = (col + 0.5) / W,
v = 1 - (row + 0.5) / H (uv origin bottom-left, image row 0 at the top). A texel is covered
when its centre lies inside or on the edge of a triangle; where triangles overlap, the one with
the larger index wins.

`rasterize_uv` is the fast path (lrm.mesh.triangle_cover); `rasterize_uv_reference` is the
obvious double loop, the reference tests/test_mesh_texture.py checks it against.
"""

from __future__ import annotations

import numpy as np

from lrm.mesh.triangle_cover import EPS, barycentric, cover


def _pixel_coords(uv: np.ndarray, size: int) -> np.ndarray:
    """uv: [V, 2] -> [V, 2] (col, row) in texel units, integers at texel centres"""
    return np.stack([uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5], axis=-1).astype(np.float64)


def rasterize_uv(
    uv: np.ndarray, faces: np.ndarray, size: int, batch: int = 2 ** 21
) -> tuple[np.ndarray, np.ndarray]:
    """uv: [V, 2] in [0, 1]; faces: [F, 3]; size: texture side
    -> face index per texel [size, size] int64 (-1: empty), barycentrics [size, size, 3] float32"""
    face = np.full(size * size, -1, np.int64)
    bary = np.zeros((size * size, 3), np.float32)
    for frag in cover(_pixel_coords(uv, size)[faces], size, size, batch=batch):
        texel = frag.y * size + frag.x
        last = len(texel) - 1 - np.unique(texel[::-1], return_index=True)[1]  # larger face index wins
        face[texel[last]] = frag.face[last]  # later batches hold larger indices: they overwrite
        bary[texel[last]] = frag.bary[last]
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
                w = barycentric(np.array([[col, row]], np.float64), a[None], b[None], c[None])[0]
                if (w >= -EPS).all():
                    face[row, col] = f
                    bary[row, col] = w
    return face, bary
