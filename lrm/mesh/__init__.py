"""Mesh extraction, export and texture baking.

    extract_mesh(density_fn, resolution, radius, threshold, color_fn) -> Mesh   (lrm.mesh.extract)
    export_mesh(mesh, "out.glb", frame=world_to_view_frame(front_azimuth))     (lrm.mesh.export)
    bake_texture(mesh, color_fn, resolution=1024) -> textured Mesh             (lrm.mesh.texture)
    photo_colors(mesh, photo, c2w, intrinsics) -> Mesh coloured from the photo (lrm.mesh.photo_colors)
    rasterize(vertices, faces, colors, c2w, intrinsics, size) -> rgb, alpha     (lrm.mesh.view_render)

Numpy scan conversion (lrm.mesh.triangle_cover) serves the texel map of texture baking
(lrm.mesh.texel_map), the mesh renderer (lrm.mesh.view_render) and fitting's voxeliser.

See docs/mesh.md for the output axes, formats, and the sparse extraction guarantee.
"""

from lrm.mesh.export import export_mesh
from lrm.mesh.extract import ExtractStats, extract_mesh, model_field
from lrm.mesh.sparse import SparseConfig
from lrm.mesh.texture import bake_texture
from lrm.mesh.types import Mesh

__all__ = ["Mesh", "ExtractStats", "SparseConfig", "bake_texture", "export_mesh", "extract_mesh", "model_field"]
