"""KiCad 3D parts (Debian `kicad-packages3d`, CC-BY-SA-4.0 with a design exception): VRML 2.

The files are KiCad StepUp exports: a flat list of top-level `Shape` nodes, first material-only
shapes (`material DEF <NAME> Material { diffuseColor r g b ... }`), then geometry shapes
(`IndexedFaceSet { coordIndex [i, j, k, -1, ...] coord Coordinate { point [x y z, ...] } }` with
`material USE <NAME>`). No transforms, normals or textures; one diffuse colour per shape. Units
are 0.1 inch, Z up, the board surface at z = 0. A regex reader is enough (trimesh and assimp
cannot read these files); files with `Transform` nodes (3 of 6,227) are skipped.

Near-duplicates (pin headers 1x01 … 1x40, the same package in 20 sizes) are collapsed by
replacing every number in the file name with '#': 6,227 files -> 1,026 patterns, one part each.
"""

from __future__ import annotations

import re
from collections import defaultdict
from functools import partial
from pathlib import Path

import numpy as np

from lrm.data.mesh import AssetMesh, Part
from lrm.data.sources.base import Asset, SkipAsset, make_id

LICENSE = "CC-BY-SA-4.0"
_SHAPE = re.compile(r"\bShape\s*\{")
_DEF = re.compile(r"material\s+DEF\s+(\S+)\s+Material\s*\{[^}]*?diffuseColor\s+([-\d.eE+]+)\s+([-\d.eE+]+)\s+([-\d.eE+]+)")
_INLINE = re.compile(r"material\s+Material\s*\{[^}]*?diffuseColor\s+([-\d.eE+]+)\s+([-\d.eE+]+)\s+([-\d.eE+]+)")
_USE = re.compile(r"material\s+USE\s+(\S+?)\s*\}")
_POINT = re.compile(r"point\s*\[([^\]]*)\]")
_INDEX = re.compile(r"coordIndex\s*\[([^\]]*)\]")
_GREY = (0.7, 0.7, 0.7)


def _numbers(text: str, dtype) -> np.ndarray:
    return np.array(text.replace(",", " ").split(), dtype=dtype)


def triangulate(index: np.ndarray) -> np.ndarray:
    """VRML coordIndex (polygons ended by -1) -> [F, 3] triangles by fan triangulation."""
    if len(index) % 4 == 0 and np.all(index[3::4] == -1):  # the common all-triangle case
        return index.reshape(-1, 4)[:, :3]
    tris, poly = [], []
    for i in list(index) + [-1]:
        if i >= 0:
            poly.append(i)
            continue
        tris += [(poly[0], poly[k], poly[k + 1]) for k in range(1, len(poly) - 1)]
        poly = []
    return np.array(tris, np.int64).reshape(-1, 3)


def read_wrl(text: str) -> AssetMesh:
    """Parse a KiCad StepUp VRML file into one part per shape, coloured by its material."""
    if re.search(r"\bTransform\s*\{", text):
        raise SkipAsset("VRML with Transform nodes is not supported")
    colors: dict[str, tuple[float, float, float]] = {}
    parts = []
    for chunk in _SHAPE.split(text)[1:]:
        color = _GREY
        if m := _DEF.search(chunk):
            colors[m.group(1)] = color = tuple(float(v) for v in m.group(2, 3, 4))
        elif m := _INLINE.search(chunk):
            color = tuple(float(v) for v in m.groups())
        elif m := _USE.search(chunk):
            color = colors.get(m.group(1), _GREY)
        points, index = _POINT.search(chunk), _INDEX.search(chunk)
        if points is None or index is None or "IndexedFaceSet" not in chunk:
            continue
        pos = _numbers(points.group(1), np.float32).reshape(-1, 3)
        faces = triangulate(_numbers(index.group(1), np.int64))
        if len(faces) == 0:
            continue
        if faces.max() >= len(pos) or faces.min() < 0:
            raise ValueError(f"coordIndex out of range ({faces.max()} >= {len(pos)} points)")
        rgba = np.array([*np.clip(color, 0, 1), 1.0], np.float32)
        parts.append(Part(pos, faces, colors=np.tile(rgba, (len(pos), 1))))
    if not parts:
        raise ValueError("no IndexedFaceSet geometry")
    return AssetMesh(parts)


def load(path: str) -> AssetMesh:
    return read_wrl(Path(path).read_text(errors="replace"))


def pattern(name: str) -> str:
    """Near-duplicate key: the file name with every number replaced by '#'."""
    return re.sub(r"\d+([.,]\d+)?", "#", name)


def assets(root: str, dedupe: bool = True) -> list[Asset]:
    """One asset per part (with `dedupe`, the middle file of each name pattern per family)."""
    files = sorted(Path(root).glob("*.3dshapes/*.wrl"))
    groups: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for f in files:
        groups[(f.parent.name, pattern(f.name)) if dedupe else (f.parent.name, f.name)].append(f)
    out = []
    for (family, _), members in sorted(groups.items()):
        f = members[len(members) // 2]
        name = f"{family.removesuffix('.3dshapes')}/{f.stem}"
        out.append(Asset(make_id("kicad", name), "kicad", LICENSE, partial(load, str(f)),
                         {"path": name, "family": family.removesuffix(".3dshapes"),
                          "duplicates": len(members)}))
    return out
