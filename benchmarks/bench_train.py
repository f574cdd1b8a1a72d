"""Training throughput (samples/s) of a preset on this machine, for several recipes.

    python benchmarks/bench_train.py [--preset tiny] [--steps 6] [--warmup 2] [--threads 2]

Runs the real trainer (`lrm.train.loop.train`) for a few steps on a generated dataset of
analytic objects rendered at 256 px, and prints one row per recipe. The first `--warmup`
steps are not timed. One process; the numbers scale with cores, so on a shared machine
compare rows of one run rather than runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
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

# name -> overrides of the base recipe (1 + 3 views, 128-256 full resolution)
RECIPES = {
    "64² crops, 32+32 samples": {},
    "32² crops, 32+32 samples": {"data": {"region": 32}},
    "32² crops, 24+24 samples": {"data": {"region": 32}, "render_samples": 24, "render_importance": 24},
    "32² crops, 24+24, 96-160 res": {"data": {"region": 32, "render_low": 96, "render_high": 160},
                                     "render_samples": 24, "render_importance": 24},
    "32² crops, 32+32, bf16 autocast": {"data": {"region": 32}, "mixed_precision": "bf16"},
    "32² crops, 32+32, grad ckpt": {"data": {"region": 32}, "grad_checkpointing": True},
}


def run(root: Path, out: Path, preset: str, batch: int, steps: int, warmup: int, overrides: dict) -> float:
    base = {
        "preset": preset, "steps": steps, "batch_size": batch, "checkpoint_every": 10**9, "val_every": 0,
        "log_every": 1, "mixed_precision": "no", "run_dir": str(out), "loss": {"lpips": 0.0},
        "data": {"root": str(root), "render_low": 128, "render_high": 256, "region": 64, "side_views": 3},
    }
    for k, v in overrides.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) else v
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(resolve(base), progress=False)
    rates = [json.loads(line)["samples_per_s"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(rates[warmup:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", help="model preset (default: tiny)")
    ap.add_argument("--batch", type=int, default=4, help="samples per step (default: 4)")
    ap.add_argument("--steps", type=int, default=6, help="steps per recipe (default: 6)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps (default: 2)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all)")
    ap.add_argument("--only", default="", help="run recipes whose name contains this (default: all)")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)  # internal: DATA:OUT:RECIPE
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:  # one recipe in a fresh process (accelerate's state is per process)
        data, out, index = args.child.split(":")
        over = list(RECIPES.values())[int(index)]
        print(run(Path(data), Path(out), args.preset, args.batch, args.steps, args.warmup, over))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic(Path(tmp) / "data", objects=8, views=8, size=256, val=0)
        print(f"preset {args.preset}, batch {args.batch}, {args.threads} threads, "
              f"bf16 fast path: {torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()}")
        print("| recipe | samples/s | s/step | rel. |\n|---|---|---|---|", flush=True)
        first = None
        for i, name in enumerate(RECIPES):
            if args.only and args.only not in name:
                continue
            t = time.perf_counter()
            child = [sys.executable, __file__, "--preset", args.preset, "--batch", str(args.batch),
                     "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
                     "--child", f"{root}:{Path(tmp) / f'run{i}'}:{i}"]
            rate = float(subprocess.run(child, check=True, capture_output=True, text=True).stdout.split()[-1])
            first = first or rate
            print(f"| {name} | {rate:.3f} | {args.batch / rate:.2f} | {rate / first:.2f} | "
                  f"(wall {time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
