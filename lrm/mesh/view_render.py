"""Draw a triangle mesh from a camera, GL-free (numpy): mesh turntables, photo colours' depth
images, evaluation's mesh views and contact sheets, tiny ground-truth datasets in tests. Scan
conversion by lrm.mesh.triangle_cover; vertex colours, perspective-correct interpolation, a z-buffer,
optional headlight shading and supersampling. Cameras follow lrm.cameras (OpenGL c2w,
normalised intrinsics); pixel (i, j) has its centre at ((j + 0.5)/W, (i + 0.5)/H), as in
lrm.render.rays.
"""

from __future__ import annotations

import numpy as np
import torch

from lrm import cameras
from lrm.mesh.triangle_cover import cover


def project_to_pixels(points: np.ndarray, c2w: np.ndarray, intrinsics: np.ndarray, size: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """points: [N, 3] world; c2w: [4, 4] OpenGL camera-to-world; intrinsics: [4] normalised
    -> pixel coordinates [N, 2] (column, row; continuous, pixel centres at integers) of a
    size x size image, and depth along the optical axis [N] (> 0 in front of the camera)."""
    xy, depth = cameras.project(torch.from_numpy(np.asarray(points, np.float64)),
                                torch.from_numpy(np.asarray(c2w, np.float64)),
                                torch.from_numpy(np.asarray(intrinsics, np.float64)))
    return xy.numpy() * size - 0.5, depth.numpy()


def _fragments(uv: np.ndarray, depth: np.ndarray, faces: np.ndarray, size: int):
    """Covered pixels of every triangle in front of the camera: (pixel index [K], depth [K],
    face id [K], perspective-correct barycentrics [K, 3])."""
    d = depth[faces]  # [F, 3]
    front = np.nonzero((d[:, 0] > 1e-6) & (d[:, 1] > 1e-6) & (d[:, 2] > 1e-6))[0]
    parts = []
    for frag in cover(uv[faces[front]], size, size):
        face = front[frag.face]
        inv_z = frag.bary / depth[faces[face]]  # perspective-correct weights
        z = 1.0 / (inv_z[:, 0] + inv_z[:, 1] + inv_z[:, 2])
        parts.append((frag.y * size + frag.x, z, face, inv_z * z[:, None]))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros((0, 3))
    return tuple(np.concatenate(p) for p in zip(*parts))


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
    uv, depth = project_to_pixels(vertices, np.asarray(c2w, np.float64), np.asarray(intrinsics, np.float64), s)
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
