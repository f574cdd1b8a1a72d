"""The multi-view dataset format ("lrm-mv-1"), documented in docs/data.md.

    DATASET/
      dataset.json                  # {"format": "lrm-mv-1", "resolution": ..., "views": ..., ...}
      manifest.jsonl                # one meta.json per line (rebuilt by `index_dataset`)
      objects/<id>/
        rgba_000.png ...            # V random views, RGBA uint8, view 0 = the "front" view
        ring_000.png ...            # K fixed evaluation views (may be absent: K = 0)
        cameras.npz                 # c2w [V,4,4], intrinsics [V,4], ring_c2w [K,4,4], ring_intrinsics [K,4]
        mesh.ply                    # optional: the normalised ground-truth mesh (geometry)
        samples.npz                 # 3D point samples: surface colour/normal, occupancy (lrm.data.samples)
        meta.json                   # written last: {"id", "source", "license", "faces", "split", ...}

Cameras follow lrm.cameras: OpenGL camera-to-world, world Z up, the object centred inside the box
[-1, 1]³ (dataset.json "fit": "sphere" = within the unit ball, "box" = longest side 2);
intrinsics normalised (fx/W, fy/H, cx/W, cy/H). PNGs hold straight (non-premultiplied) alpha.
An object folder is complete iff it has meta.json; it is written under a temporary name and
renamed into place, so a killed writer never leaves a complete-looking partial object.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lrm.data.samples import SAMPLES_NAME, write_samples
from lrm.errors import LRMError

FORMAT = "lrm-mv-1"
SPLITS = ("train", "val", "test")


@dataclass
class ObjectViews:
    id: str  # object id, unique in the dataset, usable as a folder name
    rgba: np.ndarray  # [V, H, W, 4] uint8
    c2w: np.ndarray  # [V, 4, 4] float32, OpenGL camera-to-world
    intrinsics: np.ndarray  # [V, 4] float32, normalised (fx, fy, cx, cy)
    ring_rgba: np.ndarray | None = None  # [K, H, W, 4] uint8 fixed evaluation views
    ring_c2w: np.ndarray | None = None  # [K, 4, 4]
    ring_intrinsics: np.ndarray | None = None  # [K, 4]
    meta: dict[str, Any] = field(default_factory=dict)  # id, source, license, faces, split, ...


def check_id(object_id: object, where: str = "dataset") -> str:
    """An object id is one plain folder name: a non-empty string without '/', '\\' or NUL, and not
    '.' or '..'. A manifest that says otherwise (e.g. "../x") is refused in one line, so no
    reader (train, evaluate, pack, info) follows it out of the dataset or its output folder."""
    if (not isinstance(object_id, str) or object_id in ("", ".", "..")
            or any(c in object_id for c in "/\\\0")):
        raise LRMError(f"{where}: object id {object_id!r} is not a plain folder name")
    return object_id


def object_dir(root: str | Path, object_id: str) -> Path:
    return Path(root) / "objects" / check_id(object_id, str(root))


def is_complete(root: str | Path, object_id: str) -> bool:
    return (object_dir(root, object_id) / "meta.json").is_file()


def write_object(root: str | Path, obj: ObjectViews, mesh_ply: bytes | None = None, png_level: int = 6,
                 samples=None) -> Path:
    """Write one object atomically (temp folder + rename). Returns its folder.

    samples: the object's `lrm.data.samples.PointSamples` (written as samples.npz), or None.

    png_level: PNG compression level, 1 (fast) to 9 (small); pixels are identical either way.
    """
    final = object_dir(root, obj.id)
    tmp = final.parent / f".tmp-{obj.id}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        for i, img in enumerate(obj.rgba):
            Image.fromarray(img, "RGBA").save(tmp / f"rgba_{i:03d}.png", compress_level=png_level)
        ring = obj.ring_rgba if obj.ring_rgba is not None else np.zeros((0, 1, 1, 4), np.uint8)
        for i, img in enumerate(ring):
            Image.fromarray(img, "RGBA").save(tmp / f"ring_{i:03d}.png", compress_level=png_level)
        np.savez(
            tmp / "cameras.npz",
            c2w=obj.c2w.astype(np.float32),
            intrinsics=obj.intrinsics.astype(np.float32),
            ring_c2w=(obj.ring_c2w if obj.ring_c2w is not None else np.zeros((0, 4, 4))).astype(np.float32),
            ring_intrinsics=(obj.ring_intrinsics if obj.ring_intrinsics is not None
                             else np.zeros((0, 4))).astype(np.float32),
        )
        if mesh_ply is not None:
            (tmp / "mesh.ply").write_bytes(mesh_ply)
        if samples is not None:
            write_samples(tmp, samples)
        meta = {"id": obj.id, "views": len(obj.rgba), "ring": len(ring), **obj.meta}
        _write_json_synced(tmp / "meta.json", meta)
        if final.exists():  # an incomplete leftover (no meta.json) or an explicit overwrite
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _write_json_synced(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def mesh_path(root: str | Path, object_id: str) -> Path | None:
    """The object's normalised ground-truth mesh (mesh.ply, same world frame as the cameras), if saved."""
    path = object_dir(root, object_id) / "mesh.ply"
    return path if path.is_file() else None


def read_meta(root: str | Path, object_id: str) -> dict[str, Any]:
    return json.loads((object_dir(root, object_id) / "meta.json").read_text())


def read_object(root: str | Path, object_id: str, views: list[int] | None = None, ring: bool = False) -> ObjectViews:
    """Read an object; `views` selects random-view indices (default all); `ring` adds the ring."""
    d = object_dir(root, object_id)
    meta = json.loads((d / "meta.json").read_text())
    cams = np.load(d / "cameras.npz")
    idx = list(range(meta["views"])) if views is None else list(views)
    rgba = np.stack([np.asarray(Image.open(d / f"rgba_{i:03d}.png").convert("RGBA")) for i in idx])
    obj = ObjectViews(object_id, rgba, cams["c2w"][idx], cams["intrinsics"][idx], meta=meta)
    if ring and meta.get("ring", 0):
        obj.ring_rgba = np.stack(
            [np.asarray(Image.open(d / f"ring_{i:03d}.png").convert("RGBA")) for i in range(meta["ring"])]
        )
        obj.ring_c2w, obj.ring_intrinsics = cams["ring_c2w"], cams["ring_intrinsics"]
    return obj


def write_dataset_info(root: str | Path, info: dict[str, Any]) -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _write_json_synced(root / "dataset.json", {"format": FORMAT, **info})


def read_dataset_info(root: str | Path) -> dict[str, Any]:
    path = Path(root) / "dataset.json"
    if not path.is_file():
        raise LRMError(f"{root}: not a dataset (no dataset.json)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LRMError(f"{path}: unreadable ({exc})") from None
    if not isinstance(info, dict):
        raise LRMError(f"{path}: expected a JSON object")
    return info


def index_dataset(root: str | Path) -> list[dict[str, Any]]:
    """Rebuild manifest.jsonl from the complete objects (sorted by id) and return it."""
    root = Path(root)
    metas = sorted(
        (json.loads(p.read_text()) for p in (root / "objects").glob("*/meta.json")), key=lambda m: m["id"]
    )
    tmp = root / f".manifest.jsonl.{uuid.uuid4().hex[:8]}"  # unique: shards may index at once
    tmp.write_text("".join(json.dumps(m) + "\n" for m in metas))
    os.replace(tmp, root / "manifest.jsonl")
    return metas


def list_objects(root: str | Path, split: str | None = None) -> list[str]:
    """Ids of complete objects, optionally of one split (read from manifest.jsonl if present)."""
    root = Path(root)
    manifest = root / "manifest.jsonl"
    if manifest.is_file():
        metas = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    else:
        metas = [json.loads(p.read_text()) for p in (root / "objects").glob("*/meta.json")]
    return sorted(check_id(m.get("id"), str(manifest)) for m in metas if split is None or m.get("split") == split)


def missing_samples(root: str | Path, ids: list[str]) -> list[str]:
    """The ids (of `ids`) whose object folder in dataset `root` has no samples.npz."""
    return [i for i in ids if not (object_dir(root, i) / SAMPLES_NAME).is_file()]
