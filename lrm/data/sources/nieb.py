"""Red Eclipse "nieb" office objects (Debian `redeclipse-data`, CC0-1.0): our in-domain holdout.

Every folder with an `obj.cfg` is one object (45 folders, variants such as `desk/flip` or
`box_large/label_a` included). `obj.cfg` lines used: `objload <file.obj>` and
`objskin <group|*> <diffuse.png> ...` (a texture per OBJ group, `*` = every group; a quoted name
may carry a `<mix:1>` prefix, which we drop). The OBJ files have no .mtl; we read them with a
small reader of our own that keeps `g` groups. Cube 2 engine models: Y up in the file, facing +x
(we turn them to face -y, our front), standard OBJ UVs (bottom-left origin). These objects always
go to the test split.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from lrm.data.mesh import Y_UP, AssetMesh, Part, rgba_image

# File axes -> ours: Y up to Z up, then a quarter turn about z so that the +x front faces -y.
AXES = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], np.float32) @ Y_UP
from lrm.data.sources.base import Asset, make_id

LICENSE = "CC0-1.0"


def read_obj(text: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """OBJ text -> {group: (positions [N, 3], faces [F, 3], uv [N, 2] or None)}, polygons fanned.

    Each distinct (position, uv) corner becomes one vertex; negative indices count from the end.
    """
    pos, uv, corners = [], [], {}  # corners: group -> list of (v, vt) rows, 3 per triangle
    group = "default"
    for line in text.splitlines():
        head, _, rest = line.strip().partition(" ")
        if head == "v":
            pos.append([float(x) for x in rest.split()[:3]])
        elif head == "vt":
            uv.append([float(x) for x in rest.split()[:2]])
        elif head == "g":
            group = rest.strip() or "default"
        elif head == "f":
            refs = []
            for tok in rest.split():
                v, t = (tok.split("/") + [""])[:2]
                vi = int(v) - 1 if int(v) > 0 else len(pos) + int(v)
                ti = (int(t) - 1 if int(t) > 0 else len(uv) + int(t)) if t else -1
                refs.append((vi, ti))
            rows = corners.setdefault(group, [])
            for k in range(1, len(refs) - 1):
                rows += [refs[0], refs[k], refs[k + 1]]
    p, t = np.array(pos, np.float32).reshape(-1, 3), np.array(uv, np.float32).reshape(-1, 2)
    out = {}
    for name, rows in corners.items():
        pairs = np.array(rows, np.int64)
        keys, inverse = np.unique(pairs, axis=0, return_inverse=True)
        has_uv = bool(np.all(keys[:, 1] >= 0)) and len(t) > 0
        out[name] = (p[keys[:, 0]], inverse.reshape(-1, 3), t[keys[:, 1]] if has_uv else None)
    return out


def read_cfg(path: Path) -> tuple[Path, dict[str, Path]]:
    """obj.cfg -> (the OBJ file, {group or '*': diffuse texture file})."""
    obj, skins = None, {}
    for line in path.read_text(errors="replace").splitlines():
        words = [re.sub(r"^<[^>]*>", "", w.strip('"')) for w in re.findall(r'"[^"]*"|\S+', line)]
        if len(words) >= 2 and words[0] == "objload":
            obj = path.parent / words[1]
        elif len(words) >= 3 and words[0] == "objskin":
            skins[words[1]] = path.parent / words[2]
    if obj is None:
        raise ValueError(f"{path}: no objload line")
    return obj, skins


def load(cfg_path: str) -> AssetMesh:
    obj, skins = read_cfg(Path(cfg_path))
    if not skins and (obj.parent / "diffuse.png").is_file():
        skins = {"*": obj.parent / "diffuse.png"}
    images: dict[Path, np.ndarray] = {}
    parts = []
    for group, (pos, faces, uv) in read_obj(obj.read_text(errors="replace")).items():
        tex_path = skins.get(group, skins.get("*"))
        if tex_path is None or uv is None or not tex_path.is_file():
            parts.append(Part(pos, faces, colors=np.full((len(pos), 4), 0.7, np.float32)))
            continue
        if tex_path not in images:
            images[tex_path] = rgba_image(Image.open(tex_path))
        parts.append(Part(pos, faces, uv=uv, texture=images[tex_path], alpha_cutoff=0.5))
    return AssetMesh(parts).transformed(AXES)


def assets(root: str) -> list[Asset]:
    """One asset per obj.cfg under `root` (the nieb folder); all forced to the test split."""
    out = []
    for cfg in sorted(Path(root).rglob("obj.cfg")):
        name = cfg.parent.relative_to(root).as_posix()
        out.append(Asset(make_id("nieb", name), "redeclipse-nieb", LICENSE,
                         partial(load, str(cfg)), {"path": name}, split="test"))
    return out
