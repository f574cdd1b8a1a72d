"""Mesh colours from the input photo where the input camera sees the mesh.

A small model's colour field is blurred and dull; the photo is exact where it sees. Each point
of the surface that the input camera sees (not behind the depth buffer of the mesh itself, seen
from that camera) takes the photo's colour at its projection, blended with the field's colour by
how squarely the camera sees it: weight 0 at grazing angles (view-cosine <= `grazing`), 1 from
`square` up, linear between, so the silhouette, where the photo mixes object and background,
keeps the field's colour. Hidden points keep the field's colour. The points are the vertices
(vertex colours) and, for a textured mesh, the texels' surface points (the texture), or any
oriented points on the mesh's surface, such as Gaussian splats (`photo_point_colors`).
"""

from __future__ import annotations

import numpy as np

from lrm.mesh.types import Mesh

GRAZING, SQUARE = 0.15, 0.5  # view-cosine ramp of the photo's weight
TOLERANCE = 0.02  # world distance a point may lie behind the depth buffer and still count as seen


def depth_image(mesh: Mesh, c2w: np.ndarray, intrinsics: np.ndarray, size: int) -> np.ndarray:
    """The mesh's distance from the camera per pixel: [size, size], inf where it covers nothing."""
    from lrm.mesh.view_render import rasterize

    v = mesh.vertices.astype(np.float64)
    vdist = np.linalg.norm(v - np.asarray(c2w, np.float64)[:3, 3], axis=1)
    zbuf, covered = rasterize(v, mesh.faces, np.repeat(vdist[:, None], 3, axis=1), c2w, intrinsics, size,
                              background=np.inf)
    return np.where(covered > 0, zbuf[..., 0], np.inf)


def photo_weights(points: np.ndarray, normals: np.ndarray, depth: np.ndarray, c2w: np.ndarray,
                  intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """points, normals: [M, 3] surface points (world frame of the camera) and their unit outward
    normals; depth: [S, S] the surface's `depth_image` from this camera; c2w: [4, 4] OpenGL
    camera-to-world; intrinsics: [4] normalised -> weight [M] in [0, 1] (0 = hidden or
    grazing), pixel coordinates [M, 2] (column, row; pixel centres at integers)."""
    from lrm.mesh.view_render import project_to_pixels

    p = np.asarray(points, np.float64)
    size = depth.shape[0]
    eye = np.asarray(c2w, np.float64)[:3, 3]
    dist = np.linalg.norm(p - eye, axis=1)
    uv, ahead = project_to_pixels(p, c2w, intrinsics, size)
    # the nearest surface over the 2 x 2 pixels around the projection (a point on the mesh's
    # outline projects between covered and uncovered pixel centres)
    lo = np.floor(uv).astype(np.int64)
    near = np.full(len(p), np.inf)
    for dc in (0, 1):
        for dr in (0, 1):
            col, row = lo[:, 0] + dc, lo[:, 1] + dr
            ok = (col >= 0) & (col < size) & (row >= 0) & (row < size)
            z = depth[row.clip(0, size - 1), col.clip(0, size - 1)]
            near = np.minimum(near, np.where(ok, z, np.inf))
    cos = np.einsum("nc,nc->n", np.asarray(normals, np.float64), (eye - p) / dist[:, None])
    # a neighbouring pixel centre (up to √2 px away) on the point's own surface is nearer by up
    # to √2 · (pixel footprint) · tan(view angle)
    footprint = dist / (float(intrinsics[0]) * size)
    slope = np.sqrt(np.clip(1 - cos**2, 0, 1)) / np.maximum(cos, GRAZING)
    seen = (ahead > 0) & (dist <= near + TOLERANCE + 1.5 * footprint * slope)
    weight = np.clip((cos - GRAZING) / (SQUARE - GRAZING), 0.0, 1.0) * seen
    return weight, uv


def _sample(photo: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """photo: [S, S, 3]; uv: [M, 2] pixel coordinates (column, row) -> bilinear colours [M, 3]"""
    size = photo.shape[0]
    x, y = np.clip(uv[:, 0], 0, size - 1), np.clip(uv[:, 1], 0, size - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, size - 1), np.minimum(y0 + 1, size - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return ((photo[y0, x0] * (1 - fx) + photo[y0, x1] * fx) * (1 - fy)
            + (photo[y1, x0] * (1 - fx) + photo[y1, x1] * fx) * fy)


def _blend(field: np.ndarray, photo: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return field * (1 - weight[:, None]) + photo * weight[:, None]


def photo_colors(mesh: Mesh, photo: np.ndarray, c2w: np.ndarray, intrinsics: np.ndarray) -> Mesh:
    """photo: [S, S, 3] float in [0, 1], the image the model saw, taken by camera (c2w [4, 4],
    intrinsics [4]) -> a copy of the mesh with its vertex colours, and its texture if it has one,
    blended towards the photo's. A mesh with neither is returned as it is."""
    if (mesh.colors is None and mesh.texture is None) or len(mesh.faces) == 0:
        return mesh
    depth = depth_image(mesh, c2w, intrinsics, photo.shape[0])  # once, for vertices and texels
    colors, texture = mesh.colors, mesh.texture
    if colors is not None:
        weight, uv = photo_weights(mesh.vertices, mesh.vertex_normals(), depth, c2w, intrinsics)
        colors = _blend(colors, _sample(photo, uv), weight).astype(np.float32)
    if texture is not None:
        from lrm.mesh.texel_map import rasterize_uv

        face, bary = rasterize_uv(mesh.uv, mesh.faces, texture.shape[0])
        covered = face >= 0
        corners = mesh.vertices.astype(np.float64)[mesh.faces[face[covered]]]  # [M, 3, 3]
        points = np.einsum("mk,mkc->mc", bary[covered].astype(np.float64), corners)
        weight, uv = photo_weights(points, mesh.face_normals()[face[covered]], depth, c2w, intrinsics)
        texture = texture.copy()
        texels = texture[covered].astype(np.float64) / 255.0
        texture[covered] = np.round(_blend(texels, _sample(photo, uv), weight).clip(0, 1) * 255).astype(np.uint8)
    return Mesh(mesh.vertices, mesh.faces, colors, mesh.uv, texture)


def photo_point_colors(points: np.ndarray, normals: np.ndarray, colors: np.ndarray, surface: Mesh,
                       photo: np.ndarray, c2w: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """points, normals, colors: [M, 3] oriented points on `surface` (the mesh that hides them
    from the camera) with their field colours; photo, c2w, intrinsics as in `photo_colors`
    -> [M, 3] colours blended towards the photo's where the camera sees the points squarely."""
    if len(points) == 0 or len(surface.faces) == 0:
        return colors
    depth = depth_image(surface, c2w, intrinsics, photo.shape[0])
    weight, uv = photo_weights(points, normals, depth, c2w, intrinsics)
    return _blend(np.asarray(colors, np.float64), _sample(photo, uv), weight).astype(np.float32)
