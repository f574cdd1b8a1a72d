"""Quadric-error mesh simplification (fast-simplification): meshes above `--target-faces`, and
meshes before UV-atlas generation, whose cost grows quickly with faces."""

from __future__ import annotations

import numpy as np

from lrm.errors import LRMError
from lrm.mesh.types import Mesh


def simplify_mesh(mesh: Mesh, max_faces: int) -> Mesh:
    """Decimate to about `max_faces` faces (winding kept). Vertex colours are not carried over
    (texture baking re-queries the field); a mesh already small enough is returned as is."""
    if len(mesh.faces) <= max_faces:
        return mesh
    try:
        import fast_simplification
    except ImportError as exc:
        raise LRMError(
            f"simplifying a {len(mesh.faces)}-face mesh needs fast-simplification: pip install fast-simplification "
            "(or --target-faces 0 to keep every face)"
        ) from exc
    v, f = fast_simplification.simplify(
        mesh.vertices.astype(np.float64), mesh.faces.astype(np.int32), target_count=int(max_faces)
    )
    used = np.unique(f)  # drop vertices no face refers to
    remap = np.full(len(v), -1, np.int64)
    remap[used] = np.arange(len(used))
    return Mesh(vertices=v[used].astype(np.float32), faces=remap[f])
