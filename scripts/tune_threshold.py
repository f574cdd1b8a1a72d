"""Pick a model's mesh iso-level (`inference.mesh_threshold`) on a dataset's validation split.

    python scripts/tune_threshold.py MODEL --data DATASET [--split val] [--objects 24]
                                     [--criterion fscore|silhouette] [--write]

For each object the model reconstructs from view 0; for each candidate level the mesh is
extracted and scored two ways:
- silhouette: rasterised from ring views, IoU with the ring's alpha (at 0.5);
- fscore: F@0.1 against the object's ground-truth surface points (the 8,192 of samples.npz, which
  `lrm data render` stores for every split; validation objects have no mesh.ply), with the
  evaluation protocol of docs/evaluation.md: both point sets normalised to the unit bounding box,
  the prediction aligned by rotation search + ICP. Chamfer distance is shown beside it.
The level with the best mean of the `--criterion` wins; `--write` stores it in MODEL's
config.json (a folder in our format). The test split is never looked at.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import trimesh

from lrm.configs import load_json, save_json
from lrm.data.format import list_objects, object_dir, read_object
from lrm.data.samples import read_samples
from lrm.errors import EmptySurfaceError, LRMError
from lrm.evaluate.align import align_points, normalize_unit_bbox, transformed
from lrm.evaluate.geometry import as_trimesh, chamfer, fscores, nn_distances, sample_surface
from lrm.evaluate.predictors import to_model_frame
from lrm.evaluate.sheet import pick_views
from lrm.mesh.view_render import rasterize
from lrm.model.lrm import CONFIG_NAME, LRMConfig
from lrm.pipeline import Reconstructor


def level_scores(rec: Reconstructor, dataset: Path, object_id: str, levels: list[float], resolution: int,
                 views: int, size: int, points: int = 8192) -> list[tuple[float, float, float]]:
    """-> per level (silhouette IoU, F@0.1, Chamfer); an empty surface scores (0, 0, inf)."""
    obj = read_object(dataset, object_id, views=[0], ring=True)
    ring = pick_views(len(obj.ring_rgba), views)
    to_model = to_model_frame(obj.c2w[0], rec.inference.front_azimuth)
    c2w = np.einsum("ij,vjk->vik", to_model, obj.ring_c2w[ring].astype(np.float64))
    alpha_gt = [torch.nn.functional.interpolate(torch.from_numpy(a[..., 3].astype(np.float32) / 255)[None, None],
                                                size=(size, size), mode="area")[0, 0].numpy() > 0.5
                for a in obj.ring_rgba[ring]]
    gt = _unit_bbox(read_samples(object_dir(dataset, object_id)).surface_xyz)
    distance = float(np.linalg.norm(obj.c2w[0][:3, 3]))
    planes = rec.reconstruct(obj.rgba[0], remove_bg=False, recenter=False, mesh=False,
                             source_distance=distance).planes
    out = []
    for level in levels:
        try:
            mesh = rec.extract_mesh(planes, resolution, level, target_faces=0)
        except EmptySurfaceError:
            out.append((0.0, 0.0, float("inf")))
            continue
        scores = []
        for k, want in enumerate(alpha_gt):
            _, alpha = rasterize(mesh.vertices, mesh.faces, None, c2w[k], obj.ring_intrinsics[ring][k], size)
            pred = alpha > 0.5
            scores.append((pred & want).sum() / max((pred | want).sum(), 1))
        surface = transformed(as_trimesh(mesh), np.linalg.inv(to_model))  # the dataset's frame
        pred_pts = _unit_bbox(sample_surface(surface, points))
        t = align_points(pred_pts, gt)
        pred_pts = pred_pts @ t[:3, :3].T + t[:3, 3]
        d_pred, d_gt = nn_distances(pred_pts, gt), nn_distances(gt, pred_pts)
        out.append((float(np.mean(scores)), fscores(d_pred, d_gt, (0.1,))[0.1], chamfer(pred_pts, gt)))
    return out


def _unit_bbox(points: np.ndarray) -> np.ndarray:
    """Points [N, 3] normalised as the evaluator normalises meshes (normalize_unit_bbox). -> float64"""
    return np.asarray(normalize_unit_bbox(trimesh.PointCloud(np.asarray(points, np.float64)))[0].vertices)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="model folder (ours), run folder or anything --model accepts")
    p.add_argument("--data", required=True, help="dataset folder (lrm-mv-1)")
    p.add_argument("--split", default="val", help="split to tune on (default: val)")
    p.add_argument("--objects", type=int, default=24, help="objects used, the first N ids (default: 24)")
    p.add_argument("--levels", default="0.5,1,1.5,2,3,4,6,8,12,16,24", type=_floats,
                   help="candidate iso-levels, comma-separated")
    p.add_argument("--resolution", type=int, default=96, help="marching-cubes grid side (default: 96)")
    p.add_argument("--views", type=int, default=4, help="ring views per object (default: 4)")
    p.add_argument("--size", type=int, default=128, help="silhouette side in pixels (default: 128)")
    p.add_argument("--criterion", choices=["fscore", "silhouette"], default="fscore",
                   help="what the best level maximises: F@0.1 against the ground-truth surface points, or the "
                        "ring views' silhouette IoU (default: fscore)")
    p.add_argument("--write", action="store_true", help="write the best level into MODEL/config.json")
    args = p.parse_args(argv)

    try:
        return tune(args)
    except LRMError as exc:
        print(f"tune_threshold: error: {exc}", file=sys.stderr)
        return 2


def tune(args: argparse.Namespace) -> int:
    dataset = Path(args.data)
    cfg_path = Path(args.model) / CONFIG_NAME
    if args.write and not cfg_path.is_file():
        raise LRMError(f"--write needs a model folder in our format; {cfg_path} does not exist")
    ids = list_objects(dataset, args.split)[: args.objects] if dataset.is_dir() else []
    if not ids:
        raise LRMError(f"no objects in split {args.split!r} of {dataset}")
    levels = args.levels
    rec = Reconstructor(args.model, device="cpu", dtype="fp32")
    table = np.array([level_scores(rec, dataset, i, levels, args.resolution, args.views, args.size) for i in ids])
    mean = table.mean(0)  # [levels, (IoU, F@0.1, CD)]
    print("| level | mean silhouette IoU | mean F@0.1 | mean CD |\n|---|---|---|---|")
    for level, (iou, f, cd) in zip(levels, mean):
        print(f"| {level:g} | {iou:.3f} | {f:.3f} | {cd:.4f} |")
    column = 1 if args.criterion == "fscore" else 0
    best = levels[int(mean[:, column].argmax())]
    print(f"best level {best:g} by {args.criterion} over {len(ids)} {args.split} objects "
          f"(IoU {mean[levels.index(best), 0]:.3f}, F@0.1 {mean[levels.index(best), 1]:.3f})")
    if args.write:
        cfg = load_json(LRMConfig, cfg_path)
        cfg.inference.mesh_threshold = best
        save_json(cfg, cfg_path)
        print(f"wrote mesh_threshold = {best:g} to {cfg_path}")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
