"""Run logging: scalars to `metrics.jsonl` (always) and TensorBoard (when installed)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np


class RunLogger:
    """Logs on the main process only; other ranks get a logger that does nothing."""

    def __init__(self, run_dir: str | Path, enabled: bool) -> None:
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        self.path = Path(run_dir) / "metrics.jsonl"
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        except ImportError:
            warnings.warn("TensorBoard is not installed (pip install 'lrm[train]'); "
                          "scalars go to metrics.jsonl only", stacklevel=2)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def image(self, step: int, name: str, image: np.ndarray) -> None:
        """image: [H, W, 3] uint8"""
        if self.enabled and self.tb is not None:
            self.tb.add_image(name, image, step, dataformats="HWC")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
