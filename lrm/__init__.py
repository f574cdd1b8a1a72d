"""lrm: Large Reconstruction Model. One image to a 3D mesh.

    import lrm
    rec = lrm.Reconstructor("default")                 # or "openlrm-mix-base", "triposr", a folder
    rec.reconstruct("photo.png").save_mesh("photo.glb")
    model = lrm.load_model("triposr")                  # the bare nn.Module (lrm.hub.load_model)
"""

from lrm.errors import LRMError
from lrm.hub import load_model
from lrm.model.lrm import LRM, LRMConfig
from lrm.pipeline import Reconstruction, Reconstructor

__all__ = ["LRM", "LRMConfig", "LRMError", "Reconstruction", "Reconstructor", "load_model"]
__version__ = "0.1.0"
