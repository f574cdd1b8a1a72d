"""What each CPU optimisation gives, one at a time, measured in one run (docs/performance.md).

    python benchmarks/bench_components.py [--threads 2] [--fit FIT_DIR]

Rows: field query (reference grid_sample + MLP vs FoldedField, with and without the fused
oneDNN MLP), rendering a 256² view of a fitted field (reference, folded, folded + skipping),
a transformer-sized Linear (fp32 vs int8), self-attention over 3072 tokens (strided vs
contiguous heads), a 37 MB elementwise op (default glibc malloc vs configure_allocator, in two
processes). Best of a few repeats; ratios are within this run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def best(fn, reps: int = 3) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def row(name: str, slow: float, fast: float, unit: str = "s") -> None:
    print(f"| {name} | {slow:.3f} {unit} | {fast:.3f} {unit} | {slow / fast:.1f}× |", flush=True)


def alloc_probe() -> None:
    """Child: time torch.empty(37 MB).fill_ with or without configure_allocator."""
    if os.environ.get("LRM_ALLOC") == "1":
        from lrm.device import configure_allocator

        configure_allocator()
    torch.set_num_threads(1)
    print(best(lambda: torch.empty(3072, 3072).fill_(1.0), 10))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fit", default="/tmp/lrm-bench/fit-base", help="`lrm fit --preset openlrm-base` output")
    p.add_argument("--alloc-probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.alloc_probe:
        return alloc_probe()

    from einops import rearrange

    from lrm import cameras
    from lrm.device import configure_allocator
    from lrm.fitting.fit import load_fit
    from lrm.model.fastfield import FoldedField
    from lrm.model.quant import Int8Linear
    from lrm.render.occupancy import occupancy_grid, skip_threshold
    from lrm.render.rays import camera_rays
    from lrm.render.renderer import render_rays
    from lrm.render.skipping import render_rays_skipping

    configure_allocator()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, load average {os.getloadavg()[0]:.1f}\n")
    print("| what | before | after | gain |\n|---|---|---|---|")
    cfg, field, planes = load_fit(args.fit)
    xyz = (torch.rand(1, 262144, 3) * 2 - 1) * cfg.field.radius
    folded = FoldedField(field, planes)
    unfused = FoldedField(field, planes)
    unfused.fused = None
    with torch.inference_mode():
        ref = best(lambda: field(planes, xyz))
        row("field query, 262k points (grid_sample + MLP -> FoldedField)", ref, best(lambda: folded(xyz)))
        row("FoldedField MLP: addmm -> fused oneDNN linear+ReLU", best(lambda: unfused(xyz)), best(lambda: folded(xyz)))
        c2w = cameras.orbit_cameras(1, 2.0, cfg.inference.view_elevation, -60.0)
        o, d = camera_rays(c2w, cameras.intrinsics(0.75, 1), 256)
        reference = best(lambda: render_rays(lambda x: field(planes, x), field.density, o, d, 1.0, cfg.render), 1)
        plain = best(lambda: render_rays(folded, field.density, o, d, 1.0, cfg.render), 1)
        grid = occupancy_grid(lambda x: field.density(folded(x[None])[0][0]), cfg.field.radius, 64,
                              skip_threshold(cfg.render))
        skipping = best(lambda: render_rays_skipping(folded, field.density, o, d, 1.0, cfg.render, grid), 1)
        row("256² view: reference field -> FoldedField", reference, plain)
        row(f"256² view: + empty-space skipping ({100 * grid.fraction():.0f}% cells occupied)", plain, skipping)
        lin = torch.nn.Linear(768, 3072)
        x = torch.randn(1, 3072, 768)
        q = Int8Linear(lin)
        row("Linear 3072x768 -> 3072 tokens: fp32 -> int8 (W8A8, torch._int_mm)", best(lambda: lin(x)), best(lambda: q(x)))
        qkv = torch.randn(1, 3072, 3 * 768)
        heads = [rearrange(t, "b l (h d) -> b h l d", h=12) for t in qkv.chunk(3, -1)]
        row("SDPA 12 heads x 3072 tokens: strided -> contiguous heads",
            best(lambda: F.scaled_dot_product_attention(*heads)),
            best(lambda: F.scaled_dot_product_attention(*(h.contiguous() for h in heads))))
    probe = [sys.executable, __file__, "--alloc-probe"]
    slow = float(subprocess.run(probe, capture_output=True, text=True, env={**os.environ, "LRM_ALLOC": "0"}).stdout)
    fast = float(subprocess.run(probe, capture_output=True, text=True, env={**os.environ, "LRM_ALLOC": "1"}).stdout)
    row("new 37 MB tensor + fill: glibc default -> configure_allocator", slow * 1e3, fast * 1e3, "ms")
    print(f"\nload average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
