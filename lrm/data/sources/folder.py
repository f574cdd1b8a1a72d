"""A folder (searched recursively) of meshes that trimesh reads, with their textures and materials.

Formats: glb, gltf, obj (+ mtl and images), ply, stl, off, dae (needs `pycollada`). glTF is Y up
by definition and OBJ/DAE almost always are (exporters' default), so `up="y"` is the default;
pass `up="z"` for Z-up collections (STL from CAD, Blender exports with "Z up"). The glTF/OBJ
front (+z) becomes our front (-y). The licence is unknown unless given.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from lrm.data.mesh import Y_UP, Z_UP, AssetMesh, from_trimesh
from lrm.data.sources.base import Asset, make_id

EXTENSIONS = (".glb", ".gltf", ".obj", ".ply", ".stl", ".off", ".dae")
AXES = {"y": Y_UP, "z": Z_UP}


def load(path: str, up: str = "y") -> AssetMesh:
    import trimesh

    try:
        obj = trimesh.load(path, force="scene", process=False)
    except ImportError as exc:  # e.g. .dae without pycollada: a clear reason in the failure log
        raise ValueError(f"trimesh cannot read {Path(path).suffix}: {exc}") from exc
    except Exception as exc:  # trimesh's parsers raise every kind of error on a malformed file
        raise ValueError(f"trimesh cannot read this file ({type(exc).__name__}: {exc})") from exc
    mesh = from_trimesh(obj)
    if not mesh.parts:
        raise ValueError("no triangles in the file")
    return mesh.transformed(AXES[up])


def assets(root: str, up: str = "y", license: str = "unknown", source: str = "folder") -> list[Asset]:
    """One asset per mesh file under `root`; ids come from the relative path (without suffix)."""
    if up not in AXES:
        raise ValueError(f"up must be one of {sorted(AXES)}, not {up!r}")
    root_path = Path(root)
    files = sorted(p for p in root_path.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    out = []
    for f in files:
        rel = f.relative_to(root_path).as_posix()
        name = rel[: -len(f.suffix)] + "_" + f.suffix[1:].lower()  # a.glb -> folder-a_glb
        out.append(Asset(make_id(source, name), source, license, partial(load, str(f), up), {"path": rel}))
    return out
