"""The mesh container shared by extraction, texture baking and export.

Frames: `vertices` are in the model's world frame (right-handed, Z up) until `export_mesh`
rotates them into the output frame. Faces are counter-clockwise seen from outside, so face
normals point out of the object and the signed volume is positive.

Texture convention (the one trimesh and OpenGL use): `uv` has its origin at the bottom-left of
the image, v pointing up; `texture` is stored top row first, so texel (row, col) has its centre
at u = (col + 0.5) / W, v = 1 - (row + 0.5) / H.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Mesh:
    vertices: np.ndarray  # [N, 3] float32, model world frame (Z up)
    faces: np.ndarray  # [F, 3] int64, counter-clockwise seen from outside (outward normals)
    colors: np.ndarray | None = None  # [N, 3] float32 in [0, 1], vertex colours
    uv: np.ndarray | None = None  # [N, 2] float32 texture coordinates, origin bottom-left
    texture: np.ndarray | None = None  # [H, W, 3] uint8 base-colour image, top row first

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int64)
        n = len(self.vertices)
        assert self.vertices.ndim == 2 and self.vertices.shape[1] == 3, self.vertices.shape
        assert self.faces.ndim == 2 and self.faces.shape[1] == 3, self.faces.shape
        assert len(self.faces) == 0 or (self.faces.min() >= 0 and self.faces.max() < n), "face index out of range"
        if self.colors is not None:
            self.colors = np.ascontiguousarray(self.colors, dtype=np.float32)
            assert self.colors.shape == (n, 3), self.colors.shape
        if self.uv is not None:
            self.uv = np.ascontiguousarray(self.uv, dtype=np.float32)
            assert self.uv.shape == (n, 2), self.uv.shape
        if self.texture is not None:
            assert self.uv is not None, "a texture needs uv coordinates"
            assert self.texture.ndim == 3 and self.texture.shape[2] == 3 and self.texture.dtype == np.uint8, (
                self.texture.shape, self.texture.dtype)

    @property
    def textured(self) -> bool:
        return self.texture is not None

    def face_normals(self) -> np.ndarray:
        """Unit face normals (right-hand rule on the face's vertex order): [F, 3]"""
        v = self.vertices.astype(np.float64)[self.faces]
        n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)

    def vertex_normals(self) -> np.ndarray:
        """Area-weighted unit vertex normals [N, 3], shared by vertices at the same position (so
        the seams where texture baking duplicates vertices do not show in the shading)."""
        v = self.vertices.astype(np.float64)
        f = self.faces
        fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # [F, 3], length = 2·area
        keys = np.ascontiguousarray(self.vertices).view(np.dtype((np.void, 12))).ravel()
        _, group = np.unique(keys, return_inverse=True)  # one id per distinct position
        idx, w = group.ravel()[f].ravel(), np.repeat(fn, 3, axis=0)
        acc = np.stack([np.bincount(idx, w[:, i], minlength=group.max() + 1) for i in range(3)], axis=-1)
        n = acc[group.ravel()]
        return (n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)).astype(np.float32)

    def area(self) -> float:
        v = self.vertices.astype(np.float64)[self.faces]
        return float(0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1).sum())

    def signed_volume(self) -> float:
        """Volume enclosed by the faces (divergence theorem); positive for outward normals."""
        v = self.vertices.astype(np.float64)[self.faces]
        return float(np.einsum("fi,fi->f", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6.0)


def vertex_colors_u8(colors: np.ndarray) -> np.ndarray:
    """[N, 3] float in [0, 1] -> [N, 3] uint8, clipped and rounded (upstream truncates)."""
    return np.round(np.clip(colors, 0.0, 1.0) * 255.0).astype(np.uint8)


def canonical(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    """An order-independent form for comparing meshes: vertices sorted lexicographically,
    each face rotated to start at its smallest index (winding kept), faces sorted.
    -> vertices [N, 3], faces [F, 3]"""
    v = mesh.vertices
    order = np.lexsort(v.T[::-1])
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    f = rank[mesh.faces]
    first = f.argmin(axis=1)
    rows = np.arange(len(f))
    f = np.stack([f[rows, (first + k) % 3] for k in range(3)], axis=1)
    return v[order], f[np.lexsort(f.T[::-1])]
