"""Render assets into an "lrm-mv-1" dataset: sharded, multi-process, resumable, failure-tolerant.

- `--shard I/N`: an object belongs to shard I iff sha256(id) mod N == I, so N machines split any
  asset list with no coordination (even if they list it in different orders).
- Resumable: an object whose meta.json exists is skipped; objects are written atomically
  (lrm.data.format.write_object), so a killed run never leaves a complete-looking partial object.
- A mesh that fails to load or render is logged with its reason in logs/shard-I-of-N.jsonl and
  skipped; reruns skip logged objects unless `retry_failed`.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import struct
import time
import traceback
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lrm.data import format as fmt
from lrm.data.format import missing_samples
from lrm.data.gl_render import GLRenderer, LightConfig
from lrm.data.mesh import normalize, to_ply
from lrm.data.samples import PointSamples, SampleConfig, compute_samples, write_samples
from lrm.data.sources.base import Asset, SkipAsset
from lrm.data.views import ViewConfig, object_seed, ring_cameras, training_cameras
from lrm.errors import LRMError


@dataclass
class BuildConfig:
    resolution: int = 512  # image side in pixels
    views: ViewConfig = field(default_factory=ViewConfig)  # cameras (random views and the ring)
    light: LightConfig = field(default_factory=LightConfig)  # soft world-fixed shading
    fit: str = "sphere"  # object normalisation: "sphere" (unit ball) or "box" (OpenLRM: longest side 2)
    supersample: int = 2  # anti-aliasing: render at this multiple of the resolution per axis
    save_mesh: str = "test"  # write mesh.ply for "test" objects, "all" or "none"
    val_fraction: float = 0.02  # share of non-test objects hashed into the val split
    png_level: int = 1  # PNG compression level (1: fast, 9: small)
    samples: SampleConfig | None = field(default_factory=SampleConfig)  # 3D point samples (None: none)


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def in_shard(object_id: str, index: int, count: int) -> bool:
    return _hash(object_id) % count == index


def split_of(asset: Asset, val_fraction: float) -> str:
    if asset.split is not None:
        return asset.split
    return "val" if (_hash("split:" + asset.id) % 10_000) < val_fraction * 10_000 else "train"


def dataset_info(cfg: BuildConfig) -> dict:
    v = cfg.views
    return {"resolution": cfg.resolution, "views": v.views, "ring": v.ring, "focal": v.focal,
            "fov": round(v.fov, 4), "distance": list(v.distance), "z_range": list(v.z_range),
            "ring_elevation": v.ring_elevation, "ring_distance": v.ring_distance,
            "ring_start_azimuth": v.ring_start_azimuth, "fit": cfg.fit, "light": asdict(cfg.light),
            "world": "z-up, OpenGL c2w, object in [-1,1]^3",
            **({"samples": asdict(cfg.samples)} if cfg.samples is not None else {})}


def render_asset(asset: Asset, cfg: BuildConfig, renderer: GLRenderer
                 ) -> tuple[fmt.ObjectViews, bytes | None, PointSamples | None]:
    """Load, normalise, render and sample one asset. Raises SkipAsset or any load/render error."""
    mesh, centre, scale = normalize(asset.load(), cfg.fit)
    points = None if cfg.samples is None else compute_samples(mesh, cfg.light, cfg.samples, object_seed(asset.id))
    c2w, intr = training_cameras(asset.id, cfg.views)
    ring_c2w, ring_intr = ring_cameras(cfg.views)
    rgba = renderer.render(mesh, c2w, intr)
    ring = renderer.render(mesh, ring_c2w, ring_intr) if len(ring_c2w) else None
    if int(rgba[..., 3].max()) == 0:
        raise ValueError("nothing visible in any view")
    split = split_of(asset, cfg.val_fraction)
    ys, xs = np.nonzero(rgba[0, ..., 3])
    front_ratio = max(np.ptp(ys) + 1, np.ptp(xs) + 1) / cfg.resolution if len(ys) else 0.0
    border = np.concatenate([rgba[:, 0, :, 3], rgba[:, -1, :, 3], rgba[:, :, 0, 3], rgba[:, :, -1, 3]], 1)
    meta = {**asset.info, "source": asset.source, "license": asset.license, "faces": mesh.faces,
            "split": split, **mesh.meta, "resolution": cfg.resolution, "focal": cfg.views.focal,
            "fov": round(cfg.views.fov, 4), "fit": cfg.fit, "scale": scale, "centre": centre.tolist(),
            "distances": [round(float(d), 4) for d in np.linalg.norm(c2w[:, :3, 3], axis=1)],
            "clipped": np.flatnonzero(border.max(1) > 0).tolist(), "front_ratio": round(float(front_ratio), 4),
            "coverage": round(float(rgba[..., 3].mean()) / 255, 5)}
    obj = fmt.ObjectViews(asset.id, rgba, c2w, intr, ring, ring_c2w, ring_intr, meta)
    keep_mesh = cfg.save_mesh == "all" or (cfg.save_mesh == "test" and split == "test")
    return obj, to_ply(mesh) if keep_mesh else None, points


# What a bad asset raises: readers (trimesh, ours) on malformed or truncated files, `normalize`
# on an empty mesh, `render_asset` when nothing is visible, GL on an impossible texture. A bug in
# lrm's own code (TypeError, AttributeError, NameError, ...) is none of these: it stops the run
# with its traceback instead of turning into "failed object" records that later runs never retry.
BAD_ASSET_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, LookupError, OSError, EOFError, ArithmeticError, struct.error, zipfile.BadZipFile, zlib.error,
)


def _bad_asset_errors() -> tuple[type[BaseException], ...]:
    """BAD_ASSET_ERRORS, with moderngl's error when it is installed (texture too large, ...)."""
    try:
        import moderngl
    except ImportError:
        return BAD_ASSET_ERRORS
    return BAD_ASSET_ERRORS + (moderngl.Error,)


_RENDERERS: dict[tuple, GLRenderer] = {}  # one per process and setting (GL contexts are costly)


def _work(job: tuple[Asset, BuildConfig, str]) -> dict:
    """Render and write one object in a worker; returns a log record. Only a setup problem
    (an LRMError: no EGL, Objaverse offline) escapes, to stop the run with its message."""
    asset, cfg, root = job
    start = time.time()
    record = {"id": asset.id, "source": asset.source}
    try:
        key = (cfg.resolution, cfg.supersample, repr(cfg.light))
        if key not in _RENDERERS:
            _RENDERERS[key] = GLRenderer(cfg.resolution, cfg.supersample, cfg.light)
        obj, ply, points = render_asset(asset, cfg, _RENDERERS[key])
        obj.meta["seconds"] = round(time.time() - start, 3)
        fmt.write_object(root, obj, ply, png_level=cfg.png_level, samples=points)
        return {**record, "status": "ok", "seconds": round(time.time() - start, 3)}
    except SkipAsset as exc:
        return {**record, "status": "skipped", "reason": str(exc)}
    except LRMError:
        raise
    except _bad_asset_errors() as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return {**record, "status": "failed", "reason": reason,
                "where": f"{Path(where.filename).name}:{where.lineno}"}


def _logged(root: Path) -> set[str]:
    done = set()
    for log in (root / "logs").glob("*.jsonl"):
        for line in log.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                if rec.get("status") in ("failed", "skipped"):
                    done.add(rec["id"])
    return done


def _remove_stale_temps(root: Path, max_age_s: float = 3600.0) -> None:
    for tmp in (root / "objects").glob(".tmp-*"):
        if time.time() - tmp.stat().st_mtime > max_age_s:
            shutil.rmtree(tmp, ignore_errors=True)


def build(assets: list[Asset], root: str | Path, cfg: BuildConfig, workers: int = 1,
          shard: tuple[int, int] = (0, 1), retry_failed: bool = False, progress: bool = True) -> dict:
    """Render `assets` (those of `shard`) into the dataset at `root`. Returns counts and timing."""
    root = Path(root)
    index, count = shard
    info = json.loads(json.dumps(dataset_info(cfg)))  # as it reads back (tuples become lists)
    if (root / "dataset.json").is_file():
        old = fmt.read_dataset_info(root)
        diff = [k for k in info if k in old and old[k] != info[k]]
        if diff:
            raise LRMError(f"{root} was rendered with other settings ({', '.join(diff)}); use a new folder")
    else:
        fmt.write_dataset_info(root, info)
    (root / "objects").mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(root)
    ids = [a.id for a in assets]
    if len(set(ids)) != len(ids):
        raise LRMError("duplicate object ids in the sources (the same source given twice?)")
    logged = set() if retry_failed else _logged(root)
    mine = [a for a in assets if in_shard(a.id, index, count)]
    todo = [a for a in mine if not fmt.is_complete(root, a.id) and a.id not in logged]
    stats = {"listed": len(assets), "shard": len(mine), "todo": len(todo), "ok": 0, "skipped": 0, "failed": 0}
    log_path = root / "logs" / f"shard-{index}-of-{count}.jsonl"
    log_path.parent.mkdir(exist_ok=True)
    start = time.time()
    jobs = [(a, cfg, str(root)) for a in todo]
    with open(log_path, "a") as log, _progress(len(todo), progress) as bar:
        for rec in _run(jobs, workers):
            stats[rec["status"]] += 1
            if rec["status"] != "ok":
                log.write(json.dumps(rec) + "\n")
                log.flush()
            bar.update(1)
            bar.set_postfix(ok=stats["ok"], skipped=stats["skipped"], failed=stats["failed"], refresh=False)
    stats["seconds"] = round(time.time() - start, 2)
    stats["objects_per_s"] = round(stats["ok"] / max(stats["seconds"], 1e-9), 3)
    fmt.index_dataset(root)
    return stats


def _sample_work(job: tuple[Asset, BuildConfig, str]) -> dict:
    """Compute and write the point samples of one existing object; returns a log record."""
    asset, cfg, root = job
    start = time.time()
    try:
        mesh, _, _ = normalize(asset.load(), cfg.fit)
        points = compute_samples(mesh, cfg.light, cfg.samples, object_seed(asset.id))
        write_samples(fmt.object_dir(root, asset.id), points)
        return {"id": asset.id, "status": "ok", "seconds": round(time.time() - start, 3)}
    except LRMError:
        raise
    except _bad_asset_errors() as exc:
        return {"id": asset.id, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"}


def add_samples(assets: list[Asset], root: str | Path, samples: SampleConfig, workers: int = 1,
                progress: bool = True) -> dict:
    """Add `samples.npz` to the objects of an existing dataset, computed from their sources
    (loaded and normalised as when they were rendered; no image is re-rendered). Resumable: an
    object that has samples is skipped. Objects of the dataset missing from `assets` are counted."""
    root = Path(root)
    info = fmt.read_dataset_info(root)
    if "samples" in info and info["samples"] != asdict(samples):
        raise LRMError(f"{root} has point samples made with other settings ({info['samples']})")
    cfg = BuildConfig(fit=info.get("fit", "sphere"), light=LightConfig(**{
        k: tuple(v) if isinstance(v, list) else v for k, v in info.get("light", {}).items()}), samples=samples)
    ids = set(fmt.list_objects(root))
    by_id = {a.id: a for a in assets if a.id in ids}
    todo = [by_id[i] for i in missing_samples(root, sorted(by_id))]
    stats = {"objects": len(ids), "from_sources": len(by_id), "todo": len(todo), "ok": 0, "failed": 0,
             "missing_source": len(ids - set(by_id))}
    start = time.time()
    log_path = root / "logs" / "samples.jsonl"
    log_path.parent.mkdir(exist_ok=True)
    with open(log_path, "a") as log, _progress(len(todo), progress) as bar:
        for rec in _run([(a, cfg, str(root)) for a in todo], workers, _sample_work):
            stats[rec["status"]] += 1
            if rec["status"] != "ok":
                log.write(json.dumps(rec) + "\n")
                log.flush()
            bar.update(1)
    stats["seconds"] = round(time.time() - start, 2)
    if stats["failed"] == 0 and stats["missing_source"] == 0:
        fmt.write_dataset_info(root, {k: v for k, v in info.items() if k != "format"} | {"samples": asdict(samples)})
    return stats


def _run(jobs: list, workers: int, work=_work):
    if workers <= 1 or len(jobs) <= 1:
        yield from map(work, jobs)
        return
    ctx = mp.get_context("spawn")  # a fresh process per worker: its own GL context, no forked threads
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap_unordered(work, jobs, chunksize=1)


def _init_worker() -> None:
    os.environ.setdefault("LP_NUM_THREADS", "1")  # one llvmpipe thread per worker process


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="obj", disable=not enabled, smoothing=0.05, dynamic_ncols=True)
