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
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lrm.demo import DemoSession, build_ui
    from lrm.pipeline import Reconstructor

    ui = build_ui(DemoSession(Reconstructor(args.model, device=args.device, dtype=args.dtype)))
    ui.queue(max_size=4).launch(server_name="0.0.0.0" if args.listen else "127.0.0.1",
                                server_port=args.port, share=args.share)
    return 0
