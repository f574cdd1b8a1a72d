"""Training throughput (samples/s) of a preset on this machine, for several recipes.

    python benchmarks/bench_train.py [--preset tiny] [--steps 6] [--warmup 2] [--threads 2]

Runs the real trainer (`lrm.train.loop.train`) for a few steps on a generated dataset of
analytic objects rendered at 256 px, and prints one row per recipe. The first `--warmup`
steps are not timed. One process. Besides wall-clock samples/s it reports the process's CPU
seconds per sample, which a busy shared machine inflates much less: `threads / CPU s` is the
rate on an idle machine if every thread were kept busy (an upper bound). Compare rows of one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lrm.train.config import resolve  # noqa: E402
from lrm.train.loop import train  # noqa: E402
from lrm.train.synthetic import write_synthetic  # noqa: E402

# name -> overrides of the base recipe (1 + 3 views, 128-256 full resolution, no point samples)
_POINTS = {"data": {"region": 32, "render_low": 32, "render_high": 32, "side_views": 1,
                    "occupancy_points": 2048, "surface_points": 1024},
           "loss": {"occupancy": 1.0, "surface_rgb": 1.0, "mask": 0.5}, "render_samples": 16,
           "render_importance": 16}
RECIPES = {
    "1+3 views, 64² crops, 32+32 samples": {},
    "1+3 views, 32² crops, 32+32 samples": {"data": {"region": 32}},
    "1+3 views, 32² crops, 24+24 samples (old bundled recipe)": {
        "data": {"region": 32}, "render_samples": 24, "render_importance": 24},
    "1+3 views, 32² crops, 32+32, bf16 autocast": {"data": {"region": 32}, "mixed_precision": "bf16"},
    "1+3 views, 32² crops, 32+32, grad checkpointing": {"data": {"region": 32}, "grad_checkpointing": True},
    "points: 1+1 full 32² views, 16+16, 2048+1024 points (configs/tiny-points.toml)": _POINTS,
    "points: input view only, full 32², 16+16, 2048+1024 points": {
        **_POINTS, "data": {**_POINTS["data"], "side_views": 0}},
    "points: input view only, as above + lift of 8 samples (configs/tiny-lift.toml)": {
        **_POINTS, "data": {**_POINTS["data"], "side_views": 0}, "model": {"lift": {"samples": 8}}},
    "points: 1+1 full 32² views, 16+16, 2048+1024 points, bf16 autocast": {**_POINTS, "mixed_precision": "bf16"},
    "points only: 2048+1024 points, no render loss": {
        **_POINTS, "data": {**_POINTS["data"], "side_views": 0, "region": 1, "render_low": 1, "render_high": 1},
        "loss": {**_POINTS["loss"], "mse": 0.0, "mask": 0.0}},
}


def run(root: Path, out: Path, preset: str, batch: int, steps: int, warmup: int, overrides: dict
        ) -> tuple[float, float]:
    """Train `warmup` steps, then resume and time the remaining ones (the first recipe's defaults
    merged with `overrides`, one level deep).
    Returns (samples per wall second, process CPU seconds per sample)."""
    base = {
        "preset": preset, "steps": steps, "batch_size": batch, "checkpoint_every": 10**9, "val_every": 0,
        "log_every": 1, "mixed_precision": "no", "run_dir": str(out), "loss": {"lpips": 0.0},
        "data": {"root": str(root), "render_low": 128, "render_high": 256, "region": 64, "side_views": 3},
    }
    for k, v in overrides.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(resolve(base), progress=False, max_steps=warmup)
        wall, cpu = time.perf_counter(), time.process_time()
        train(resolve(base), resume="auto", progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    samples = (steps - warmup) * batch
    return samples / wall, cpu / samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", help="model preset (default: tiny)")
    ap.add_argument("--batch", type=int, default=4, help="samples per step (default: 4)")
    ap.add_argument("--steps", type=int, default=6, help="steps per recipe (default: 6)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps (default: 2)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per process (default: 1, the most efficient per core; "
                         "run one process per core with DDP)")
    ap.add_argument("--only", default="", help="run recipes whose name contains this (default: all)")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)  # internal: DATA:OUT:RECIPE
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:  # one recipe in a fresh process (accelerate's state is per process)
        data, out, index = args.child.split(":")
        over = list(RECIPES.values())[int(index)]
        print(*run(Path(data), Path(out), args.preset, args.batch, args.steps, args.warmup, over))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic(Path(tmp) / "data", objects=8, views=8, size=256, val=0, points=True)
        print(f"preset {args.preset}, batch {args.batch}, {args.threads} threads, "
              f"bf16 fast path: {torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()}")
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        print("| recipe | samples/s (wall) | CPU s/sample | samples/s, idle machine (est.) | rel. |\n"
              "|---|---|---|---|---|", flush=True)
        first = None
        for i, name in enumerate(RECIPES):
            if args.only and args.only not in name:
                continue
            t = time.perf_counter()
            child = [sys.executable, __file__, "--preset", args.preset, "--batch", str(args.batch),
                     "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
                     "--child", f"{root}:{Path(tmp) / f'run{i}'}:{i}"]
            rate, cpu = map(float, subprocess.run(child, check=True, capture_output=True,
                                                  text=True).stdout.split()[-2:])
            idle = args.threads / cpu  # per process on an idle machine, if every thread stays busy
            first = first or idle
            print(f"| {name} | {rate:.3f} | {cpu:.2f} | {idle:.3f} | {idle / first:.2f} | "
                  f"(wall {time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
