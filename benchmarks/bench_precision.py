"""Precision benchmark: image -> triplane under each --dtype, against the machine's matmul limit.

    python benchmarks/bench_precision.py                      # openlrm-base, triposr, tiny
    python benchmarks/bench_precision.py --archs tiny --reps 5

For every architecture (random weights: the forward's cost does not depend on their values) the
forward pass runs under fp32, bf16, int8 and auto, in one process, interleaved over --reps rounds
(the machine is shared and noisy: compare within one run; the best round is reported). The
table names the CPU, the matmul peaks measured in the same run, what the probe (lrm.probe) chose
for "auto", and each mode's time over the float-matmul limit: the forward's FLOPs at the best of
the fp32 and bf16 peaks. A mode the probe measured more than 10x slower than fp32 is skipped
(it would take minutes on openlrm-base) unless --all is given.

Another CPU's kernel landscape can be approximated on this one by lowering the instruction sets
torch and oneDNN dispatch to (the probe caches such runs separately):

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        python benchmarks/bench_precision.py --archs tiny,openlrm-base --all
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, os.environ.get("LRM_BENCH_ROOT", str(Path(__file__).resolve().parents[1])))

from bench_inference import forward_flops, matmul_peak  # noqa: E402

ARCHS = ("openlrm-base", "triposr", "tiny")
MODES = ("fp32", "bf16", "int8", "auto")


def build(name: str):
    from lrm.model.lrm import LRM
    from lrm.model.presets import PRESETS

    torch.manual_seed(0)
    return LRM(PRESETS[name]()).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default=",".join(ARCHS), help="comma list of presets (default: %(default)s)")
    p.add_argument("--reps", type=int, default=3, help="interleaved rounds per mode (default: 3)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: lrm's choice)")
    p.add_argument("--all", action="store_true", help="also run modes the probe measured > 10x slower")
    args = p.parse_args()

    from lrm import probe
    from lrm.device import configure_threads
    from lrm.pipeline import Reconstructor

    threads = configure_threads(args.threads)
    peaks = {name: matmul_peak(dt) for name, dt in
             (("fp32", torch.float32), ("bf16", torch.bfloat16), ("int8", torch.int8))}
    limit = max(peaks["fp32"], peaks["bf16"])
    print(f"CPU: {probe.cpu_name()}; kernels {probe.kernel_isa()}; torch {torch.__version__}; {threads} thread(s); "
          f"load average {os.getloadavg()[0]:.2f}")
    print("matmul peaks (2048³): " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()) + " GFLOP/s\n")
    print("| model | forward GFLOP | probe (GFLOP/s at its MLP shape) | auto → | "
          + " | ".join(f"{m} s" for m in MODES) + " | auto / fp32 | auto / float limit |")
    print("|---|---|---|---|" + "---|" * len(MODES) + "---|---|")
    for arch in args.archs.split(","):
        base = build(arch)
        side = base.cfg.inference.source_size
        flops = forward_flops(base.cfg, side)
        result = probe.probe(probe.model_shape(base.cfg.transformer))
        recs = {}
        for mode in MODES:
            if not args.all and mode in ("bf16", "int8") and 0 < result.rates[mode] < 0.1 * result.rates["fp32"]:
                continue
            recs[mode] = Reconstructor(copy.deepcopy(base), device="cpu", dtype=mode)  # int8 quantises a copy
        image = torch.rand(side, side, 3).numpy()
        best = {m: float("inf") for m in recs}
        for _ in range(args.reps):
            for mode, rec in recs.items():
                t0 = time.perf_counter()
                rec.encode(image)
                best[mode] = min(best[mode], time.perf_counter() - t0)
        chosen = str(recs["auto"].compute_dtype).removeprefix("torch.").replace("float32", "fp32").replace(
            "bfloat16", "bf16")
        cells = [f"{best[m]:.2f}" if m in best else "skipped" for m in MODES]
        ideal = flops / (limit * 1e9)
        print(f"| {arch} | {flops / 1e9:.1f} | {result.describe().split(': ', 1)[1]} | {chosen} | "
              + " | ".join(cells) + f" | {best['auto'] / best['fp32']:.2f} | {best['auto'] / ideal:.1f}× |", flush=True)


if __name__ == "__main__":
    main()
