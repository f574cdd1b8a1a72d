"""The evaluation loop: for each held-out object (and each chosen input view) predict, render
the fixed evaluation ring, compare with the ground truth, write the report as it goes.

    evaluate(predictor, dataset, out_dir, EvalConfig(...)) -> report dict (metrics.json)
"""

from __future__ import annotations

import json
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
from lrm.evaluate.image_metrics import load_lpips, psnr, ssim
from lrm.evaluate.predictors import Prediction, to_model_frame
from lrm.mesh.view_render import rasterize
from lrm.preprocess import composite
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
    shuffle: bool = False  # also score each object against the prediction from another object's input


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
    """The object ids to evaluate; an input view the dataset's objects do not have is refused."""
    n_views = read_dataset_info(dataset).get("views")
    bad = [v for v in cfg.views if v < 0 or (isinstance(n_views, int) and v >= n_views)]
    if bad:
        raise LRMError(f"input view(s) {' '.join(map(str, bad))} out of range: the objects of {dataset} have "
                       f"views 0 to {(n_views or 1) - 1}")
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


@dataclass
class Target:
    """What one (object, input view) is scored against, in the dataset frame and the model frame."""
    id: str
    view: int
    input_rgba: np.ndarray  # [H, W, 4] uint8, the input view
    to_model: np.ndarray  # [4, 4] dataset -> the predictor's frame for this input camera
    distance: float  # input camera distance
    input_c2w: np.ndarray  # [4, 4] the input camera in the predictor's frame
    input_intrinsics: np.ndarray  # [4]
    ring: list[int]  # ring view indices used
    ring_model: np.ndarray  # [K, 4, 4] ring cameras in the predictor's frame
    ring_intrinsics: np.ndarray  # [K, 4]
    gt_views: np.ndarray  # [K, S, S, 3] ring views composited on the predictor's background
    gt: trimesh.Trimesh | None  # ground-truth mesh, dataset frame


def load_target(predictor, dataset: Path, object_id: str, view: int, cfg: EvalConfig) -> Target:
    meta_views = read_meta(dataset, object_id)["views"]
    if not 0 <= view < meta_views:
        raise LRMError(f"{object_id}: input view {view} out of range (object has {meta_views} views)")
    obj = read_object(dataset, object_id, views=[view], ring=True)
    if obj.ring_rgba is None:
        raise LRMError(f"{object_id}: no evaluation ring (ring_NNN.png) in the dataset")
    ring = sheet.pick_views(len(obj.ring_rgba), cfg.ring_views or len(obj.ring_rgba))
    gt_path = object_dir(dataset, object_id) / "mesh.ply"
    gt = trimesh.load(gt_path, force="mesh", process=False) if gt_path.is_file() else None
    to_model = to_model_frame(obj.c2w[0], predictor.front_azimuth)
    size = cfg.image_size or obj.ring_rgba.shape[1]
    return Target(
        object_id, view, obj.rgba[0], to_model, float(np.linalg.norm(obj.c2w[0][:3, 3])),
        to_model @ obj.c2w[0].astype(np.float64), obj.intrinsics[0], ring,
        np.einsum("ij,vjk->vik", to_model, obj.ring_c2w[ring].astype(np.float64)), obj.ring_intrinsics[ring],
        np.stack([_resize(composite(v, predictor.background), size) for v in obj.ring_rgba[ring]]), gt)


def input_view_metrics(mesh: trimesh.Trimesh | None, target: Target) -> dict[str, float | None]:
    """The mesh seen from the input camera against the input view: silhouette IoU with the
    input alpha (> 0.5), and the mean absolute colour error of its vertex colours (flat, no
    shading) on the pixels both cover. An empty mesh scores IoU 0 and no colour error."""
    alpha_gt = target.input_rgba[..., 3] > 127
    if mesh is None:
        return {"input_iou": 0.0, "input_color_error": None}
    size = target.input_rgba.shape[0]
    colors = sheet.mesh_colours(mesh)
    rgb, alpha = rasterize(mesh.vertices, mesh.faces, colors, target.input_c2w, target.input_intrinsics, size)
    covered = alpha > 0.5
    union = (covered | alpha_gt).sum()
    both = covered & alpha_gt
    err = None
    if colors is not None and both.any():
        err = float(np.abs(rgb[both] - target.input_rgba[..., :3][both] / 255.0).mean())
    return {"input_iou": float((covered & alpha_gt).sum() / union) if union else 0.0, "input_color_error": err}


def score(pred: Prediction, target: Target, cfg: EvalConfig, timings: dict[str, float], lpips=None,
          out_dir: Path | None = None) -> tuple[dict, trimesh.Trimesh | None, np.ndarray]:
    """Metrics of a prediction against a target. -> (metrics, mesh in the dataset frame, ring renders)"""
    size = target.gt_views.shape[1]
    entry: dict = {"status": "ok", "error": None}
    with timed(timings, "render"):
        pred_views = pred.render(target.ring_model, target.ring_intrinsics, size)  # [K, H, W, 3]
    with timed(timings, "image_metrics"):
        entry["psnr"] = psnr(pred_views, target.gt_views)
        entry["ssim"] = ssim(pred_views, target.gt_views)
        entry["lpips"] = lpips(pred_views, target.gt_views) if lpips is not None else None
    with timed(timings, "input_view"):
        entry.update(input_view_metrics(pred.mesh, target))
    geo_keys = ["chamfer", *[f"fscore@{t:g}" for t in cfg.thresholds], "volume_iou"]
    entry.update({k: None for k in geo_keys})
    pred_mesh = transformed(pred.mesh, np.linalg.inv(target.to_model)) if pred.mesh is not None else None
    if pred_mesh is None:
        entry["status"], entry["error"] = "empty", pred.mesh_error
    elif target.gt is None:
        entry["status"], entry["error"] = "no_gt", "no mesh.ply for this object"
    else:
        with timed(timings, "align"):
            pred_a, gt_n, _ = align_meshes(pred_mesh, target.gt, cfg.align, cfg.points, cfg.seed)
        with timed(timings, "geometry_metrics"):
            entry.update(geometry_metrics(pred_a, gt_n, cfg.points, cfg.thresholds, cfg.iou_resolution, cfg.seed))
    return entry, pred_mesh, pred_views


SHUFFLED = ("psnr", "chamfer", "fscore@0.1", "volume_iou", "input_iou")  # scored again with another input


def evaluate_object(predictor, dataset: Path, object_id: str, view: int, cfg: EvalConfig, out_dir: Path,
                    lpips=None) -> tuple[dict, Prediction, Target]:
    """Evaluate one (object, input view); writes its mesh and contact sheet.
    -> (per-object entry, the prediction, what it was scored against)"""
    target = load_target(predictor, dataset, object_id, view, cfg)
    timings: dict[str, float] = {}
    with timed(timings, "predict_total"):
        pred = predict(predictor, target)
    timings.update(pred.timings)
    metrics, pred_mesh, pred_views = score(pred, target, cfg, timings, lpips)
    entry = {"id": object_id, "view": view, **metrics}
    name = object_id if view == 0 else f"{object_id}_view{view}"
    if cfg.save_meshes and pred_mesh is not None:
        report.write_mesh(pred_mesh, out_dir / "meshes" / f"{name}.ply")
    with timed(timings, "contact_sheet"):
        sheet.write_contact_sheet(
            out_dir / "sheets" / f"{name}.png", target.input_rgba, target.gt_views, pred_views,
            pred.mesh, target.ring_model, target.ring_intrinsics, cfg.sheet_views, predictor.background, entry,
            target.ring,
        )
    entry["timings"] = timings
    return entry, pred, target


def predict(predictor, target: Target) -> Prediction:
    """The predictor's answer to a target's input view (the ground truth goes along in the
    predictor's frame, for predictors that use it, such as baselines fitted to it)."""
    gt_model = transformed(target.gt, target.to_model) if target.gt is not None else None
    return predictor.predict(target.input_rgba, target.distance, gt_model)


def shuffled_scores(entries: list[dict], done: dict[tuple[str, int], tuple[Prediction, Target]],
                    cfg: EvalConfig) -> None:
    """The input-dependence control: score each entry's object against the prediction made from
    the input of the entry half the list away (a cyclic shift by N // 2: neighbours in id order
    are often variants of one object, e.g. box_large-label_0/_a/_b), into `shuffled_*` keys."""
    keys = [e for e in entries if (e["id"], e["view"]) in done]
    for i, e in enumerate(keys):
        other = keys[(i + max(1, len(keys) // 2)) % len(keys)]
        if other["id"] == e["id"]:
            continue
        target = done[(e["id"], e["view"])][1]
        metrics, _, _ = score(done[(other["id"], other["view"])][0], target, cfg, {})
        e["shuffled_input"] = other["id"]
        e.update({f"shuffled_{k}": metrics.get(k) for k in SHUFFLED})


def evaluate(predictor, dataset: str | Path, out_dir: str | Path, cfg: EvalConfig = EvalConfig(),
             command: str = "", progress=None, resume: bool = False) -> dict:
    """Evaluate `predictor` on a dataset split; writes metrics.json (after every object, marked
    unfinished until the end), summary.md, sheets/ and meshes/ under `out_dir`.

    `resume`: an unfinished metrics.json of the same model, dataset and protocol in `out_dir`
    (a killed run) keeps its entries and only the rest is evaluated; with `cfg.shuffle` the kept
    objects are predicted again (not re-scored) for the control. -> the report (metrics.json content)"""
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
    pairs = [(object_id, view) for object_id in ids for view in cfg.views]
    entries = resumable_entries(out_dir, header, pairs) if resume else []
    finished = {(e["id"], e["view"]): e["status"] for e in entries}
    done: dict[tuple[str, int], tuple[Prediction, Target]] = {}  # kept for --shuffle
    for object_id, view in pairs:
        if (object_id, view) in finished:
            if cfg.shuffle and finished[(object_id, view)] != "failed":
                target = load_target(predictor, dataset, object_id, view, cfg)
                done[(object_id, view)] = (predict(predictor, target), target)
            continue
        try:
            entry, pred, target = evaluate_object(predictor, dataset, object_id, view, cfg, out_dir, lpips)
            entries.append(entry)
            if cfg.shuffle:
                done[(object_id, view)] = (pred, target)
        except LRMError as exc:  # a broken object is recorded, the run goes on
            entries.append({"id": object_id, "view": view, "status": "failed", "error": str(exc)})
        report.write_metrics(out_dir, header, entries, len(pairs), complete=False)
        if progress is not None:
            progress(entries[-1])
    order = {pair: i for i, pair in enumerate(pairs)}
    entries.sort(key=lambda e: order[(e["id"], e["view"])])
    if cfg.shuffle:
        shuffled_scores(entries, done, cfg)
    result = report.write_metrics(out_dir, header, entries)
    report.write_summary(out_dir, result)
    return result


def resumable_entries(out_dir: Path, header: dict, pairs: list[tuple[str, int]]) -> list[dict]:
    """The finished entries of an unfinished report in `out_dir` written by the same model,
    dataset and protocol ([] when there is none); LRMError when it belongs to another run."""
    if not (out_dir / "metrics.json").is_file():
        return []
    old = report.read_metrics(out_dir)
    if report.unfinished(old) is None:
        raise LRMError(f"{out_dir} already holds a finished report; pass --overwrite or choose another folder")
    same = json.loads(json.dumps({k: header[k] for k in ("model", "dataset", "protocol")}))  # tuples as lists
    differ = [k for k in same if old.get(k) != same[k]]
    if differ:
        raise LRMError(f"{out_dir} holds an unfinished report of another run ({', '.join(differ)} differ); "
                       "pass --overwrite or choose another folder")
    wanted = set(pairs)
    return [e for e in old.get("objects", []) if (e.get("id"), e.get("view")) in wanted]
