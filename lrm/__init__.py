"""lrm: Large Reconstruction Model. One image to a 3D mesh.

    import lrm
    rec = lrm.Reconstructor("default")                 # or "openlrm-mix-base", "triposr", a folder
    rec.reconstruct("photo.png").save_mesh("photo.glb")
"""

from lrm.errors import LRMError
from lrm.model.lrm import LRM, LRMConfig
from lrm.pipeline import Reconstruction, Reconstructor

__all__ = ["LRM", "LRMConfig", "LRMError", "Reconstruction", "Reconstructor"]
__version__ = "0.1.0"
