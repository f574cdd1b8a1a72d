"""`lrm evaluate --data DATASET -o REPORT_DIR`: reconstruct each held-out object from its input
view and compare with the ground truth (novel views: PSNR, SSIM, LPIPS; geometry: Chamfer,
F-score, volume IoU; timings). Writes REPORT_DIR/metrics.json, summary.md, sheets/<id>.png and
meshes/<id>.ply. `lrm evaluate --compare A B` puts two reports side by side.
The protocol is documented in docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from lrm.errors import LRMError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model on a dataset's held-out objects",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", metavar="DATASET", help="an lrm-mv-1 dataset folder (required unless --compare)")
    p.add_argument("-o", "--output", metavar="REPORT_DIR",
                   help="report folder (required unless --compare; with --compare: also write compare.md there)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--model", default="default",
                     help="bundled 'default', an alias (openlrm-mix-base, triposr, ...), a hub id, a local "
                          "folder or random:<preset> (default: default)")
    who.add_argument("--baseline", choices=["sphere"], default=None,
                     help="evaluate a baseline instead of a model (default: none)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two report folders and exit")
    p.add_argument("--split", default="test", help="dataset split (default: test)")
    p.add_argument("--views", type=int, nargs="+", default=[0], metavar="K",
                   help="input view indices; each is reconstructed from separately (default: 0, the front view)")
    p.add_argument("--align", choices=["icp", "none"], default="icp",
                   help="after unit-bbox normalisation: rotation search + ICP, or nothing (default: icp)")
    p.add_argument("--points", type=int, default=10_000, metavar="N",
                   help="surface points per mesh for Chamfer / F-score (default: 10000)")
    p.add_argument("--iou-resolution", type=int, default=64, metavar="N",
                   help="voxels along the longest side for volume IoU (default: 64)")
    p.add_argument("--image-size", type=int, default=None, metavar="PX",
                   help="side of the compared ring views (default: the ring's own resolution)")
    p.add_argument("--ring-views", type=int, default=None, metavar="N",
                   help="compare only N ring views, evenly spread (default: the whole ring)")
    p.add_argument("--sheet-views", type=int, default=4, metavar="N",
                   help="ring views shown per contact sheet (default: 4)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N objects only (default: all)")
    p.add_argument("--objects", nargs="+", default=None, metavar="ID", help="these object ids only (default: all)")
    p.add_argument("--mesh-resolution", type=int, default=None, metavar="N",
                   help="marching-cubes grid side (default: the model's)")
    p.add_argument("--mesh-threshold", type=float, default=None, metavar="T",
                   help="density iso-level (default: the model's)")
    p.add_argument("--render-source", choices=["field", "mesh"], default="field",
                   help="what the novel views show: the field, volume-rendered (the paper's protocol; default), or "
                        "the predicted mesh with its vertex colours, rasterised (what the user downloads)")
    p.add_argument("--vertex-colors", choices=["field", "photo"], default="photo",
                   help="mesh vertex colours: the colour field's, or the input photo's where it sees the mesh "
                        "squarely (as `lrm reconstruct`; default: photo)")
    p.add_argument("--shuffle", action="store_true",
                   help="also score each object against the prediction from another object's input: the "
                        "control that shows whether the output depends on the input (default: off)")
    p.add_argument("--no-meshes", action="store_true", help="do not write predicted meshes (default: write)")
    p.add_argument("--lpips-weights", default="", metavar="DIR",
                   help="folder with vgg16-397923af.pth and LPIPS's vgg.pth (default: look in the torch hub "
                        "cache and an installed lpips package; LPIPS is reported absent if not found)")
    p.add_argument("--seed", type=int, default=0, help="surface sampling seed (default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--dtype", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="model precision (default: fp32, exact)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a report already in REPORT_DIR (default: refuse a finished one, resume an "
                        "unfinished one of the same model, dataset and protocol)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.compare:
        return _compare(args)
    if not args.data or not args.output:
        raise LRMError("--data and -o/--output are required (or use --compare A B)")
    try:
        import scipy  # noqa: F401  (k-d trees, voxel filling)
    except ImportError:
        raise LRMError("lrm evaluate needs scipy: pip install 'lrm[eval]'") from None
    from lrm.evaluate.runner import EvalConfig, evaluate, select_objects

    for name, value in [("--points", args.points), ("--iou-resolution", args.iou_resolution),
                        ("--image-size", args.image_size), ("--sheet-views", args.sheet_views),
                        ("--ring-views", args.ring_views), ("--limit", args.limit)]:
        if value is not None and value < 1:
            raise LRMError(f"{name} must be positive, got {value}")
    if args.mesh_resolution is not None and not 8 <= args.mesh_resolution <= 2048:
        raise LRMError(f"--mesh-resolution must be in [8, 2048], got {args.mesh_resolution}")
    if args.image_size is not None and args.image_size < 11:
        raise LRMError(f"--image-size must be at least 11 (the SSIM window), got {args.image_size}")
    out = Path(args.output)
    from lrm.evaluate.report import read_metrics, unfinished

    resume = (out / "metrics.json").exists() and not args.overwrite
    if resume and (why := unfinished(read_metrics(out))) is None:
        raise LRMError(f"{out} already holds a report (metrics.json); pass --overwrite or choose another folder")
    if resume:
        print(f"resuming the unfinished report in {out} ({why} done)", file=sys.stderr)
    cfg = EvalConfig(split=args.split, views=tuple(args.views), align=args.align, points=args.points,
                     iou_resolution=args.iou_resolution, image_size=args.image_size, ring_views=args.ring_views,
                     sheet_views=args.sheet_views, limit=args.limit,
                     objects=tuple(args.objects) if args.objects else None,
                     save_meshes=not args.no_meshes, seed=args.seed, lpips_weights=args.lpips_weights,
                     shuffle=args.shuffle)
    ids = select_objects(args.data, cfg)  # fail on a bad dataset or view before loading a model
    predictor = _predictor(args)
    print(f"evaluating {predictor.name} on {len(ids)} objects x {len(cfg.views)} view(s) of "
          f"{args.data} ({cfg.split})", file=sys.stderr)
    command = "lrm evaluate " + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["evaluate"] else [])
    result = evaluate(predictor, args.data, out, cfg, command=command.strip(), progress=_progress, resume=resume)
    if not result["lpips_available"]:
        print("LPIPS absent: no VGG16 + LPIPS head weights found locally (see --lpips-weights)", file=sys.stderr)
    print((out / "summary.md").read_text().split("## Per object")[0].rstrip())
    print(f"\nreport: {out}/ (metrics.json, summary.md, sheets/, meshes/); "
          f"{result['count']['ok']}/{result['count']['entries']} with geometry", file=sys.stderr)
    return 0


def _predictor(args: argparse.Namespace):
    if args.baseline == "sphere":
        from lrm.evaluate.baselines import SphereBaseline

        return SphereBaseline()
    from lrm.evaluate.predictors import ModelPredictor
    from lrm.pipeline import Reconstructor

    rec = Reconstructor(args.model, device=args.device, dtype=args.dtype)
    return ModelPredictor(rec, args.mesh_resolution, args.mesh_threshold, photo_colors=args.vertex_colors == "photo",
                          render_source=args.render_source)


def _progress(e: dict) -> None:
    from lrm.evaluate.report import fmt

    if e["status"] == "failed":
        print(f"  {e['id']} (view {e['view']}): failed: {e['error']}", file=sys.stderr)
        return
    total = sum(v for k, v in e["timings"].items() if k != "predict_total")
    print(f"  {e['id']} (view {e['view']}): PSNR {fmt(e['psnr'], 'psnr')}  SSIM {fmt(e['ssim'])}  "
          f"CD {fmt(e['chamfer'], 'chamfer')}  F@0.1 {fmt(e.get('fscore@0.1'))}  IoU {fmt(e['volume_iou'])}  "
          f"input IoU {fmt(e.get('input_iou'))}  "
          f"[{e['status']}] {total:.1f}s", file=sys.stderr)


def _compare(args: argparse.Namespace) -> int:
    from lrm.evaluate.compare import compare_reports
    from lrm.fileio import write_atomic

    text = compare_reports(*args.compare)
    print(text)
    if args.output:
        write_atomic(Path(args.output) / "compare.md", text.encode())
    return 0
