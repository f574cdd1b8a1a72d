"""Source readers: each turns a collection of 3D assets into a list of `Asset`s.

`resolve(spec)` maps what the user types after `lrm data render` to a reader:
  PATH                  a folder of meshes (lrm.data.sources.folder)
  objaverse:N | objaverse:UID,UID | objaverse:@FILE   Objaverse objects (lrm.data.sources.objaverse)
  0ad | kicad | redeclipse-nieb                       fetched Debian sources (`lrm data fetch NAME`)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from lrm.data.sources.base import Asset, SkipAsset, make_id
from lrm.errors import LRMError

__all__ = ["Asset", "SkipAsset", "make_id", "SourceOptions", "resolve"]


@dataclass
class SourceOptions:
    limit: int | None = None  # at most this many assets per source (a seeded random sample)
    up: str = "y"  # up axis of folder meshes: "y" (glTF/OBJ) or "z"
    license: str = "unknown"  # licence recorded for folder meshes
    min_faces: int = 50  # 0ad: skip actors with fewer faces (decals, markers, tiny parts)


def resolve(spec: str, opts: SourceOptions | None = None) -> list[Asset]:
    opts = opts or SourceOptions()
    if spec.startswith("objaverse:"):
        from lrm.data.sources import objaverse

        found = objaverse.assets(spec[len("objaverse:"):])
    elif spec in ("0ad", "kicad", "redeclipse-nieb"):
        found = _debian(spec, opts)
    elif Path(spec).is_dir():
        from lrm.data.sources import folder

        found = folder.assets(spec, up=opts.up, license=opts.license)
        if not found:
            raise LRMError(f"{spec}: no mesh files ({', '.join(folder.EXTENSIONS)}) found")
    else:
        raise LRMError(f"unknown source {spec!r}: give a folder, objaverse:N|UIDS|@FILE, "
                       "0ad, kicad or redeclipse-nieb")
    if opts.limit is not None and len(found) > opts.limit:
        found = sorted(random.Random(0).sample(found, opts.limit), key=lambda a: a.id)
    return found


def _debian(name: str, opts: SourceOptions) -> list[Asset]:
    from lrm.data import debian

    root = str(debian.fetched_root(name))
    version = debian.fetched_info(name).get("version", "?")
    if name == "0ad":
        from lrm.data.sources import zero_ad

        found = zero_ad.assets(root, min_faces=opts.min_faces)
    elif name == "kicad":
        from lrm.data.sources import kicad

        found = kicad.assets(root)
    else:
        from lrm.data.sources import nieb

        found = nieb.assets(root)
    package = debian.source(name).package
    return [Asset(a.id, a.source, a.license, a.load, {**a.info, "package": f"{package} {version}"}, a.split)
            for a in found]
