"""lrm: Large Reconstruction Model. One image to a 3D mesh.

    import lrm
    model = lrm.load("default")                 # or "openlrm-mix-base", "stabilityai/TripoSR", a folder
    result = model_result = lrm.reconstruct("photo.png", model)
"""

from lrm.errors import LRMError
from lrm.model.lrm import LRM, LRMConfig

__all__ = ["LRM", "LRMConfig", "LRMError"]
__version__ = "0.1.0"
