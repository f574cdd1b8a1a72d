"""Tar shards of an "lrm-mv-1" dataset, for streaming at cluster scale (`lrm data pack`).

    SHARDS/
      index.json                      # {"format": "lrm-mv-1-tar", "dataset": <dataset.json>,
                                      #  "shards": [{"file", "split", "objects"}, ...]}
      train-000000.tar ...            # one prefix per split
      val-000000.tar, test-000000.tar

Each tar holds whole objects, one after another, in WebDataset's naming: the member of file F of
object ID is `ID.F` (ids contain no dots), starting with `ID.meta.json`, then `ID.cameras.npz`,
the views in order, and `ID.mesh.ply` if present. WebDataset (`wds.WebDataset(urls)`) reads them
as samples with keys "meta.json", "cameras.npz", "rgba_000.png", ...; `iter_shard` here does
the same without the dependency and returns `ObjectViews`.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
from pathlib import Path
from typing import IO, Iterable, Iterator

import numpy as np
from PIL import Image

from lrm.data.format import SPLITS, ObjectViews, list_objects, object_dir, read_dataset_info
from lrm.errors import LRMError

FORMAT = "lrm-mv-1-tar"


def _order(name: str) -> tuple[int, str]:
    first = {"meta.json": 0, "cameras.npz": 1}
    return first.get(name, 3 if name == "mesh.ply" else 2), name


def pack(root: str | Path, out: str | Path, objects_per_shard: int = 256, split: str | None = None,
         ring: bool = True, overwrite: bool = False) -> list[Path]:
    """Write the complete objects of `root` (one split or all) into tar shards under `out`.
    A folder that already holds shards is refused unless `overwrite`; only regular files inside
    the dataset are packed (a symlink is refused, not followed)."""
    info = read_dataset_info(root)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LRMError(f"{out}: exists and is not a folder")
    old = sorted(p.name for p in out.glob("*.tar")) + (["index.json"] if (out / "index.json").exists() else [])
    if old and not overwrite:
        state = "shards" if "index.json" in old else "an unfinished pack (shards but no index.json: its run was stopped)"
        raise LRMError(f"{out}: already holds {state} ({', '.join(old[:3])}{', ...' if len(old) > 3 else ''}); "
                       "pass --overwrite to replace them, or choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    entries, written = [], []
    for sp in [split] if split else SPLITS:
        ids = list_objects(root, sp)
        bad = [i for i in ids if "." in i]
        if bad:
            raise LRMError(f"object id {bad[0]!r} contains a dot; tar members would be ambiguous")
        for k in range(0, len(ids), objects_per_shard):
            name = f"{sp}-{k // objects_per_shard:06d}.tar"
            _write_tar(root, out / name, ids[k: k + objects_per_shard], ring)
            entries.append({"file": name, "split": sp, "objects": len(ids[k: k + objects_per_shard])})
            written.append(out / name)
    index = {"format": FORMAT, "dataset": info, "shards": entries}
    tmp = out / f".index.json.{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, out / "index.json")
    return written


def _write_tar(root: str | Path, path: Path, ids: list[str], ring: bool) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for object_id in ids:
                folder = object_dir(root, object_id)
                files = sorted(folder.iterdir(), key=lambda f: _order(f.name))
                for f in [folder, *files]:
                    if f.is_symlink() or not (f.is_file() or f is folder):
                        raise LRMError(f"{f}: not a regular file inside the dataset (symlinks are not packed)")
                for f in files:
                    if ring or not f.name.startswith("ring_"):
                        tar.add(f, arcname=f"{object_id}.{f.name}", recursive=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _decode(object_id: str, files: dict[str, bytes], ring: bool) -> ObjectViews:
    meta = json.loads(files["meta.json"])
    cams = np.load(io.BytesIO(files["cameras.npz"]))

    def images(prefix: str, n: int) -> np.ndarray:
        return np.stack([np.asarray(Image.open(io.BytesIO(files[f"{prefix}_{i:03d}.png"])).convert("RGBA"))
                         for i in range(n)])

    obj = ObjectViews(object_id, images("rgba", meta["views"]), cams["c2w"], cams["intrinsics"], meta=meta)
    if ring and meta.get("ring", 0) and "ring_000.png" in files:
        obj.ring_rgba = images("ring", meta["ring"])
        obj.ring_c2w, obj.ring_intrinsics = cams["ring_c2w"], cams["ring_intrinsics"]
    return obj


def iter_shard(source: str | Path | IO[bytes], ring: bool = False) -> Iterator[ObjectViews]:
    """Stream the objects of one tar shard (a path or a readable binary stream, e.g. a pipe)."""
    opened = tarfile.open(source, "r|*") if isinstance(source, (str, Path)) else tarfile.open(fileobj=source, mode="r|*")
    with opened as tar:
        key, files = None, {}
        for member in tar:
            if not member.isfile():
                continue
            name = Path(member.name).name
            object_id, _, field = name.partition(".")
            if object_id != key and files:
                yield _decode(key, files, ring)
                files = {}
            key = object_id
            files[field] = tar.extractfile(member).read()
        if files:
            yield _decode(key, files, ring)


def shard_files(shards: str | Path, split: str | None = None) -> list[Path]:
    """The shard files listed in SHARDS/index.json, optionally of one split."""
    index = json.loads((Path(shards) / "index.json").read_text())
    return [Path(shards) / e["file"] for e in index["shards"] if split is None or e["split"] == split]


def iter_shards(files: Iterable[str | Path], rank: int = 0, world: int = 1, shuffle_seed: int | None = None,
                ring: bool = False) -> Iterator[ObjectViews]:
    """Stream objects from many shards; process `rank` of `world` reads shards rank, rank+world, ...
    `shuffle_seed` shuffles the shard order (the same for every rank, so the split stays disjoint)."""
    files = [Path(f) for f in files]
    if shuffle_seed is not None:
        files = [files[i] for i in np.random.default_rng(shuffle_seed).permutation(len(files))]
    for f in files[rank::world]:
        yield from iter_shard(f, ring=ring)
