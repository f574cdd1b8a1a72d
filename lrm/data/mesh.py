"""A render-ready training asset: a list of parts, each with one RGBA texture (and alpha
cutoff) or with per-vertex colours. Not lrm.mesh.Mesh, the single-part vertex-coloured or
textured mesh lrm reconstructs and exports: assets keep their parts' own materials for the
dataset renderer (lrm.data.gl_render) and point sampler (lrm.data.samples).

Every source reader (trimesh formats, 0 A.D. PMD, KiCad VRML, Red Eclipse OBJ) produces an `AssetMesh`
in our axes: Z up, the asset's "front" facing -y (towards OpenLRM's source camera).
`normalize` centres its bounding box at the origin and scales it into the box [-1, 1]³:
- fit "sphere" (default): the farthest vertex from the centre at distance 1, so the object lies
  in the unit ball and no camera farther than 1.81 with focal 0.75 (fov 67.4°) ever clips it;
- fit "box" (OpenLRM's Blender script): the longest bounding-box side is 2; boxy objects then
  overflow the frame of near views (a cube seen at distance 1.9 is cut on all four sides).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace

import numpy as np

# Rotations from a source's axes to ours (Z up, front towards -y): row-vector convention p @ R.T.
Y_UP = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], np.float32)  # glTF/OBJ: y up, front +z
Z_UP = np.eye(3, dtype=np.float32)  # already Z up, front -y


@dataclass
class Part:
    positions: np.ndarray  # [N, 3] float32
    faces: np.ndarray  # [F, 3] int64 vertex indices
    uv: np.ndarray | None = None  # [N, 2] float32, origin at the image's bottom-left (OpenGL)
    colors: np.ndarray | None = None  # [N, 4] float32 in [0, 1], multiplies the texture
    texture: np.ndarray | None = None  # [H, W, 4] uint8 RGBA, row 0 = top of the image
    alpha_cutoff: float | None = None  # texels with alpha below it are holes; None: opaque


@dataclass
class AssetMesh:
    parts: list[Part] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # fields a reader learns while loading (e.g. licence)

    @property
    def faces(self) -> int:
        return int(sum(len(p.faces) for p in self.parts))

    def bounds(self) -> np.ndarray:
        """[2, 3] min and max corner over the vertices that faces use."""
        pts = np.concatenate([p.positions[np.unique(p.faces)] for p in self.parts if len(p.faces)])
        return np.stack([pts.min(0), pts.max(0)])

    def transformed(self, rot: np.ndarray, offset: np.ndarray | None = None, scale: float = 1.0) -> AssetMesh:
        """p -> scale * (p @ rot.T) + offset for every vertex. rot: [3, 3]; offset: [3]"""
        off = np.zeros(3, np.float32) if offset is None else np.asarray(offset, np.float32)
        rot = np.asarray(rot, np.float32)
        return AssetMesh([replace(p, positions=(scale * (p.positions @ rot.T) + off).astype(np.float32))
                     for p in self.parts], dict(self.meta))


FITS = ("sphere", "box")


def normalize(mesh: AssetMesh, fit: str = "sphere") -> tuple[AssetMesh, np.ndarray, float]:
    """Centre the bounding box at 0 and scale by `fit` (see the module docstring).

    Returns the new mesh, the old centre and the scale applied: new = scale · (old - centre).
    """
    mesh = AssetMesh([p for p in mesh.parts if len(p.faces)], mesh.meta)
    if not mesh.parts:
        raise ValueError("mesh has no faces")
    lo, hi = mesh.bounds()
    centre = (lo + hi) / 2
    if fit == "box":
        size = float((hi - lo).max()) / 2
    elif fit == "sphere":
        size = max(float(np.linalg.norm(p.positions[np.unique(p.faces)] - centre, axis=1).max())
                   for p in mesh.parts)
    else:
        raise ValueError(f"unknown fit {fit!r}; use one of {FITS}")
    if not np.isfinite(size) or size <= 0:
        raise ValueError(f"degenerate bounding box (size {size})")
    scale = 1.0 / size
    return mesh.transformed(np.eye(3), -centre * scale, scale), centre, scale


def quaternion_pose(t, w: float, x: float, y: float, z: float) -> np.ndarray:
    """Rigid transform from a translation [3] and a quaternion (normalised here) -> [4, 4]."""
    n = max(float(np.linalg.norm([w, x, y, z])), 1e-12)
    w, x, y, z = w / n, x / n, y / n, z / n
    m = np.eye(4)
    m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                 [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                 [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    m[:3, 3] = t
    return m


def to_ply(mesh: AssetMesh) -> bytes:
    """Binary PLY of the geometry (all parts merged; no colours)."""
    import trimesh

    verts, faces, base = [], [], 0
    for p in mesh.parts:
        verts.append(p.positions)
        faces.append(p.faces + base)
        base += len(p.positions)
    tm = trimesh.Trimesh(np.concatenate(verts), np.concatenate(faces), process=True)
    buf = io.BytesIO()
    tm.export(buf, file_type="ply")
    return buf.getvalue()


def rgba_image(img) -> np.ndarray:
    """A PIL image (any mode) -> [H, W, 4] uint8."""
    return np.asarray(img.convert("RGBA"), dtype=np.uint8)


def from_trimesh(obj) -> AssetMesh:
    """A trimesh Trimesh or Scene -> AssetMesh, with textures, material colours or vertex/face colours."""
    import trimesh

    geoms = obj.dump(concatenate=False) if isinstance(obj, trimesh.Scene) else [obj]
    parts = [_part_from_trimesh(g) for g in geoms if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    return AssetMesh([p for p in parts if p is not None])


def _part_from_trimesh(tm) -> Part:
    pos = np.asarray(tm.vertices, np.float32)
    faces = np.asarray(tm.faces, np.int64)
    visual = tm.visual
    if visual.kind == "texture":
        mat = visual.material
        image, factor, cutoff = _material_image(mat)
        uv = getattr(visual, "uv", None)
        if image is not None and uv is not None and len(uv) == len(pos):
            return Part(pos, faces, uv=np.asarray(uv, np.float32),
                        colors=np.tile(factor, (len(pos), 1)), texture=rgba_image(image), alpha_cutoff=cutoff)
        return Part(pos, faces, colors=np.tile(factor, (len(pos), 1)))
    if visual.kind == "face":  # unweld: one vertex per face corner, coloured by its face
        colors = np.repeat(np.asarray(visual.face_colors, np.float32) / 255.0, 3, axis=0)
        return Part(pos[faces].reshape(-1, 3), np.arange(3 * len(faces)).reshape(-1, 3), colors=colors)
    if visual.kind == "vertex":
        return Part(pos, faces, colors=np.asarray(visual.vertex_colors, np.float32) / 255.0)
    return Part(pos, faces, colors=np.full((len(pos), 4), 0.8, np.float32))  # no colour: light grey


def _material_image(mat) -> tuple[object | None, np.ndarray, float | None]:
    """(PIL image or None, RGBA factor [4] float32, alpha cutoff) of a trimesh material."""
    from trimesh.visual.material import PBRMaterial

    if isinstance(mat, PBRMaterial):
        factor = np.asarray(mat.baseColorFactor if mat.baseColorFactor is not None else [255] * 4, np.float32)
        factor = factor / 255.0 if factor.max() > 1.0 else factor
        mode = (mat.alphaMode or "OPAQUE").upper()
        cutoff = None if mode == "OPAQUE" else float(mat.alphaCutoff or 0.5)
        return mat.baseColorTexture, factor, cutoff
    image = getattr(mat, "image", None)
    diffuse = getattr(mat, "diffuse", None)
    factor = np.asarray(diffuse if diffuse is not None else [255] * 4, np.float32) / 255.0
    if image is not None:  # OBJ: map_Kd replaces Kd in most viewers; keep only its alpha
        factor = np.array([1.0, 1.0, 1.0, factor[3]], np.float32)
    return image, factor, 0.5 if image is not None and image.mode in ("RGBA", "LA", "P") else None
