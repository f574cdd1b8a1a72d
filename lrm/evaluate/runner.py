"""The evaluation loop: for each held-out object (and each chosen input view) predict, render
the fixed evaluation ring, compare with the ground truth, write the report as it goes.

    evaluate(predictor, dataset, out_dir, EvalConfig(...)) -> report dict (metrics.json)
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from lrm.data.format import list_objects, object_dir, read_dataset_info, read_meta, read_object
from lrm.errors import LRMError
from lrm.evaluate import report, sheet
from lrm.evaluate.align import align_meshes, transformed
from lrm.evaluate.geometry import THRESHOLDS, geometry_metrics
from lrm.evaluate.image_metrics import composite, load_lpips, psnr, ssim
from lrm.evaluate.predictors import to_model_frame
from lrm.video import to_uint8


@dataclass
class EvalConfig:
    split: str = "test"  # dataset split to evaluate
    views: tuple[int, ...] = (0,)  # input views; each is reconstructed from on its own
    align: str = "icp"  # "icp": rotation search + ICP after normalisation; "none": normalise only
    points: int = 10_000  # surface points per mesh for CD / F-score
    thresholds: tuple[float, ...] = THRESHOLDS  # F-score thresholds (unit-bbox units)
    iou_resolution: int = 64  # voxels along the longest side for volume IoU
    image_size: int | None = None  # side of compared views (None: the ring's own resolution)
    ring_views: int | None = None  # use this many ring views, evenly spread (None: all)
    sheet_views: int = 4  # ring views shown on each contact sheet
    limit: int | None = None  # evaluate only the first N objects (sorted by id)
    objects: tuple[str, ...] | None = None  # evaluate only these object ids
    save_meshes: bool = True  # write each predicted mesh (dataset frame) to meshes/
    seed: int = 0  # surface sampling seed
    lpips_weights: str = ""  # folder with LPIPS's VGG16 + head files ("": the torch hub cache, `lpips`)


@contextmanager
def timed(timings: dict[str, float], stage: str):
    t = time.perf_counter()
    yield
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    """[H, W, 3] float in [0, 1] -> [size, size, 3] (area averaging when shrinking)."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    pil = Image.fromarray(to_uint8(img))
    return np.asarray(pil.resize((size, size), Image.Resampling.BOX), np.float32) / 255.0


def select_objects(dataset: str | Path, cfg: EvalConfig) -> list[str]:
    read_dataset_info(dataset)
    ids = list_objects(dataset, cfg.split)
    if cfg.objects:
        missing = sorted(set(cfg.objects) - set(ids))
        if missing:
            raise LRMError(f"objects not in split {cfg.split!r} of {dataset}: {', '.join(missing)}")
        ids = [i for i in ids if i in cfg.objects]
    ids = ids[: cfg.limit] if cfg.limit else ids
    if not ids:
        raise LRMError(f"{dataset}: no complete objects in split {cfg.split!r}")
    return ids


def evaluate_object(predictor, dataset: Path, object_id: str, view: int, cfg: EvalConfig, out_dir: Path,
                    lpips=None) -> dict:
    """Evaluate one (object, input view); writes its mesh and contact sheet. -> per-object entry"""
    meta_views = read_meta(dataset, object_id)["views"]
    if not 0 <= view < meta_views:
        raise LRMError(f"{object_id}: input view {view} out of range (object has {meta_views} views)")
    obj = read_object(dataset, object_id, views=[view], ring=True)
    if obj.ring_rgba is None:
        raise LRMError(f"{object_id}: no evaluation ring (ring_NNN.png) in the dataset")
    ring = sheet.pick_views(len(obj.ring_rgba), cfg.ring_views or len(obj.ring_rgba))
    ring_rgba, ring_c2w, ring_intr = obj.ring_rgba[ring], obj.ring_c2w[ring], obj.ring_intrinsics[ring]
    gt_path = object_dir(dataset, object_id) / "mesh.ply"
    gt = trimesh.load(gt_path, force="mesh", process=False) if gt_path.is_file() else None
    to_model = to_model_frame(obj.c2w[0], predictor.front_azimuth)
    distance = float(np.linalg.norm(obj.c2w[0][:3, 3]))
    entry: dict = {"id": object_id, "view": view, "status": "ok", "error": None}
    timings: dict[str, float] = {}

    with timed(timings, "predict_total"):
        pred = predictor.predict(obj.rgba[0], distance, transformed(gt, to_model) if gt is not None else None)
    timings.update(pred.timings)

    size = cfg.image_size or ring_rgba.shape[1]
    ring_model = np.einsum("ij,vjk->vik", to_model, ring_c2w.astype(np.float64))
    with timed(timings, "render"):
        pred_views = pred.render(ring_model, ring_intr, size)  # [K, H, W, 3]
    with timed(timings, "image_metrics"):
        gt_views = np.stack([_resize(composite(v, predictor.background), size) for v in ring_rgba])
        entry["psnr"] = psnr(pred_views, gt_views)
        entry["ssim"] = ssim(pred_views, gt_views)
        entry["lpips"] = lpips(pred_views, gt_views) if lpips is not None else None

    geo_keys = ["chamfer", *[f"fscore@{t:g}" for t in cfg.thresholds], "volume_iou"]
    entry.update({k: None for k in geo_keys})
    pred_mesh = transformed(pred.mesh, np.linalg.inv(to_model)) if pred.mesh is not None else None
    if pred_mesh is None:
        entry["status"], entry["error"] = "empty", pred.mesh_error
    elif gt is None:
        entry["status"], entry["error"] = "no_gt", "no mesh.ply for this object"
    else:
        with timed(timings, "align"):
            pred_a, gt_n, _ = align_meshes(pred_mesh, gt, cfg.align, cfg.points, cfg.seed)
        with timed(timings, "geometry_metrics"):
            entry.update(geometry_metrics(pred_a, gt_n, cfg.points, cfg.thresholds, cfg.iou_resolution, cfg.seed))
    name = object_id if view == 0 else f"{object_id}_view{view}"
    if cfg.save_meshes and pred_mesh is not None:
        report.write_mesh(pred_mesh, out_dir / "meshes" / f"{name}.ply")
    with timed(timings, "contact_sheet"):
        sheet.write_contact_sheet(
            out_dir / "sheets" / f"{name}.png", obj.rgba[0], gt_views, pred_views,
            pred.mesh, ring_model, ring_intr, cfg.sheet_views, predictor.background, entry, ring,
        )
    entry["timings"] = timings
    return entry


def evaluate(predictor, dataset: str | Path, out_dir: str | Path, cfg: EvalConfig = EvalConfig(),
             command: str = "", progress=None) -> dict:
    """Evaluate `predictor` on a dataset split; writes metrics.json (after every object),
    summary.md, sheets/ and meshes/ under `out_dir`. -> the report (metrics.json content)"""
    dataset, out_dir = Path(dataset), Path(out_dir)
    ids = select_objects(dataset, cfg)
    lpips = load_lpips(cfg.lpips_weights, getattr(predictor, "device", "cpu"))
    header = {
        "command": command,
        "model": predictor.describe(),
        "dataset": {"path": str(dataset), "split": cfg.split, "info": read_dataset_info(dataset)},
        "protocol": {**asdict(cfg), "background": predictor.background},
        "lpips_available": lpips is not None,
    }
    entries: list[dict] = []
    for object_id in ids:
        for view in cfg.views:
            try:
                entries.append(evaluate_object(predictor, dataset, object_id, view, cfg, out_dir, lpips))
            except LRMError as exc:  # a broken object is recorded, the run goes on
                entries.append({"id": object_id, "view": view, "status": "failed", "error": str(exc)})
            report.write_metrics(out_dir, header, entries)
            if progress is not None:
                progress(entries[-1])
    result = report.write_metrics(out_dir, header, entries)
    report.write_summary(out_dir, result)
    return result
