"""`lrm fit MESH -o OUT_DIR`: fit an architecture's triplane + field decoder to a coloured mesh.

No image and no encoder: the planes are optimised directly against the mesh's occupancy and
surface colour (see lrm.fitting.fit). Writes OUT_DIR/config.json (the architecture),
OUT_DIR/fit.safetensors (planes + field), OUT_DIR/metrics.json (volume IoU and surface Chamfer
against the normalised input) and OUT_DIR/mesh.ply (the fitted field's mesh, vertex colours).
Use it for realistic benchmark fields and as an upper bound of what a feed-forward model of
that architecture can represent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    from lrm.fitting.fit import FitConfig

    d = FitConfig()
    p = sub.add_parser("fit", help="fit a triplane field to a mesh (benchmark fields, upper bounds)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mesh", metavar="MESH", help="a closed mesh trimesh can read (obj, glb, ply, off, stl, dae)")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder (created)")
    p.add_argument("--preset", default="openlrm-base",
                   help="architecture (default: openlrm-base; also openlrm-small/large, triposr, tiny)")
    p.add_argument("--steps", type=int, default=d.steps, metavar="N", help=f"optimisation steps (default: {d.steps})")
    p.add_argument("--points", type=int, default=d.points, metavar="N",
                   help=f"sample points per step (default: {d.points})")
    p.add_argument("--extent", type=float, default=d.extent, metavar="F",
                   help=f"object half-extent / field radius (default: {d.extent})")
    p.add_argument("--voxels", type=int, default=d.voxels, metavar="N",
                   help=f"occupancy label grid side (default: {d.voxels})")
    p.add_argument("--eval-resolution", type=int, default=192, metavar="N",
                   help="grid side for the IoU and the output mesh (default: 192)")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default: {d.seed})")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads (default: the free physical cores, see lrm.device.configure_threads)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from lrm.device import configure_threads
    from lrm.errors import LRMError
    from lrm.fitting.fit import FitConfig, fit_field, fit_metrics, save_fit
    from lrm.fitting.targets import load_mesh
    from lrm.model.presets import PRESETS

    if args.preset not in PRESETS:
        raise LRMError(f"unknown preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    checks = [(args.steps >= 1, "--steps must be >= 1"), (args.points >= 64, "--points must be >= 64"),
              (0 < args.extent <= 1, "--extent must be in (0, 1]"), (args.voxels >= 16, "--voxels must be >= 16"),
              (args.eval_resolution >= 16, "--eval-resolution must be >= 16")]
    for ok, msg in checks:
        if not ok:
            raise LRMError(msg)
    mesh = load_mesh(args.mesh)
    out = Path(args.output)
    configure_threads(args.threads)
    cfg = PRESETS[args.preset]()
    fit = FitConfig(steps=args.steps, points=args.points, extent=args.extent, voxels=args.voxels, seed=args.seed)
    t0 = time.perf_counter()
    field, planes, normalised = fit_field(mesh, cfg, fit, log=lambda s: print(s, file=sys.stderr))
    seconds = time.perf_counter() - t0
    metrics, fitted = fit_metrics(field, planes, normalised, cfg.inference.mesh_threshold, args.eval_resolution)
    metrics.update({"steps": args.steps, "points": args.points, "seconds": round(seconds, 2),
                    "threads": torch.get_num_threads(), "preset": args.preset})
    save_fit(out, cfg, field, planes, metrics)
    tmp = out / "mesh.ply.tmp"
    fitted.export(tmp, file_type="ply")
    tmp.replace(out / "mesh.ply")
    print(f"fitted {args.preset} in {seconds:.1f}s: IoU {metrics['iou']:.4f}, Chamfer {metrics['chamfer']:.5f} "
          f"-> {out}", file=sys.stderr)
    return 0
