"""A smaller copy of a dataset for a remote trainer (`lrm data slim`).

Training with the bundled recipe (configs/tiny-lift.toml) reads, per object, the input view
(view 0), its camera and the 3D point samples; validation reads views 0..`val_views - 1` of a
few objects. `slim` writes a dataset in the same format ("lrm-mv-1", docs/data.md) holding only
that: the first `views` views of each object (`val_views` for the val split), no ring views, no
mesh, and a fixed random subset of each object's point samples. The full debian-128 set
(1.3 GB) becomes ~50 MB, small enough to send to a GPU machine. The subset of points is drawn
once, seeded by the object id, so two runs of `slim` write identical files.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable

import numpy as np

from lrm.data.format import (SPLITS, index_dataset, list_objects, object_dir, read_dataset_info, read_object,
                             write_dataset_info, write_object)
from lrm.data.samples import PointSamples, read_samples
from lrm.errors import LRMError


@dataclasses.dataclass
class SlimConfig:
    views: int = 1  # views kept per object (view 0 = the input view)
    val_views: int = 4  # views kept per val-split object (validation renders views 1..)
    occupancy_points: int = 4096  # inside/outside points kept per object (0: all)
    surface_points: int = 2048  # coloured surface points kept per object (0: all)
    splits: tuple[str, ...] = ("train", "val")

    def __post_init__(self) -> None:
        if self.views < 1 or self.val_views < 1:
            raise LRMError("--views and --val-views must be at least 1")
        if self.occupancy_points < 0 or self.surface_points < 0:
            raise LRMError("--occupancy-points and --surface-points must be >= 0 (0 keeps all)")
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not self.splits:
            raise LRMError(f"--splits takes some of {', '.join(SPLITS)}, not {','.join(self.splits)!r}")


def subset_points(points: PointSamples, occupancy: int, surface: int, seed_text: str) -> PointSamples:
    """A fixed random subset (no repeats) of an object's samples; 0 or more than stored keeps all."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:8], "little"))

    def pick(n: int, k: int) -> np.ndarray:
        return np.sort(rng.choice(n, size=k, replace=False)) if 0 < k < n else np.arange(n)

    s = pick(len(points.surface_xyz), surface)
    q = pick(len(points.occupancy), occupancy)
    return PointSamples(points.surface_xyz[s], points.surface_rgb[s], points.surface_normal[s],
                        points.occupancy_xyz[q], points.occupancy[q])


def slim(root: str | Path, out: str | Path, cfg: SlimConfig,
         progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Write the slim copy of dataset `root` into `out` (created; objects already there are
    kept, so an interrupted run resumes). Returns the ids written or kept."""
    root, out = Path(root), Path(out)
    info = read_dataset_info(root)
    if out.resolve() == root.resolve():
        raise LRMError(f"{out}: the slim copy must go to another folder than the dataset")
    if (out / "dataset.json").is_file() and read_dataset_info(out).get("slim_of") != str(root):
        raise LRMError(f"{out}: already holds a dataset that is not a slim copy of {root}")
    ids = [(i, s) for s in cfg.splits for i in list_objects(root, s)]
    if not ids:
        raise LRMError(f"{root}: no complete objects in split(s) {', '.join(cfg.splits)}")
    write_dataset_info(out, {**{k: v for k, v in info.items() if k != "format"}, "slim_of": str(root),
                             "slim": dataclasses.asdict(cfg)})
    for n, (object_id, split) in enumerate(ids):
        if not (object_dir(out, object_id) / "meta.json").is_file():
            obj = read_object(root, object_id)
            keep = list(range(min(len(obj.rgba), cfg.val_views if split == "val" else cfg.views)))
            obj = dataclasses.replace(obj, rgba=obj.rgba[keep], c2w=obj.c2w[keep], intrinsics=obj.intrinsics[keep],
                                      meta={k: v for k, v in obj.meta.items() if k not in ("id", "views", "ring")})
            points = None
            if (object_dir(root, object_id) / "samples.npz").is_file():
                points = subset_points(read_samples(object_dir(root, object_id)), cfg.occupancy_points,
                                       cfg.surface_points, object_id)
            write_object(out, obj, png_level=9, samples=points)
        if progress is not None:
            progress(n + 1, len(ids))
    index_dataset(out)
    return [i for i, _ in ids]
