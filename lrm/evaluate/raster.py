"""A small GL-free triangle rasteriser (numpy) for looking at meshes: contact sheets, and tiny
ground-truth datasets in tests. Vertex colours, perspective-correct interpolation, a z-buffer,
optional headlight shading and supersampling. Cameras follow lrm.cameras (OpenGL c2w,
normalised intrinsics); pixel (i, j) has its centre at ((j + 0.5)/W, (i + 0.5)/H), as in
lrm.render.rays.
"""

from __future__ import annotations

import numpy as np
import torch

from lrm import cameras

MAX_FRAGMENTS = 2_000_000  # candidate pixels processed per batch


def _project(vertices: np.ndarray, c2w: np.ndarray, intrinsics: np.ndarray, size: int):
    """-> pixel coords [N, 2] (column, row; continuous, centres at integers) and depth [N]."""
    xy, depth = cameras.project(torch.from_numpy(np.asarray(vertices, np.float64)),
                                torch.from_numpy(np.asarray(c2w, np.float64)),
                                torch.from_numpy(np.asarray(intrinsics, np.float64)))
    return xy.numpy() * size - 0.5, depth.numpy()


def _fragments(uv: np.ndarray, depth: np.ndarray, faces: np.ndarray, size: int):
    """Covered pixels of every triangle: (pixel index, depth, face id, barycentrics [K, 3])."""
    tri = uv[faces]  # [F, 3, 2]
    lo = np.clip(np.ceil(tri.min(1)), 0, size).astype(np.int64)  # [F, 2] first covered col/row
    hi = np.clip(np.floor(tri.max(1)), -1, size - 1).astype(np.int64)
    ext = (hi - lo + 1).max(1)
    area = ((tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1])
            - (tri[:, 2, 0] - tri[:, 0, 0]) * (tri[:, 1, 1] - tri[:, 0, 1]))
    keep = (ext > 0) & (np.abs(area) > 1e-12) & (depth[faces] > 1e-6).all(1)
    out = []
    for b in 2 ** np.arange(0, int(np.ceil(np.log2(size))) + 1):
        ids = np.nonzero(keep & (ext <= b) & (ext > b // 2))[0]
        for start in range(0, len(ids), max(1, MAX_FRAGMENTS // (b * b))):
            f = ids[start:start + max(1, MAX_FRAGMENTS // (b * b))]
            off = np.stack(np.meshgrid(np.arange(b), np.arange(b), indexing="xy"), -1).reshape(-1, 2)
            px = lo[f, None, :] + off[None]  # [n, b², 2] (col, row)
            t = tri[f]
            p = px + 0.0
            w0 = ((t[:, None, 1, 0] - p[..., 0]) * (t[:, None, 2, 1] - p[..., 1])
                  - (t[:, None, 2, 0] - p[..., 0]) * (t[:, None, 1, 1] - p[..., 1]))
            w1 = ((t[:, None, 2, 0] - p[..., 0]) * (t[:, None, 0, 1] - p[..., 1])
                  - (t[:, None, 0, 0] - p[..., 0]) * (t[:, None, 2, 1] - p[..., 1]))
            bary = np.stack([w0, w1, area[f, None] - w0 - w1], -1) / area[f, None, None]
            ok = (bary >= -1e-9).all(-1) & (px <= hi[f, None, :]).all(-1)
            n_idx, k_idx = np.nonzero(ok)
            bary = bary[n_idx, k_idx]
            face = f[n_idx]
            inv_z = bary / depth[faces[face]]  # perspective-correct weights
            z = 1.0 / inv_z.sum(-1)
            pix = px[n_idx, k_idx, 1] * size + px[n_idx, k_idx, 0]
            out.append((pix, z, face, inv_z * z[:, None]))
    if not out:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros((0, 3))
    return tuple(np.concatenate(parts) for parts in zip(*out))


def rasterize(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None, c2w: np.ndarray,
              intrinsics: np.ndarray, size: int, background: float = 1.0, shading: float = 0.0,
              supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Render one view of a triangle mesh.

    vertices: [N, 3]; faces: [F, 3]; colors: [N, 3] in [0, 1] (None: light grey); c2w: [4, 4];
    intrinsics: [4] normalised; shading: 0 = flat vertex colours, 1 = full headlight Lambert
    -> rgb [H, W, 3] float32 over the grey `background`, alpha [H, W] float32 (H = W = size)
    """
    s = size * supersample
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    colors = np.full((len(vertices), 3), 0.8) if colors is None else np.asarray(colors, np.float64)
    uv, depth = _project(vertices, np.asarray(c2w, np.float64), np.asarray(intrinsics, np.float64), s)
    pix, z, face, bary = _fragments(uv, depth, faces, s)
    order = np.lexsort((z, pix))
    first = order[np.r_[True, pix[order][1:] != pix[order][:-1]]] if len(order) else order
    pix, face, bary = pix[first], face[first], bary[first]
    col = np.einsum("kj,kjc->kc", bary, colors[faces[face]])
    if shading > 0:
        tri = vertices[faces[face]]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-12
        point = np.einsum("kj,kjc->kc", bary, tri)
        view = c2w[:3, 3] - point
        view /= np.linalg.norm(view, axis=-1, keepdims=True) + 1e-12
        lambert = np.abs((normal * view).sum(-1))
        col = col * ((1 - shading) + shading * lambert)[:, None]
    rgb = np.full((s * s, 3), background, np.float64)
    alpha = np.zeros(s * s)
    rgb[pix], alpha[pix] = col, 1.0
    rgb, alpha = rgb.reshape(s, s, 3), alpha.reshape(s, s)
    if supersample > 1:
        k = supersample
        rgb = rgb.reshape(size, k, size, k, 3).mean((1, 3))
        alpha = alpha.reshape(size, k, size, k).mean((1, 3))
    return rgb.astype(np.float32), alpha.astype(np.float32)
