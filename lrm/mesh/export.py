"""Write a Mesh as GLB, OBJ (+ MTL + PNG when textured) or PLY, atomically.

Output frame: `frame` is a [3, 3] rotation whose rows are the output axes expressed in the
model's world frame (Z up), so v_out = frame @ v. Callers pass
`lrm.cameras.world_to_view_frame(cfg.inference.front_azimuth)`: the output is then Y up with
the input photo's camera on +Z, so a glTF viewer shows the object the way the photo does.
With frame=None the vertices stay in the model frame (Z up), as upstream OpenLRM/TripoSR CLIs
write them.

GLB and OBJ carry smooth vertex normals (area-weighted, equal across texture seams).
Colours: vertex colours go out as uint8 (clipped, rounded); in GLB they are linearised first
(glTF's COLOR_0 is linear) and the mesh gets a matte material (metallic 0, roughness 1). A textured mesh is written with a
PBR material whose baseColorTexture is the PNG (GLB: embedded; OBJ: `map_Kd <stem>.png` in
`<stem>.mtl`); its vertex colours are left out there, since glTF multiplies the texture by them.
PLY has no textures: it gets vertex colours (sampled from the texture if needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrm.errors import LRMError
from lrm.fileio import write_atomic
from lrm.mesh.types import Mesh, vertex_colors_u8

FORMATS = (".glb", ".obj", ".ply")


def export_mesh(mesh: Mesh, path: str | Path, frame=None) -> Path:
    """Write `mesh` to `path` (format from the suffix: .glb, .obj, .ply) -> the path written.

    frame: [3, 3] rotation (numpy or torch) from the model's Z-up world to the output frame."""
    return export_mesh_files(mesh, path, frame)[0]


def export_mesh_files(mesh: Mesh, path: str | Path, frame=None) -> list[Path]:
    """export_mesh -> every file written: `path` first, then the files it refers to (a textured
    OBJ's .mtl and texture image)."""
    path = Path(path)
    written = [path]
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise LRMError(f"cannot write mesh {str(path)!r}: unknown format, use one of {', '.join(FORMATS)}")
    if len(mesh.faces) == 0:
        raise LRMError(f"refusing to write an empty mesh to {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    vertices = apply_frame(mesh.vertices, frame)
    if suffix == ".ply":
        colors = mesh.colors if mesh.colors is not None or not mesh.textured else sample_texture(mesh, mesh.uv)
        tm = _trimesh(vertices, mesh.faces, colors)
        write_atomic(path, tm.export(file_type="ply"))
    elif suffix == ".glb":
        # glTF defines COLOR_0 as linear (our colours are sRGB, as rendered) and a mesh without a
        # material as metallic 1: viewers showed dark brown as pale lilac. Linear colours + a matte
        # material (metallic 0, roughness 1) fix both.
        linear = None if mesh.colors is None else srgb_to_linear(np.clip(mesh.colors, 0.0, 1.0))
        tm = _trimesh(vertices, mesh.faces, linear, mesh, name=path.stem)
        data = tm.export(file_type="glb", include_normals=True)
        write_atomic(path, data if mesh.textured else _with_matte_material(data, path.stem))
    else:
        from trimesh.exchange.obj import export_obj

        tm = _trimesh(vertices, mesh.faces, mesh.colors, mesh, name=path.stem)
        if mesh.textured:
            text, files = export_obj(tm, include_normals=True, include_texture=True, return_texture=True,
                                     mtl_name=f"{path.stem}.mtl")
            for name, data in files.items():  # the texture and material first, the OBJ last
                write_atomic(path.with_name(name), data)
                written.append(path.with_name(name))
        else:
            text = export_obj(tm, include_normals=True, include_texture=False, include_color=mesh.colors is not None)
        write_atomic(path, text.encode())
    return written


def apply_frame(vertices: np.ndarray, frame) -> np.ndarray:
    """vertices: [N, 3]; frame: [3, 3] proper rotation or None -> [N, 3] float32"""
    if frame is None:
        return vertices
    r = np.asarray(frame.detach().cpu() if hasattr(frame, "detach") else frame, dtype=np.float64)
    if r.shape != (3, 3) or not np.allclose(r @ r.T, np.eye(3), atol=1e-5) or np.linalg.det(r) < 0:
        raise ValueError(f"frame must be a 3x3 rotation (a reflection would flip the faces), got {r.tolist()}")
    return (vertices.astype(np.float64) @ r.T).astype(np.float32)


def sample_texture(mesh: Mesh, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of mesh.texture at uv: [N, 2] (origin bottom-left) -> rgb [N, 3] in [0, 1]"""
    tex = mesh.texture.astype(np.float32) / 255.0
    h, w = tex.shape[:2]
    x = np.clip(uv[:, 0] * w - 0.5, 0, w - 1)
    y = np.clip((1 - uv[:, 1]) * h - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = tex[y0, x0] * (1 - fx) + tex[y0, x1] * fx
    bottom = tex[y1, x0] * (1 - fx) + tex[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _trimesh(vertices, faces, colors, mesh: Mesh | None = None, name: str = "mesh"):
    import trimesh

    normals = None if mesh is None else Mesh(vertices, faces).vertex_normals()  # smooth shading

    if mesh is not None and mesh.textured:
        from PIL import Image

        material = trimesh.visual.material.PBRMaterial(
            name=name, baseColorTexture=Image.fromarray(mesh.texture), baseColorFactor=[255, 255, 255, 255],
            metallicFactor=0.0, roughnessFactor=1.0,
        )
        visual = trimesh.visual.TextureVisuals(uv=mesh.uv, material=material)
        return trimesh.Trimesh(vertices, faces, visual=visual, vertex_normals=normals, process=False)
    vc = None if colors is None else vertex_colors_u8(colors)
    return trimesh.Trimesh(vertices, faces, vertex_colors=vc, vertex_normals=normals, process=False)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear (IEC 61966-2-1), any shape."""
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """The inverse of srgb_to_linear."""
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(np.maximum(c, 0.0), 1 / 2.4) - 0.055)


def _with_matte_material(glb: bytes, name: str) -> bytes:
    """Give every primitive of a GLB without materials one matte PBR material (white base colour,
    so the vertex colours show as they are; metallic 0, roughness 1)."""
    import json
    import struct

    magic, version, _ = struct.unpack_from("<III", glb, 0)
    json_len, json_type = struct.unpack_from("<II", glb, 12)
    assert magic == 0x46546C67 and json_type == 0x4E4F534A, "not a GLB with a JSON chunk first"
    doc = json.loads(glb[20:20 + json_len])
    rest = glb[20 + json_len:]  # the BIN chunk, untouched
    if doc.get("materials"):
        return glb
    doc["materials"] = [{"name": name, "doubleSided": False, "pbrMetallicRoughness": {
        "baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": 1.0}}]
    for m in doc.get("meshes", []):
        for prim in m.get("primitives", []):
            prim["material"] = 0
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)  # chunks are 4-byte aligned; JSON pads with spaces
    body = struct.pack("<II", len(text), json_type) + text + rest
    return struct.pack("<III", magic, version, 12 + len(body)) + body


