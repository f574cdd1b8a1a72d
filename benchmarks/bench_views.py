"""Several-views benchmark: an InstantMesh-architecture model fed V = 1, 2, 6 posed views.

    python benchmarks/bench_views.py                         # instant-nerf-base, V = 1, 2, 6
    python benchmarks/bench_views.py --preset instant-nerf-large --views 1 6 --mesh-resolution 128

Random weights of the preset's exact architecture (the hub file is not needed: the cost does not
depend on the weight values), grey views on the Zero123++ v1.2 rig. Per V: the encode
(`Reconstructor.reconstruct_views(..., mesh=False)`: the ViT over every view, then the
triplane transformer cross-attending to all V x tokens), and, with --mesh-resolution, the
mesh (iso-level at the random field's median density). Each row's encode time relative to V = 1, and per view. The CPU, threads and load are
printed: compare rows of one run, the machines are shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lrm import cameras  # noqa: E402
from lrm.device import configure_threads  # noqa: E402
from lrm.model.lrm import LRM  # noqa: E402
from lrm.model.presets import PRESETS  # noqa: E402
from lrm.pipeline import Reconstructor  # noqa: E402
from lrm.probe import cpu_name  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="instant-nerf-base", choices=[n for n in PRESETS if n.startswith("instant")])
    ap.add_argument("--views", type=int, nargs="+", default=[1, 2, 6])
    ap.add_argument("--mesh-resolution", type=int, default=0, help="also time the mesh at this grid side (0: no)")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per row (the best is kept)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    configure_threads(args.threads)
    torch.manual_seed(0)
    cfg = PRESETS[args.preset]()
    model = LRM(cfg).eval()
    rec = Reconstructor(model, device="cpu", dtype="fp32")
    size = cfg.inference.source_size
    rig = cameras.zero123pp_cameras()
    images = [np.full((size, size, 3), 0.5 + 0.05 * k, np.float32) for k in range(6)]
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} thread(s), load {os.getloadavg()[0]:.2f}; "
          f"{args.preset} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, random "
          f"weights), views {size}², fp32")
    rec.reconstruct_views(images[:1], rig[:1], mesh=False)  # warm-up
    mesh_col = f" | mesh {args.mesh_resolution}³ s" if args.mesh_resolution else ""
    print(f"| V | encode s | per view s | vs V = 1{mesh_col} |\n|---|---|---|---{'|---' if mesh_col else ''}|")
    base = None
    for v in args.views:
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            result = rec.reconstruct_views(images[:v], rig[:v], mesh=False)
            best = min(best, time.perf_counter() - t)
        base = base or best
        row = f"| {v} | {best:.2f} | {best / v:.2f} | {best / base:.2f}x"
        if args.mesh_resolution:
            # random weights: an iso-level at the field's median density gives a surface to mesh
            level = float(rec.density_fn(result.planes)(torch.rand(4096, 3) * 2 - 1).median())
            t = time.perf_counter()
            rec.extract_mesh(result.planes, args.mesh_resolution, level)
            row += f" | {time.perf_counter() - t:.2f}"
        print(row + " |")


if __name__ == "__main__":
    main()
