"""Vertex colours from the input photo where the input camera sees the mesh.

A small model's colour field is blurred and dull; the photo is exact where it sees. Each vertex
the input camera sees (in front of the depth buffer of the mesh itself, seen from that camera)
takes the photo's colour at its projection, blended with the field's colour by how squarely the
camera sees it: weight 0 at grazing angles (view-cosine <= `grazing`), 1 from `square` up, linear
between, so the silhouette, where the photo mixes object and background, keeps the field's
colour. Hidden vertices keep the field's colour.
"""

from __future__ import annotations

import numpy as np

from lrm.mesh.types import Mesh


def photo_weights(mesh: Mesh, c2w: np.ndarray, intrinsics: np.ndarray, size: int, grazing: float = 0.15,
                  square: float = 0.5, tolerance: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """mesh: vertices in the camera's world frame; c2w: [4, 4] OpenGL camera-to-world;
    intrinsics: [4] normalised; size: side of the photo in pixels
    -> weight [N] in [0, 1] (0 = hidden or grazing), pixel coordinates [N, 2] (column, row;
    pixel centres at integers). `tolerance`: world distance by which a vertex may lie behind the
    depth buffer and still count as seen (the buffer interpolates across faces)."""
    from lrm.evaluate.raster import _project, rasterize

    v = mesh.vertices.astype(np.float64)
    if len(mesh.faces) == 0:
        return np.zeros(len(v)), np.zeros((len(v), 2))
    eye = np.asarray(c2w, np.float64)[:3, 3]
    dist = np.linalg.norm(v - eye, axis=1)
    zbuf, covered = rasterize(v, mesh.faces, np.repeat(dist[:, None], 3, axis=1), c2w, intrinsics, size,
                              background=np.inf)
    uv, depth = _project(v, c2w, intrinsics, size)
    # the nearest surface over the 2 x 2 pixels around the projection: a vertex on the mesh's
    # outline projects between covered and uncovered pixel centres
    lo = np.floor(uv).astype(np.int64)
    near = np.full(len(v), np.inf)
    for dc in (0, 1):
        for dr in (0, 1):
            col, row = lo[:, 0] + dc, lo[:, 1] + dr
            ok = (col >= 0) & (col < size) & (row >= 0) & (row < size)
            z = np.where(covered[row.clip(0, size - 1), col.clip(0, size - 1)] > 0,
                         zbuf[row.clip(0, size - 1), col.clip(0, size - 1), 0], np.inf)
            near = np.minimum(near, np.where(ok, z, np.inf))
    cos = np.einsum("nc,nc->n", mesh.vertex_normals().astype(np.float64), (eye - v) / dist[:, None])
    # a neighbouring pixel centre (up to √2 px away) on the vertex's own surface is nearer by up
    # to √2 · (pixel footprint) · tan(view angle)
    footprint = dist / (float(intrinsics[0]) * size)
    slope = np.sqrt(np.clip(1 - cos**2, 0, 1)) / np.maximum(cos, grazing)
    seen = (depth > 0) & (dist <= near + tolerance + 1.5 * footprint * slope)
    weight = np.clip((cos - grazing) / (square - grazing), 0.0, 1.0) * seen
    return weight, uv


def photo_colors(mesh: Mesh, photo: np.ndarray, c2w: np.ndarray, intrinsics: np.ndarray) -> Mesh:
    """photo: [S, S, 3] float in [0, 1], the image the model saw, taken by camera (c2w [4, 4],
    intrinsics [4]) -> the mesh with its vertex colours blended towards the photo's (bilinear)."""
    if mesh.colors is None:
        return mesh
    size = photo.shape[0]
    weight, uv = photo_weights(mesh, c2w, intrinsics, size)
    x, y = np.clip(uv[:, 0], 0, size - 1), np.clip(uv[:, 1], 0, size - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, size - 1), np.minimum(y0 + 1, size - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    sample = ((photo[y0, x0] * (1 - fx) + photo[y0, x1] * fx) * (1 - fy)
              + (photo[y1, x0] * (1 - fx) + photo[y1, x1] * fx) * fy)
    colors = mesh.colors * (1 - weight[:, None]) + sample * weight[:, None]
    return Mesh(mesh.vertices, mesh.faces, colors.astype(np.float32), mesh.uv, mesh.texture)
