"""Training samples from a multi-view dataset, as a pure function of (seed, sample index).

Global sample g (counting over steps, micro-batches, ranks and batch slots) draws object
`perm(seed, epoch)[g mod N]` with epoch = g // N, and its augmentation from a generator seeded
with (seed, g). The data a run sees is thus fixed by the seed and the step, whatever the
number of loader workers, and a resumed run continues the same stream from its step.

Per sample (OpenLRM's recipe, docs/spec/openlrm-v1.1.md §14.2):
- 1 + `side_views` distinct random views; the first is the input (source) view;
- poses rotated so that the source camera becomes the canonical one (its own distance);
- the source composited on `source_background`, resized (bicubic, align_corners=True) to the
  model's source size and clamped;
- supervision views composited on a random grey from `backgrounds`, resized to a random full
  resolution r in [render_low, render_high], and a random `region`² crop taken at `anchor`.

Objects come from an `ObjectSource`: anything with `__len__`, `num_views(i)` and
`read(i, views)`; `FolderSource` reads the lrm-mv-1 folder format. A shard reader with random
access plugs in the same way.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from lrm import cameras
from lrm.data.format import ObjectViews, list_objects, missing_samples, object_dir, read_meta, read_object
from lrm.data.samples import SAMPLES_NAME, PointSamples, read_samples
from lrm.errors import LRMError
from lrm.preprocess import composite
from lrm.train.config import DataConfig


class ObjectSource(Protocol):
    def __len__(self) -> int: ...
    def num_views(self, index: int) -> int: ...
    def read(self, index: int, views: list[int]) -> ObjectViews: ...
    def read_points(self, index: int) -> PointSamples: ...


class FolderSource:
    """Objects of one split of a dataset folder (lrm.data.format)."""

    def __init__(self, root: str, split: str) -> None:
        self.root = root
        self.ids = list_objects(root, split)
        manifest = Path(root) / "manifest.jsonl"
        metas = {}
        if manifest.is_file():  # one file instead of one meta.json per object
            lines = filter(str.strip, manifest.read_text().splitlines())
            metas = {m["id"]: m for m in map(json.loads, lines)}
        self._views = [int((metas.get(i) or read_meta(root, i))["views"]) for i in self.ids]

    def __len__(self) -> int:
        return len(self.ids)

    def num_views(self, index: int) -> int:
        return self._views[index]

    def read(self, index: int, views: list[int]) -> ObjectViews:
        return read_object(self.root, self.ids[index], views=views)

    def read_points(self, index: int) -> PointSamples:
        return read_samples(object_dir(self.root, self.ids[index]))

    def require_points(self) -> None:
        """Raise a one-line LRMError unless every object has its samples.npz."""
        missing = missing_samples(self.root, self.ids)
        if missing:
            raise LRMError(f"{self.root}: {len(missing)} of {len(self.ids)} objects have no 3D point samples "
                           f"({SAMPLES_NAME}, e.g. {missing[0]}); add them with `lrm data samples "
                           f"{self.root} SOURCE ...` (the sources it was rendered from), or set "
                           "data.occupancy_points = data.surface_points = 0")


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """images: [N, C, H, W] in [0, 1] -> [N, C, size, size]: bicubic, align_corners=True, clamped."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=True).clamp(0, 1)


def composite_views(rgba: np.ndarray, background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """rgba: [V, H, W, 4] uint8; background: [V] grey levels -> rgb [V, 3, H, W], alpha [V, 1, H, W]
    (each view over its own grey, by lrm.preprocess.composite)"""
    x = rgba.astype(np.float32) / 255.0
    rgb = composite(x, background.numpy().astype(np.float32)[:, None, None, None])
    return torch.from_numpy(rgb).permute(0, 3, 1, 2), torch.from_numpy(x[..., 3:]).permute(0, 3, 1, 2)


def point_targets(points: PointSamples, rng: np.random.Generator, cfg: DataConfig, frame: torch.Tensor) -> dict:
    """A random subset of an object's point samples, moved into the input camera's frame.

    frame: [4, 4] world -> the frame in which the input camera is canonical
    -> occupancy_xyz [P, 3], occupancy [P], surface_xyz [Q, 3], surface_rgb [Q, 3]"""
    occ = rng.choice(len(points.occupancy), size=cfg.occupancy_points,
                     replace=len(points.occupancy) < cfg.occupancy_points)
    surf = rng.choice(len(points.surface_xyz), size=cfg.surface_points,
                      replace=len(points.surface_xyz) < cfg.surface_points)
    surface_xyz = points.surface_xyz[surf].astype(np.float32)
    if cfg.surface_jitter > 0:  # off the surface along the normal, same colour target
        offset = rng.normal(0.0, cfg.surface_jitter, size=(len(surf), 1)).astype(np.float32)
        surface_xyz = surface_xyz + offset * points.surface_normal[surf].astype(np.float32)
    rot, shift = frame[:3, :3], frame[:3, 3]
    move = lambda xyz: torch.from_numpy(xyz).float() @ rot.T + shift  # noqa: E731
    return {"occupancy_xyz": move(points.occupancy_xyz[occ]),
            "occupancy": torch.from_numpy(points.occupancy[occ]).float(),
            "surface_xyz": move(surface_xyz),
            "surface_rgb": torch.from_numpy(points.surface_rgb[surf]).float()}


def make_sample(obj: ObjectViews, rng: np.random.Generator, cfg: DataConfig, source_size: int,
                points: PointSamples | None = None) -> dict:
    """One training sample from an object read with its chosen views (source first).

    Returns source [3, S, S], source_camera [16], c2w [V, 4, 4], intrinsics [V, 4],
    resolution [V], anchor [V, 2] (row, col), background [V], target [V, 3, r, r],
    alpha [V, 1, r, r] with r = cfg.region and V the supervised views; with `points` also the
    entries of `point_targets`.
    """
    raw = torch.from_numpy(obj.c2w).float()
    c2w = cameras.normalize_poses(raw)
    intr = torch.from_numpy(obj.intrinsics).float()
    src_rgb, _ = composite_views(obj.rgba[:1], torch.tensor([cfg.source_background]))
    source = resize(src_rgb, source_size)[0]
    first = 0 if cfg.supervise_source else 1
    sup = slice(first, None)
    v = len(obj.rgba) - first
    bg = torch.tensor(cfg.backgrounds, dtype=torch.float32)[torch.from_numpy(rng.integers(0, len(cfg.backgrounds), v))]
    res = int(rng.integers(cfg.render_low, cfg.render_high + 1))
    if res < cfg.region:
        raise LRMError(f"data.render_low ({cfg.render_low}) must be at least data.region ({cfg.region})")
    anchor = torch.from_numpy(rng.integers(0, res - cfg.region + 1, size=(v, 2))).float()
    rgb, alpha = composite_views(obj.rgba[sup], bg)
    full = resize(torch.cat([rgb, alpha], dim=1), res)
    crops = torch.stack([full[i, :, int(r):int(r) + cfg.region, int(c):int(c) + cfg.region]
                         for i, (r, c) in enumerate(anchor.tolist())])
    extra = {}
    if points is not None:
        extra = point_targets(points, rng, cfg, c2w[0] @ torch.linalg.inv(raw[0]))
    return {
        **extra,
        "source": source,
        "source_camera": cameras.camera_vector(c2w[0], intr[0]),
        "c2w": c2w[sup],
        "intrinsics": intr[sup],
        "resolution": torch.full((v,), res, dtype=torch.long),
        "anchor": anchor,
        "background": bg,
        "target": crops[:, :3].contiguous(),
        "alpha": crops[:, 3:].contiguous(),
    }


class TrainSamples(torch.utils.data.Dataset):
    """Map-style dataset indexed by the global sample index g (see module docstring)."""

    def __init__(self, source: ObjectSource, cfg: DataConfig, source_size: int, seed: int) -> None:
        if len(source) == 0:
            raise LRMError(f"{cfg.root}: no complete objects in split {cfg.split!r}")
        self.source, self.cfg, self.source_size, self.seed = source, cfg, source_size, seed

    @functools.lru_cache(maxsize=4)
    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 0, epoch]).permutation(len(self.source))

    def object_index(self, g: int) -> int:
        epoch, pos = divmod(g, len(self.source))
        return int(self._order(epoch)[pos])

    def __getitem__(self, g: int) -> dict:
        index = self.object_index(g)
        rng = np.random.default_rng([self.seed, 1, g])
        n = self.source.num_views(index)
        k = 1 + self.cfg.side_views
        if n < k:
            raise LRMError(f"object {index} has {n} views; a sample needs 1 + {self.cfg.side_views}")
        views = [int(i) for i in rng.choice(n, size=k, replace=False)]
        if self.cfg.source_view >= 0:  # a fixed input view, then k - 1 others
            others = [int(i) for i in rng.permutation(n) if i != self.cfg.source_view]
            views = [self.cfg.source_view] + others[: k - 1]
        points = None
        if self.cfg.occupancy_points or self.cfg.surface_points:
            points = self.source.read_points(index)
        return make_sample(self.source.read(index, views), rng, self.cfg, self.source_size, points)


class StepBatches(torch.utils.data.Sampler):
    """Batches of global sample indices for steps [start, steps) of one rank.

    Micro-batch m of step s on rank k holds g = ((s*A + m)*W + k)*B + j, j < B.
    """

    def __init__(self, start: int, steps: int, batch: int, accumulation: int, rank: int, world: int) -> None:
        self.start, self.steps, self.batch, self.acc, self.rank, self.world = (
            start, steps, batch, accumulation, rank, world)

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * self.acc

    def __iter__(self) -> Iterator[list[int]]:
        for s in range(self.start, self.steps):
            for m in range(self.acc):
                first = ((s * self.acc + m) * self.world + self.rank) * self.batch
                yield list(range(first, first + self.batch))


def collate(samples: list[dict]) -> dict:
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def validation_items(source: ObjectSource, count: int, views: int, source_size: int,
                     resolution: int) -> list[dict]:
    """Fixed validation items: view 0 is the input, views 1..`views` the targets (on white).

    Each item: source [1, 3, S, S], source_camera [1, 16], c2w [1, V, 4, 4],
    intrinsics [1, V, 4], target [1, V, 3, res, res], and the input view's source_c2w
    [1, 1, 4, 4], source_intrinsics [1, 1, 4], source_alpha [1, 1, 1, res, res]."""
    items = []
    for index in range(min(count, len(source))):
        n = min(views + 1, source.num_views(index))
        obj = source.read(index, list(range(n)))
        c2w = cameras.normalize_poses(torch.from_numpy(obj.c2w).float())
        intr = torch.from_numpy(obj.intrinsics).float()
        rgb, alpha = composite_views(obj.rgba, torch.ones(n))
        items.append({
            "source_c2w": c2w[None, :1],
            "source_intrinsics": intr[None, :1],
            "source_alpha": resize(alpha[:1], resolution)[None],
            "source": resize(rgb[:1], source_size),
            "source_camera": cameras.camera_vector(c2w[:1], intr[:1]),
            "c2w": c2w[None, 1:],
            "intrinsics": intr[None, 1:],
            "target": resize(rgb[1:], resolution)[None],
        })
    return items
