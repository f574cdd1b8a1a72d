"""Run logging: scalars to `metrics.jsonl` (always) and to accelerate's trackers.

`TrainConfig.log_with` names the trackers (`lrm train --log-with`): "tensorboard" (the default,
events in RUN_DIR/tensorboard/), "wandb", "mlflow", or none. Through accelerate's tracker API
(`Accelerator(log_with=..., project_dir=RUN_DIR)`, `init_trackers`, `log`), so any tracker
accelerate supports behaves the same; the resolved config is stored as the run's
hyperparameters. Validation images go to TensorBoard (and W&B) when those are on.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lrm.configs import to_dict
from lrm.errors import LRMError
from lrm.train.config import TRACKERS

PROJECT = "tensorboard"  # accelerate's project name: the trackers' sub-folder of RUN_DIR


def available_trackers(names: list[str] | tuple[str, ...]) -> list[str]:
    """The trackers of `names` that can run here: an unknown name, or W&B / MLflow without its
    package, is an LRMError; TensorBoard without its package is dropped with a warning."""
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise LRMError(f"unknown tracker(s) {', '.join(unknown)}; choose from {', '.join(TRACKERS)}")
    out = []
    for name in names:
        if importlib.util.find_spec(name) is not None:  # each tracker's package bears its name
            out.append(name)
        elif name == "tensorboard":
            warnings.warn("TensorBoard is not installed (pip install 'lrm[train]'); scalars go to "
                          "metrics.jsonl only", stacklevel=2)
        else:
            raise LRMError(f"--log-with {name} needs its package: pip install {name}")
    return out


def hyperparameters(cfg: Any) -> dict[str, int | float | str | bool]:
    """A config as flat scalar hyperparameters ("optim/lr": 4e-4, ...), as trackers store them."""
    flat: dict[str, int | float | str | bool] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}" if prefix else k, v)
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix] = value
        else:
            flat[prefix] = str(value)

    walk("", to_dict(cfg))
    return flat


class RunLogger:
    """Logs on the main process only; other ranks get a logger that does nothing.

    acc: the run's Accelerator, made with `log_with` (and `project_dir=RUN_DIR`)."""

    def __init__(self, run_dir: str | Path, acc, cfg: Any) -> None:
        self.enabled = acc.is_main_process
        self.acc = acc
        self.path = Path(run_dir) / "metrics.jsonl"
        if acc.log_with:
            acc.init_trackers(PROJECT, config=hyperparameters(cfg))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, **values}) + "\n")
        if self.acc.log_with:
            self.acc.log(values, step=step)

    def image(self, step: int, name: str, image: np.ndarray) -> None:
        """image: [H, W, 3] uint8"""
        if not self.enabled:
            return
        for tracker in self.acc.trackers:
            if tracker.name == "tensorboard":
                tracker.writer.add_image(name, image, step, dataformats="HWC")
            elif tracker.name == "wandb":
                import wandb

                tracker.log({name: wandb.Image(image)}, step=step)

    def close(self) -> None:
        # each tracker's finish(), not Accelerator.end_training(): that also destroys the process
        # group, which the trainer still uses after logging ends (tests/test_train_ddp.py)
        for tracker in self.acc.trackers:
            tracker.finish()
