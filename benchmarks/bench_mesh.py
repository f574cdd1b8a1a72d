"""Mesh extraction benchmark: dense reference vs coarse-to-fine sparse, same run.

    python benchmarks/bench_mesh.py                          # analytic + openlrm-base field, 256 and 384
    python benchmarks/bench_mesh.py --fields lrm --resolutions 384 --no-dense
    python benchmarks/bench_mesh.py --fields rough --resolutions 128 384 --repeat 1   # the worst case

Fields: `analytic` (a smooth ball + torus, cheap to query: shows the bookkeeping cost),
`lrm` (the openlrm-base decoder with planes fitted to an object, see mesh_field.py; the first
run fits it, a few minutes, then it is cached) and `rough` (the same decoder with random weights
on random planes: noise at every scale, the worst case; the sparse pass detects it and goes
dense, the method column says `sparse->dense`). For each resolution the table gives the grid
points queried, wall time of the density stage (queries + refinement bookkeeping), marching
cubes (+ stitching), vertex colours, total, faces, and whether the sparse mesh equals the
dense one. Timings on a shared machine are noisy: compare rows of one run; load is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lrm.mesh.extract import ExtractStats, extract_mesh  # noqa: E402
from lrm.mesh.sparse import SparseConfig  # noqa: E402
from lrm.mesh.types import canonical  # noqa: E402


def analytic_fields():
    def density(p: torch.Tensor) -> torch.Tensor:
        ball = (p - torch.tensor([0.1, -0.05, 0.0])).norm(dim=-1) - 0.45
        q = torch.stack([p[:, :2].norm(dim=-1) - 0.6, p[:, 2] - 0.3], -1).norm(dim=-1) - 0.08
        return 30 * torch.sigmoid(-torch.minimum(ball, q) / 0.015)

    def color(p: torch.Tensor) -> torch.Tensor:
        return (p + 1) / 2

    return density, color


def compare(dense, sparse) -> str:
    va, fa = canonical(dense)
    vb, fb = canonical(sparse)
    if fa.shape != fb.shape or va.shape != vb.shape:
        return f"no ({len(fa)} vs {len(fb)} faces)"
    if np.array_equal(va, vb) and np.array_equal(fa, fb):
        return "identical"
    return f"max |dv| {np.abs(va - vb).max():.1e}" if np.array_equal(fa, fb) else "faces differ"


def run(fn, color, res, radius, tau, method, cfg, chunk):
    st = ExtractStats()
    t0 = time.perf_counter()
    mesh = extract_mesh(fn, res, radius, tau, color_fn=color, method=method, sparse=cfg, chunk=chunk, stats=st)
    return mesh, st, time.perf_counter() - t0


def texture_row(mesh, color, faces: int) -> None:
    from lrm.mesh.texel_map import rasterize_uv
    from lrm.mesh.simplify import simplify_mesh
    from lrm.mesh.texture import bake_texture, uv_atlas

    t0 = time.perf_counter()
    small = simplify_mesh(mesh, faces)
    t1 = time.perf_counter()
    vmap, f, uv = uv_atlas(small.vertices, small.faces, 1024, 4)
    t2 = time.perf_counter()
    rasterize_uv(uv, f, 1024)
    t3 = time.perf_counter()
    bake_texture(small, color, resolution=1024, max_faces=None)
    t4 = time.perf_counter()
    print(f"texture: {len(mesh.faces):,d} -> {len(small.faces):,d} faces: simplify {t1 - t0:.2f} s, xatlas {t2 - t1:.2f} s, "
          f"rasterise 1024² {t3 - t2:.2f} s; whole bake_texture (xatlas again + colours + dilation) {t4 - t3:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fields", default="analytic,lrm",
                    help="comma list of analytic, lrm, rough (random decoder and planes: the worst case) "
                         "(default: analytic,lrm)")
    ap.add_argument("--resolutions", type=int, nargs="+", default=[256, 384], help="grid sides (default: 256 384)")
    ap.add_argument("--no-dense", action="store_true", help="skip the dense reference (default: run it)")
    ap.add_argument("--repeat", type=int, default=2, help="sparse runs per row, best kept (default: 2)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    ap.add_argument("--chunk", type=int, default=2 ** 18, help="points per query (default: 2**18)")
    ap.add_argument("--preset", default="openlrm-base", help="decoder preset of the lrm field (default: openlrm-base)")
    ap.add_argument("--margin", type=float, default=SparseConfig.margin, help="sparse margin (default: %(default)s)")
    ap.add_argument("--fine-margin", type=float, default=SparseConfig.fine_margin,
                    help="sparse margin at the finest level (default: %(default)s)")
    ap.add_argument("--texture", type=int, default=0, metavar="FACES",
                    help="also bake a 1024² texture on the last sparse mesh simplified to FACES faces (default: 0, off)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import mcubes  # noqa: F401  (its first import pulls scipy: keep it out of the timings)

    cfg = SparseConfig(margin=args.margin, fine_margin=args.fine_margin)
    fields = {}
    for name in args.fields.split(","):
        if name == "analytic":
            fields[name] = (*analytic_fields(), 1.0, 3.0)
        elif name == "lrm":
            from mesh_field import field_functions, load_or_fit

            field, planes = load_or_fit(args.preset)
            fields[name] = (*field_functions(field, planes), field.cfg.radius, 3.0)
        elif name == "rough":  # the worst case: the preset's decoder, random weights, random planes
            from mesh_field import field_functions

            from lrm.model.field import Field
            from lrm.model.presets import PRESETS

            torch.manual_seed(0)
            fcfg = PRESETS[args.preset]().field
            field = Field(fcfg).eval()
            planes = torch.randn(1, 3, fcfg.channels, 64, 64)
            density, color = field_functions(field, planes)
            with torch.no_grad():
                tau = float(torch.quantile(density(torch.rand(8192, 3) * 2 - 1), 0.7))
            fields[name] = (density, color, fcfg.radius, tau)
        else:
            raise SystemExit(f"unknown field {name!r}")

    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; torch threads {args.threads}; "
          f"sparse {cfg}")
    head = f"{'field':9s} {'method':13s} {'res':>4s} {'points':>11s} {'density s':>9s} {'march s':>8s} " \
           f"{'colour s':>8s} {'total s':>8s} {'faces':>8s}  same as dense"
    print(head + "\n" + "-" * len(head))
    for name, (fn, color, radius, tau) in fields.items():
        for res in args.resolutions:
            dense = None
            rows = []
            if not args.no_dense:
                dense, st, total = run(fn, color, res, radius, tau, "dense", cfg, args.chunk)
                rows.append(("dense", st, total, "-"))
            best = None
            for _ in range(args.repeat):
                mesh, st, total = run(fn, color, res, radius, tau, "sparse", cfg, args.chunk)
                if best is None or total < best[2]:
                    best = (mesh, st, total)
            mesh, st, total = best
            rows.append((st.method, st, total, compare(dense, mesh) if dense is not None else "(not run)"))
            for method, st, total, same in rows:
                print(f"{name:9s} {method:13s} {res:4d} {st.points:11,d} {st.density_s:9.2f} {st.marching_s:8.2f} "
                      f"{st.colors_s:8.2f} {total:8.2f} {st.faces:8,d}  {same}")
            if dense is not None:
                d, s = rows[0], rows[1]
                print(f"{'':9s} {'ratio':13s} {res:4d} {d[1].points / s[1].points:10.1f}x {d[1].density_s / s[1].density_s:8.1f}x "
                      f"{d[1].marching_s / max(s[1].marching_s, 1e-9):7.1f}x {'':8s} {d[2] / s[2]:7.1f}x")
            print(f"{'':9s} sparse detail: {st.detail}")
            last = (mesh, color)
    if args.texture:
        texture_row(*last, args.texture)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
