"""Dataset rendering throughput: objects/s at 256² and 512², 32 random views (+ optional ring).

    python benchmarks/bench_data.py [--objects 24] [--workers 1 2] [--ring 0]

Renders a fixed sample of real assets (0ad + kicad + redeclipse-nieb, if fetched with
`lrm data fetch`; otherwise textured trimesh primitives) end to end: load, normalise, render,
PNG-encode and write, through the same `lrm.data.build.build` that `lrm data render` uses.
Timing on a shared machine is noisy: compare rows of one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from lrm.data.build import BuildConfig, build  # noqa: E402
from lrm.data.views import ViewConfig  # noqa: E402


def sample_assets(n: int):
    from lrm.data.sources import SourceOptions, resolve
    from lrm.errors import LRMError

    try:
        per = max(1, n // 3)
        found = [a for s in ("0ad", "kicad", "redeclipse-nieb") for a in resolve(s, SourceOptions(limit=per))]
        return found[:n], "real (0ad, kicad, redeclipse-nieb)"
    except LRMError:
        return synthetic_assets(n), "synthetic (textured trimesh primitives)"


def synthetic_assets(n: int, folder: str | None = None):
    import trimesh
    from PIL import Image

    from lrm.data.sources import folder as folder_source

    folder = folder or tempfile.mkdtemp(prefix="lrm-bench-meshes-")
    rng = np.random.default_rng(0)
    for i in range(n):
        mesh = [trimesh.creation.icosphere(3), trimesh.creation.box(), trimesh.creation.cylinder(0.5, 2.0, 48)][i % 3]
        tex = Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
        uv = rng.random((len(mesh.vertices), 2))
        mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=tex)
        mesh.export(f"{folder}/obj{i:03d}.glb")
    return folder_source.assets(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=24, help="objects per measurement (default: 24)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default: 1 2)")
    ap.add_argument("--resolutions", type=int, nargs="+", default=[256, 512], help="(default: 256 512)")
    ap.add_argument("--ring", type=int, default=0, help="ring views in addition to the 32 (default: 0)")
    args = ap.parse_args()
    assets, kind = sample_assets(args.objects)
    print(f"# {len(assets)} objects, {kind}; {os.cpu_count()} CPUs; 32 views + {args.ring} ring views")
    print("| resolution | workers | objects/s | s/object | ms/view (wall) |")
    print("|---|---|---|---|---|")
    for res in args.resolutions:
        for workers in args.workers:
            out = tempfile.mkdtemp(prefix="lrm-bench-ds-")
            cfg = BuildConfig(resolution=res, views=ViewConfig(views=32, ring=args.ring))
            start = time.time()
            stats = build(assets, out, cfg, workers=workers, progress=False)
            wall = time.time() - start
            shutil.rmtree(out, ignore_errors=True)
            ok = max(stats["ok"], 1)
            print(f"| {res} | {workers} | {ok / wall:.2f} | {wall / ok:.3f} | "
                  f"{1000 * wall / ok / (32 + args.ring):.1f} |", flush=True)


if __name__ == "__main__":
    main()
