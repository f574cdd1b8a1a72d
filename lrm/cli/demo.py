"""`lrm demo`: a local web demo (Gradio) on top of the same pipeline as `lrm reconstruct`."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="start a local web demo (needs lrm[demo])", description=__doc__)
    p.add_argument("--model", default="default", help="model name, hub id or folder (default: default)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--dtype", choices=["fp32", "bf16", "auto"], default="auto", help="precision (default: auto)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on (default: 7860)")
    p.add_argument("--listen", action="store_true", help="listen on all interfaces (default: localhost only)")
    p.add_argument("--share", action="store_true", help="create a public Gradio link (default: off)")
    p.add_argument("--max-upload-mb", type=float, default=20.0,
                   help="refuse uploads larger than this many MB (default: 20)")
    p.add_argument("--max-queue", type=int, default=64,
                   help="jobs that may wait in the queue; one runs at a time per model copy (default: 64)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lrm.demo import DemoSession, build_ui, launch
    from lrm.errors import LRMError
    from lrm.pipeline import Reconstructor

    if args.max_upload_mb <= 0 or args.max_queue < 1:
        raise LRMError("--max-upload-mb must be > 0 and --max-queue >= 1")
    if not 0 <= args.port <= 65535:
        raise LRMError(f"--port must be in [0, 65535], got {args.port}")
    ui = build_ui(DemoSession(Reconstructor(args.model, device=args.device, dtype=args.dtype)))
    launch(ui, "0.0.0.0" if args.listen else "127.0.0.1", args.port, args.max_upload_mb, args.max_queue,
           share=args.share)
    return 0
