"""Mesh extraction, export and texture baking.

    extract_mesh(density_fn, resolution, radius, threshold, color_fn) -> Mesh   (lrm.mesh.extract)
    export_mesh(mesh, "out.glb", frame=world_to_view_frame(front_azimuth))     (lrm.mesh.export)
    bake_texture(mesh, color_fn, resolution=1024) -> textured Mesh             (lrm.mesh.texture)

See docs/mesh.md for the output axes, formats, and the sparse extraction guarantee.
"""

from lrm.mesh.export import export_mesh
from lrm.mesh.extract import ExtractStats, extract_mesh, model_field
from lrm.mesh.sparse import SparseConfig
from lrm.mesh.texture import bake_texture
from lrm.mesh.types import Mesh

__all__ = ["Mesh", "ExtractStats", "SparseConfig", "bake_texture", "export_mesh", "extract_mesh", "model_field"]
