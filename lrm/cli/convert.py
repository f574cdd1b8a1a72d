"""`lrm convert SRC DST`: write a model once in our format (config.json + model.safetensors).

SRC is anything `--model` accepts: an alias (`openlrm-mix-base`, `triposr`), a hub id, or a
local folder in OpenLRM's, TripoSR's or our layout. Upstream layouts are converted strictly
(every key accounted for); the result loads without conversion and without unpickling.
DST is written atomically (a temporary folder renamed into place).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from lrm.errors import LRMError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "convert", help="convert published weights (OpenLRM, TripoSR) to lrm's format",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", help="alias, hub id or folder (OpenLRM, TripoSR or lrm layout)")
    p.add_argument("dst", help="output folder (must not exist unless --force)")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32",
                   help="stored precision (default: float32, as published)")
    p.add_argument("--force", action="store_true", help="replace DST if it exists (default: refuse)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from lrm.hub import load_model

    dst = Path(args.dst).expanduser()
    if dst.exists() and not args.force:
        raise LRMError(f"{dst} exists; pass --force to replace it")
    if dst.exists() and not dst.is_dir():
        raise LRMError(f"{dst} exists and is not a folder")
    if not dst.parent.is_dir():
        raise LRMError(f"{dst.parent}: no such folder")
    t0 = time.perf_counter()
    model = load_model(args.src)
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    old = dst.parent / f".{dst.name}.old-{os.getpid()}"
    try:
        model.save_pretrained(tmp, dtype=DTYPES[args.dtype])
        if dst.exists():
            dst.rename(old)
        tmp.rename(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {dst} ({model.cfg.name}: {n:,} parameters, {args.dtype}, licence {model.cfg.license or '?'}) "
          f"in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0
