"""Turntable benchmark: the bundled model's 60-frame turntable of an example photo, by frame size.

    python benchmarks/bench_turntable.py                       # 128 (the model's render size) and 256
    python benchmarks/bench_turntable.py --sizes 256 --frames 60 --exact

Renders the orbit `lrm reconstruct --video` writes (Reconstructor.turntable; video encoding not
included) from the reconstruction's coloured mesh (rasterised: `--video-source mesh`, the
default, with 2 x 2 samples per pixel; also timed with 1), from the field in the fast mode (empty-space skipping: `--video-source field`) and,
with --exact, in the exact one, one after the other in this process. Wall seconds per turntable
and per frame, and each row's time relative to the mesh row of the same size. The CPU and the load average are printed: compare rows of
one run, the machines are shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lrm.device import configure_threads  # noqa: E402
from lrm.pipeline import Reconstructor  # noqa: E402
from lrm.probe import cpu_name  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "chair_office.png"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--image", default=str(EXAMPLE))
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--sizes", default="128,256")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--exact", action="store_true", help="also time the exact renderer")
    args = ap.parse_args()
    configure_threads(args.threads)
    import torch

    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} thread(s), load {os.getloadavg()[0]:.2f}")
    modes = ["mesh", "mesh, 2x2 samples", "fast", "exact"] if args.exact else ["mesh", "mesh, 2x2 samples", "fast"]
    print("| source | size | frames | turntable s | s/frame | vs mesh |\n|---|---|---|---|---|---|")
    recs = {mode: Reconstructor(args.model, device="cpu", dtype="fp32", exact=mode == "exact") for mode in modes}
    samples = {"mesh": 1, "mesh, 2x2 samples": 2}
    result = recs["mesh"].reconstruct(args.image)
    print(f"mesh: {len(result.mesh.faces)} faces")
    for rec in recs.values():
        rec.turntable(result.planes, 2, 64)  # warm-up
    for size in map(int, args.sizes.split(",")):
        base = None
        for mode, rec in recs.items():
            t = time.perf_counter()
            rec.turntable(result.planes, args.frames, size, mesh=result.mesh if mode in samples else None,
                          supersample=samples.get(mode, 1))
            took = time.perf_counter() - t
            base = base or took
            name = mode if mode in samples else f"field, {mode}"
            print(f"| {name} | {size} | {args.frames} | {took:.2f} | {took / args.frames:.3f} | {took / base:.2f}x |")

if __name__ == "__main__":
    main()
