"""The training loop on accelerate: one visible function, `train(cfg)`.

    image + camera --model--> planes --render crops--> MSE + LPIPS + TV (+ mask) --> AdamW step

Runs as one CPU process with no accelerate config, or under `accelerate launch` (DDP, FSDP,
DeepSpeed). Every random number a step uses is derived from (seed, step): the data (see
lrm.train.data) and the render jitter, so a run resumed from a checkpoint continues exactly.
"""

from __future__ import annotations

import contextlib
import sys
import dataclasses
import signal
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lrm.device import training_precision
from lrm.errors import LRMError
from lrm.model.lift import LiftConfig
from lrm.model.lrm import LRM
from lrm.probe import model_shape
from lrm.render.renderer import RenderConfig
from lrm.train import checkpoint as ckpt
from lrm.train.config import TRAIN_CONFIG_NAME, TrainConfig, save_config
from lrm.train.data import FolderSource, StepBatches, TrainSamples, collate, validation_items
from lrm.train.logger import RunLogger, available_trackers
from lrm.train.losses import total_loss
from lrm.train.optim import WarmupCosine, build_optimizer
from lrm.train.validate import save_grid, validate


class TrainStep(nn.Module):
    """The model's whole training forward in one `forward`, so that DDP/FSDP see it."""

    def __init__(self, model: LRM, render: RenderConfig) -> None:
        super().__init__()
        self.model = model
        self.render = render  # the sampling used for training renders

    def forward(self, batch: dict[str, torch.Tensor], region: int, generator: torch.Generator | None
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """batch: see lrm.train.data.make_sample (batched) -> renders of the crops, planes"""
        planes = self.model(batch["source"], batch["source_camera"])
        cfg, self.model.cfg.render = self.model.cfg.render, self.render
        try:
            out = self.model.render(planes, batch["c2w"], batch["intrinsics"], batch["resolution"],
                                    region=region, anchor=batch["anchor"], background=batch["background"],
                                    generator=generator)
        finally:
            self.model.cfg.render = cfg
        if "occupancy_xyz" in batch:  # 3D point supervision (lrm.data.samples)
            n = batch["occupancy_xyz"].shape[1]
            raw, rgb = self.model.field(planes, torch.cat([batch["occupancy_xyz"], batch["surface_xyz"]], 1))
            out["point_logit"] = raw[:, :n] + self.model.cfg.field.density_bias  # density = act(logit)
            out["point_rgb"] = rgb[:, n:]
        return out, planes


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


@contextlib.contextmanager
def _stop_on_signal():
    """Turn SIGTERM/SIGINT into a flag: the loop saves a checkpoint and returns."""
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    def handler(signum, frame):  # noqa: ANN001
        flag["stop"] = True
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader worker init: leave SIGTERM/SIGINT to the main process. `timeout`, Slurm's
    scancel and Ctrl-C signal the whole process group; a worker killed by it would make the main
    process fail at its next batch instead of saving a checkpoint and stopping."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_model(cfg: TrainConfig, resume_from: Path | None) -> LRM:
    """The model to train: from a checkpoint, a model to fine-tune (--init), or new."""
    from lrm.hub import load_folder, load_model

    if resume_from is not None:
        return load_folder(resume_from).train()
    if cfg.init:
        model = load_model(cfg.init).train()
        if cfg.model.lift.samples and not model.cfg.lift.samples:
            model = add_lift(model, cfg.model.lift)
        cfg.model = model.cfg  # the architecture is the initial model's (plus a lift the config adds)
        return model
    torch.manual_seed(cfg.seed)
    model = LRM(cfg.model)
    if cfg.encoder_init:
        from lrm.train.encoder_init import init_encoder

        init_encoder(model, cfg.encoder_init)
    else:
        warnings.warn("the encoder starts from random weights (no encoder_init given)", stacklevel=2)
    return model.train()


def add_lift(model: LRM, lift: LiftConfig) -> LRM:
    """The same model with a new, zero-initialised lift (lrm.model.lift): it renders exactly as
    before until trained."""
    grown = LRM(dataclasses.replace(model.cfg, lift=lift)).to(next(model.parameters()).device)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("lift.") for k in missing), (missing, unexpected)
    return grown.train()


def find_resume(run_dir: Path, resume: str) -> Path | None:
    if not resume:
        return None
    if resume == "auto":
        found = ckpt.latest_valid(run_dir)
        if found is None and ckpt.list_checkpoints(run_dir):
            raise LRMError(f"{run_dir}: none of its checkpoints is intact; remove them to start over")
        return found
    folder = Path(resume)
    reason = ckpt.verify(folder)
    if reason is not None:
        raise LRMError(f"cannot resume from {folder}: {reason}")
    return folder


def train(cfg: TrainConfig, resume: str = "", max_steps: int | None = None, progress: bool = True) -> dict:
    """Train until `cfg.steps` (or `max_steps`, saving a checkpoint there). `resume`: "" (new
    run), "auto" (the newest intact checkpoint of the run folder, if any) or a checkpoint folder.
    Returns a summary: step, loss, samples_per_s, val_psnr, checkpoint, model (the trained LRM)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    # Without a GPU, cpu=True makes several launched processes one gloo group (MULTI_CPU).
    gpu = torch.cuda.is_available() or torch.backends.mps.is_available() or (
        hasattr(torch, "xpu") and torch.xpu.is_available())
    precision, why = training_precision(cfg.mixed_precision, model_shape(cfg.model.transformer))
    trackers = available_trackers(cfg.log_with)
    acc = Accelerator(mixed_precision=precision, cpu=not gpu, log_with=trackers or None, project_dir=cfg.run_dir)
    if why and acc.is_main_process and progress:
        print(f"mixed precision {precision!r} ({why})", file=sys.stderr)
    run_dir = Path(cfg.run_dir)
    resume_from = find_resume(run_dir, resume)
    model = build_model(cfg, resume_from)
    cfg.model = model.cfg
    if cfg.grad_checkpointing:
        model.encoder.grad_checkpointing = model.transformer.grad_checkpointing = True
    if acc.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / TRAIN_CONFIG_NAME)
    lpips = None
    if cfg.loss.lpips > 0:
        from lrm.losses.lpips import load_lpips

        lpips = load_lpips(cfg.loss.lpips_weights, acc.device)
        if lpips is not None and cfg.data.region < 16:
            raise LRMError(f"LPIPS needs crops of at least 16 px (VGG pools 4 times); data.region is "
                           f"{cfg.data.region}: raise it or set loss.lpips = 0")
    optimizer, scheduler = build_optimizer(model, cfg.optim, cfg.steps)
    start = 0
    sharded = acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if resume_from is not None:
        state = ckpt.load_trainer_state(resume_from)
        start = int(state["step"])
        if not sharded:
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        # the saved state pickles the schedule's own total: keep this run's (--steps may extend it)
        scheduler.lr_lambdas = [WarmupCosine(cfg.optim.lr, cfg.optim.warmup, cfg.steps) for _ in scheduler.lr_lambdas]
        resume_rng = state["rng"]  # restored just before the first step (see below)
        if state["global_batch"] != cfg.batch_size * cfg.accumulation * acc.num_processes:
            warnings.warn("the global batch differs from the checkpoint's: the data order changes", stacklevel=2)
    render = dataclasses.replace(
        model.cfg.render,
        samples=cfg.render_samples or model.cfg.render.samples,
        importance=model.cfg.render.importance if cfg.render_importance < 0 else cfg.render_importance)
    step_module, optimizer = acc.prepare(TrainStep(model, render), optimizer)
    if resume_from is not None and sharded:
        acc.load_state(str(resume_from / "accelerate"))

    source = FolderSource(cfg.data.root, cfg.data.split)
    if cfg.data.occupancy_points or cfg.data.surface_points:
        source.require_points()
    data = TrainSamples(source, cfg.data, cfg.model.inference.source_size, cfg.seed)
    end = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    batches = StepBatches(start, end, cfg.batch_size, cfg.accumulation, acc.process_index, acc.num_processes)
    loader = torch.utils.data.DataLoader(data, batch_sampler=batches, collate_fn=collate,
                                         num_workers=cfg.data.workers,
                                         worker_init_fn=_ignore_stop_signals if cfg.data.workers else None)
    val_items = []
    if sharded and cfg.val_every:
        warnings.warn("validation is skipped under FSDP/DeepSpeed (sharded parameters)", stacklevel=2)
    elif acc.is_main_process and cfg.val_every and cfg.data.val_split:
        val_source = FolderSource(cfg.data.root, cfg.data.val_split)
        val_items = validation_items(val_source, cfg.val_objects, cfg.val_views,
                                     cfg.model.inference.source_size, cfg.val_resolution)
    log = RunLogger(run_dir, acc, cfg)
    per_step = cfg.batch_size * cfg.accumulation * acc.num_processes

    def save(step: int) -> Path:
        tmp, final = ckpt.temp_dir(run_dir, step), ckpt.step_dir(run_dir, step)
        if acc.is_main_process:
            tmp.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        if sharded:  # every rank writes its shard of the optimizer state
            acc.save_state(str(tmp / "accelerate"))
        weights = acc.get_state_dict(step_module)
        if acc.is_main_process:
            ckpt.write_model(tmp, model.cfg, {k.removeprefix("model."): v for k, v in weights.items()})
            torch.save({"step": step, "optimizer": None if sharded else optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "rng": ckpt.rng_state(),
                        "global_batch": per_step, "seed": cfg.seed}, tmp / ckpt.TRAINER_STATE)
            ckpt.finalize(tmp, final, step)
            ckpt.prune(run_dir, cfg.keep_checkpoints)
        acc.wait_for_everyone()
        return final

    summary = {"step": start, "loss": float("nan"), "samples_per_s": float("nan"),
               "val_psnr": None, "val_input_iou": None, "checkpoint": str(resume_from) if resume_from else None}
    bar = None
    if progress and acc.is_main_process:
        from tqdm.auto import tqdm

        bar = tqdm(total=end, initial=start, desc="train", unit="step", dynamic_ncols=True)
    batch_iter = iter(loader)  # draws the loader's base seed from the global RNG
    if resume_from is not None:  # from here on the global RNG runs as it did after the saved step
        ckpt.set_rng_state(resume_rng)
    window_t, window_n = time.perf_counter(), 0
    with _stop_on_signal() as stop:
        for step in range(start, end):
            terms_sum: dict[str, float] = {}
            for micro in range(cfg.accumulation):
                batch = {k: v.to(acc.device) for k, v in next(batch_iter).items()}
                gen = torch.Generator(acc.device).manual_seed(_seed(cfg.seed, 2, step, micro, acc.process_index))
                last = micro == cfg.accumulation - 1
                with contextlib.nullcontext() if last else acc.no_sync(step_module):
                    with acc.autocast():
                        out, planes = step_module(batch, cfg.data.region, gen)
                    loss, terms = total_loss(out, batch, planes, cfg.loss, lpips, step)
                    acc.backward(loss / cfg.accumulation)
                for k, v in terms.items():
                    terms_sum[k] = terms_sum.get(k, 0.0) + v / cfg.accumulation
            grad_norm = acc.clip_grad_norm_(step_module.parameters(), cfg.optim.grad_clip) \
                if cfg.optim.grad_clip > 0 else None
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            window_n += per_step
            summary["step"] = done
            summary["loss"] = sum(terms_sum[k] * getattr(cfg.loss, k) for k in terms_sum)
            if done % cfg.log_every == 0 or done == end:
                rate = window_n / max(1e-9, time.perf_counter() - window_t)
                window_t, window_n = time.perf_counter(), 0
                summary["samples_per_s"] = rate
                scalars = {f"loss/{k}": v for k, v in terms_sum.items()}
                scalars.update({"loss/total": summary["loss"], "lr": scheduler.get_last_lr()[0],
                                "samples_per_s": rate, "epoch": done * per_step / len(data.source)})
                if grad_norm is not None:
                    scalars["grad_norm"] = float(grad_norm)
                log.scalars(done, scalars)
                if bar is not None:
                    bar.set_postfix(loss=f"{summary['loss']:.4f}", samples_s=f"{rate:.2f}")
            if bar is not None:
                bar.update(1)
            if val_items and (done % cfg.val_every == 0 or done == end):
                score, grid, iou = validate(model, val_items, cfg.val_resolution)
                summary["val_psnr"], summary["val_input_iou"] = score, iou
                log.scalars(done, {"val/psnr": score, "val/input_iou": iou})
                log.image(done, "val/renders", grid)
                save_grid(grid, run_dir / "val" / f"step-{done:06d}.png")
            if acc.num_processes > 1:  # stop together, or the ranks deadlock in the save
                flag = torch.tensor([float(stop["stop"])], device=acc.device)
                stop["stop"] = bool(acc.reduce(flag, reduction="sum").item() > 0)
            stopping = stop["stop"] or done == end
            if done % cfg.checkpoint_every == 0 or stopping:
                summary["checkpoint"] = str(save(done))
            if stop["stop"]:
                break
    if bar is not None:
        bar.close()
    log.close()
    acc.wait_for_everyone()
    summary["model"] = model  # this process's copy, unwrapped
    return summary
