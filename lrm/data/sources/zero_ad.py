"""0 A.D. actors (Debian `0ad-data`, CC-BY-SA-3.0): actor XML -> PMD meshes + DDS textures.

Read straight from `public.zip` (no extraction). An actor (`art/actors/**.xml`) holds groups of
variants; we take, in each group, the first variant of highest frequency (a variant's `file=`
pulls in `art/variants/<file>`), and merge their mesh, textures and props. Props are sub-actors
placed at a named prop point of the parent mesh (recursively), so a building comes with its
roof and decorations and a soldier with head, helmet and shield. Skinned meshes are rendered in
their bind pose.

PMD v4 (little-endian): "PSMD", version, size; nV, nUV; nV × (pos 3f, normal 3f, nUV × uv 2f,
bone ids 4B, weights 4f); nF, nF × 3 u16; nBones × (translation 3f, rotation quaternion xyzw 4f)
in world space; nProps × (u32 name length, name, translation 3f, rotation 4f, bone u8; 255 = none).
UVs are used as stored: with Pillow's top-row-first DDS decode and our bottom-row-first GL
upload they map correctly (checked on renders; flipping v paints units' legs with their tunic).
0 A.D. is Y up and units face -z (checked on renders): AXES turns them to face our front, -y.
Material names decide the texture's alpha: "player*" = where the player colour shows (we tint a
fixed blue), "*trans*" = alpha-tested holes (foliage), otherwise ignored.
"""

from __future__ import annotations

import io
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache, partial

import numpy as np
from PIL import Image

from lrm.data.mesh import Y_UP, AssetMesh, Part, quaternion_pose, rgba_image
from lrm.data.sources.base import Asset, SkipAsset, make_id

LICENSE = "CC-BY-SA-3.0"
AXES = np.diag([-1.0, -1.0, 1.0]).astype(np.float32) @ Y_UP  # y up -> z up, then a half turn
PLAYER_COLOR = np.array([0.2, 0.32, 0.8], np.float32)  # the tint of player-coloured texels
ZIP = "public.zip"
# Actor folders worth rendering as whole objects (heads, helmets, shields, decals are left out) ...
CATEGORIES = ("structures/", "units/", "fauna/", "flora/trees/", "props/flora/", "props/special/",
              "props/structures/", "props/units/weapons/")
# ... minus rubble, foundations, editor markers, effects, ground cover and scattered plant props.
EXCLUDE = re.compile(r"destruct|fndn_|decal|marker|aura|waypoint|flag|plot_boundary|garrison|grass|"
                     r"rice_|_nature|cliffs|dust|smoke|fire_|projectile|ruins|/temp/|test")
# Units differing only in rank (a/b/c/e) or mount variant (m/r) collapse to one.
_RANK = re.compile(r"_[abce](?=_[mr]$|$)|_[mr]$")


@dataclass
class Actor:
    mesh: str | None = None  # mesh path inside art/meshes/, with its .dae suffix
    textures: dict[str, str] = field(default_factory=dict)  # role (baseTex, ...) -> file
    props: list[tuple[str, str]] = field(default_factory=list)  # (attach point, actor path)
    material: str = ""


@dataclass
class PMD:
    positions: np.ndarray  # [N, 3]
    uv: np.ndarray  # [N, 2] first UV set, as stored
    faces: np.ndarray  # [F, 3]
    props: dict[str, np.ndarray]  # prop point name -> [4, 4] transform in mesh space


@lru_cache(maxsize=4)
def _zip(path: str) -> zipfile.ZipFile:  # one open archive per process (listing it costs 0.4 s)
    return zipfile.ZipFile(path)


def read_pmd(data: bytes) -> PMD:
    magic, version, _ = struct.unpack_from("<4sII", data, 0)
    if magic != b"PSMD" or version < 3:
        raise ValueError(f"not a PMD v3+ file (magic {magic!r}, version {version})")
    n_vert, n_uv = struct.unpack_from("<II", data, 12) if version >= 4 else (*struct.unpack_from("<I", data, 12), 1)
    off = 20 if version >= 4 else 16
    rec = np.dtype([("pos", "<f4", 3), ("normal", "<f4", 3), ("uv", "<f4", (n_uv, 2)),
                    ("bones", "u1", 4), ("weights", "<f4", 4)])
    verts = np.frombuffer(data, rec, n_vert, off)
    off += n_vert * rec.itemsize
    (n_faces,) = struct.unpack_from("<I", data, off)
    faces = np.frombuffer(data, "<u2", 3 * n_faces, off + 4).reshape(-1, 3).astype(np.int64)
    off += 4 + 6 * n_faces
    (n_bones,) = struct.unpack_from("<I", data, off)
    bones = np.frombuffer(data, "<f4", 7 * n_bones, off + 4).reshape(-1, 7)
    off += 4 + 28 * n_bones
    props = {}
    (n_props,) = struct.unpack_from("<I", data, off)
    off += 4
    for _ in range(n_props):
        (length,) = struct.unpack_from("<I", data, off)
        name = data[off + 4: off + 4 + length].decode("ascii", "replace")
        *tq, bone = struct.unpack_from("<7fB", data, off + 4 + length)
        off += 4 + length + 29
        local = quaternion_pose(tq[:3], tq[6], *tq[3:6])
        props[name] = local if bone == 255 or bone >= n_bones else quaternion_pose(bones[bone, :3], bones[bone, 6], *bones[bone, 3:6]) @ local
    return PMD(verts["pos"].astype(np.float32), verts["uv"][:, 0].astype(np.float32), faces, props)


def read_actor(zf: zipfile.ZipFile, path: str) -> Actor:
    """Resolve one actor XML (art/actors/<path>) to its default variant."""
    root = _xml(zf, "art/actors/" + path)
    actor = Actor(material=(root.findtext("material") or "").strip())
    for group in root.findall("group"):
        variants = group.findall("variant")
        if variants:
            best = max(variants, key=lambda v: float(v.get("frequency", "0") or 0))  # first of the max
            _merge(zf, actor, best)
    return actor


def _merge(zf: zipfile.ZipFile, actor: Actor, variant: ET.Element) -> None:
    if variant.get("file"):
        _merge(zf, actor, _xml(zf, "art/variants/" + variant.get("file")))
    if variant.findtext("mesh"):
        actor.mesh = variant.findtext("mesh").strip()
    for tex in variant.iter("texture"):
        actor.textures[tex.get("name", "baseTex")] = tex.get("file", "")
    for prop in variant.iter("prop"):
        point, child = prop.get("attachpoint", "root"), prop.get("actor", "")
        if child:
            actor.props.append((point, child))
        else:  # an empty actor clears the attach point
            actor.props = [(p, c) for p, c in actor.props if p != point]


def _xml(zf: zipfile.ZipFile, name: str) -> ET.Element:
    text = zf.read(name).decode("utf-8-sig", "replace")
    return ET.fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", text))


def _texture(zf: zipfile.ZipFile, file: str) -> Image.Image:
    base = "art/textures/skins/" + file
    for name in (base + ".cached.dds", base, re.sub(r"\.\w+$", ".dds", base)):
        try:
            return Image.open(io.BytesIO(zf.read(name)))
        except KeyError:
            continue
    raise ValueError(f"texture {file} not found")


def _parts(zf: zipfile.ZipFile, path: str, transform: np.ndarray, depth: int, out: list[Part]) -> None:
    actor = read_actor(zf, path)
    if actor.mesh is None:
        return
    pmd = read_pmd(zf.read("art/meshes/" + actor.mesh + ".cached.pmd"))
    pos = pmd.positions @ transform[:3, :3].T + transform[:3, 3]
    texture, cutoff = None, None
    if "baseTex" in actor.textures:
        rgba = rgba_image(_texture(zf, actor.textures["baseTex"])).copy()
        if actor.material.startswith("player"):  # alpha = 1 - player colour weight
            a = rgba[..., 3:4].astype(np.float32) / 255.0
            rgba[..., :3] = (rgba[..., :3] * (PLAYER_COLOR * (1 - a) + a)).astype(np.uint8)
        if "trans" in actor.material and not actor.material.startswith(("player", "no_trans")):
            cutoff = 0.5
        else:
            rgba[..., 3] = 255
        texture = rgba
    out.append(Part(pos.astype(np.float32), pmd.faces, uv=pmd.uv if texture is not None else None,
                    colors=None if texture is not None else np.full((len(pos), 4), 0.8, np.float32),
                    texture=texture, alpha_cutoff=cutoff))
    if depth >= 4:
        return
    for point, child in actor.props:
        if point in pmd.props:
            try:
                _parts(zf, child, transform @ pmd.props[point], depth + 1, out)
            except (KeyError, ValueError):  # a missing or broken prop: keep the rest of the object
                continue


def load(zip_path: str, actor_path: str, min_faces: int = 0) -> AssetMesh:
    parts: list[Part] = []
    _parts(_zip(zip_path), actor_path, np.eye(4), 0, parts)
    mesh = AssetMesh(parts)
    if not parts:
        raise SkipAsset("actor has no mesh")
    if mesh.faces < min_faces:
        raise SkipAsset(f"{mesh.faces} faces < {min_faces}")
    return mesh.transformed(AXES)


def assets(root: str, categories: tuple[str, ...] = CATEGORIES, min_faces: int = 50) -> list[Asset]:
    """One asset per actor with a mesh in `categories` (not matching EXCLUDE), de-duplicated by
    (mesh, base texture, props) and, for units, by name without rank."""
    zip_path = f"{root}/{ZIP}"
    zf = _zip(zip_path)
    seen, out = set(), []
    for name in sorted(zf.namelist()):
        if not (name.startswith("art/actors/") and name.endswith(".xml")):
            continue
        path = name[len("art/actors/"):]
        if not path.startswith(categories) or EXCLUDE.search(path):
            continue
        if path.startswith("units/"):
            rankless = _RANK.sub("", path[:-4])
            if rankless in seen:
                continue
            seen.add(rankless)
        try:
            actor = read_actor(zf, path)
        except (KeyError, ET.ParseError):
            continue
        key = (actor.mesh, actor.textures.get("baseTex"), tuple(sorted(actor.props)))
        if actor.mesh is None or key in seen:
            continue
        seen.add(key)
        out.append(Asset(make_id("0ad", path[:-4]), "0ad", LICENSE,
                         partial(load, zip_path, path, min_faces), {"path": path}))
    return out
