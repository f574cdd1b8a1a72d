"""`lrm train`: train or fine-tune a model from a config file (see docs/training.md).

Runs as one process (CPU or one GPU) as is, or on several GPUs / nodes under
`accelerate launch -m lrm train ...` with DDP, FSDP or DeepSpeed from accelerate's config.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train or fine-tune a model (accelerate; resumable)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="TOML config (see configs/); required")
    p.add_argument("--resume", default="", metavar="auto|CHECKPOINT",
                   help="continue the run: 'auto' = its newest intact checkpoint (a new run if it has "
                        "none), or a checkpoint folder (default: a new run; refused if the run "
                        "folder already has checkpoints)")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="fine-tune from MODEL: a model folder, run folder, checkpoint or hub id; the "
                        "architecture is MODEL's (default: the config's init, or a new model)")
    p.add_argument("--encoder-init", default=None, metavar="WEIGHTS",
                   help="DINO/DINOv2 weights for a new model's encoder: Meta .pth, HF folder/file or "
                        "hub id (default: the config's encoder_init, or random)")
    p.add_argument("--lpips-weights", default=None, metavar="DIR",
                   help="folder (or hub id) with vgg16-397923af.pth and LPIPS vgg.pth (default: the "
                        "config's loss.lpips_weights, then the torch hub cache and an installed lpips)")
    p.add_argument("--data", default=None, metavar="ROOT", help="dataset folder (default: the config's data.root)")
    p.add_argument("--run-dir", default=None, help="output folder (default: the config's run_dir)")
    p.add_argument("--steps", type=int, default=None, help="total optimizer steps (default: the config's steps)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this step with a checkpoint, keeping the schedule of --steps "
                        "(for time-limited jobs; default: run to the end)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    p.add_argument("--log-with", nargs="*", default=None, metavar="TRACKER",
                   help="experiment trackers, through accelerate: tensorboard, wandb, mlflow; none given = "
                        "metrics.jsonl only (default: the config's log_with, tensorboard)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from lrm.errors import LRMError
    from lrm.train import checkpoint
    from lrm.train.config import load_config
    from lrm.train.loop import train

    cfg = load_config(args.config)
    for flag, attr in (("init", "init"), ("encoder_init", "encoder_init"), ("run_dir", "run_dir"),
                       ("steps", "steps")):
        if getattr(args, flag) is not None:
            setattr(cfg, attr, getattr(args, flag))
    if args.lpips_weights is not None:
        cfg.loss.lpips_weights = args.lpips_weights
    if args.log_with is not None:
        from lrm.train.logger import available_trackers

        cfg.log_with = tuple(args.log_with)
        available_trackers(cfg.log_with)  # refuse an unknown or missing tracker before any work
    if args.data is not None:
        cfg.data.root = args.data
    if not cfg.data.root:
        raise LRMError("no dataset: set data.root in the config or pass --data")
    if not Path(cfg.data.root).is_dir():
        raise LRMError(f"{cfg.data.root}: dataset folder not found")
    if not args.resume and checkpoint.list_checkpoints(cfg.run_dir):
        raise LRMError(f"{cfg.run_dir} already holds checkpoints: pass --resume auto to continue it, "
                       "or choose another --run-dir")
    summary = train(cfg, resume=args.resume, max_steps=args.max_steps, progress=not args.no_progress)
    from accelerate import PartialState

    if PartialState().is_main_process:
        psnr = summary["val_psnr"]
        print(f"step {summary['step']}: loss {summary['loss']:.4f}, {summary['samples_per_s']:.2f} samples/s"
              + (f", val PSNR {psnr:.2f} dB, input-view silhouette IoU {summary['val_input_iou']:.3f}"
                 if psnr is not None else "")
              + f"; checkpoint {summary['checkpoint']}")
    return 0
