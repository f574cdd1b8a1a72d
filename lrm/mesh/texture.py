"""Texture baking without OpenGL, a display or a CUDA extension.

    mesh --xatlas--> UV atlas (charts packed into [0, 1]², seams split into new vertices)
         --rasterise in UV space (lrm.mesh.texel_map)--> each covered texel's triangle + weights
         --barycentric interpolation of vertex positions--> the texel's 3D point
         --color_fn--> texel colour --dilate `padding` texels--> PNG (hides chart seams
           under bilinear filtering and mipmaps)

xatlas's charting grows faster than linearly with the face count (about 8 s for 22k faces and
3 min for 88k on a busy 2-core machine), so meshes above `max_faces` are first simplified
(lrm.mesh.simplify). The colours come from the field at the texels, so the texture keeps the
detail that the simplified geometry drops.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from lrm.errors import LRMError
from lrm.mesh.grid import query
from lrm.mesh.texel_map import rasterize_uv
from lrm.mesh.types import Mesh


def _xatlas():
    try:
        import xatlas
    except ImportError as exc:
        raise LRMError("texture baking needs xatlas: pip install 'lrm[texture]'") from exc
    return xatlas


def uv_atlas(vertices: np.ndarray, faces: np.ndarray, resolution: int, padding: int):
    """xatlas parametrisation: vertices [N, 3], faces [F, 3]
    -> (vertex map [N'] into the input vertices, faces [F, 3] over the new vertices, uv [N', 2])"""
    xatlas = _xatlas()
    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(vertices, np.float32), np.ascontiguousarray(faces, np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution, pack.padding, pack.bilinear = resolution, padding, True
    atlas.generate(xatlas.ChartOptions(), pack)
    if atlas.atlas_count != 1:
        raise LRMError(f"xatlas packed the charts into {atlas.atlas_count} atlases; raise the texture resolution")
    vmap, new_faces, uv = atlas[0]
    return vmap.astype(np.int64), new_faces.astype(np.int64), uv.astype(np.float32)


def dilate(image: np.ndarray, filled: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow the filled region by `steps` texels: each empty texel touching filled ones (8
    neighbours) takes their mean. image: [H, W, C] float; filled: [H, W] bool -> both updated"""
    image, filled = image.copy(), filled.copy()
    h, w = filled.shape
    for _ in range(steps):
        pad_i = np.pad(image * filled[..., None], ((1, 1), (1, 1), (0, 0)))
        pad_f = np.pad(filled, 1).astype(np.float32)
        total = np.zeros_like(image)
        count = np.zeros((h, w), np.float32)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                if dy == 1 and dx == 1:
                    continue
                total += pad_i[dy:dy + h, dx:dx + w]
                count += pad_f[dy:dy + h, dx:dx + w]
        grow = ~filled & (count > 0)
        if not grow.any():
            break
        image[grow] = total[grow] / count[grow][:, None]
        filled = filled | grow
    return image, filled


def bake_texture(
    mesh: Mesh,
    color_fn: Callable[[torch.Tensor], torch.Tensor],
    resolution: int = 1024,
    padding: int | None = None,
    max_faces: int | None = 40_000,
    chunk: int = 2 ** 18,
    device: torch.device | str | None = None,
) -> Mesh:
    """A copy of `mesh` with uv [N', 2] and a [resolution, resolution, 3] uint8 texture.

    color_fn: xyz [N, 3] world -> rgb [N, 3] in [0, 1], queried once per covered texel;
    padding: texels between charts and dilated around them (default max(2, resolution/256),
    as TripoSR); max_faces: simplify larger meshes first (None: never)."""
    if padding is None:
        padding = max(2, round(resolution / 256))
    if max_faces is not None and len(mesh.faces) > max_faces:
        from lrm.mesh.simplify import simplify_mesh

        mesh = simplify_mesh(mesh, max_faces)
    vmap, faces, uv = uv_atlas(mesh.vertices, mesh.faces, resolution, padding)
    vertices = mesh.vertices[vmap]
    face, bary = rasterize_uv(uv, faces, resolution)
    covered = face >= 0
    corners = vertices[faces[face[covered]]].astype(np.float64)  # [M, 3, 3]
    points = np.einsum("mk,mkc->mc", bary[covered].astype(np.float64), corners).astype(np.float32)
    rgb = np.clip(query(color_fn, torch.from_numpy(points), chunk, device).reshape(-1, 3), 0.0, 1.0)
    image = np.zeros((resolution, resolution, 3), np.float32)
    image[covered] = rgb
    image, filled = dilate(image, covered, padding)
    image[~filled] = rgb.mean(axis=0) if len(rgb) else 0.0  # neutral fill keeps mipmaps clean
    texture = np.round(image * 255.0).astype(np.uint8)
    colors = None if mesh.colors is None else mesh.colors[vmap]
    return Mesh(vertices=vertices, faces=faces, colors=colors, uv=uv, texture=texture)
