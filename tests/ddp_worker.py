"""Run under `accelerate launch --num_processes 2 --cpu tests/ddp_worker.py CONFIG.json`:
trains, then every rank writes its parameters to RUN_DIR/rank-<k>.safetensors."""

import sys
from pathlib import Path

import torch
from accelerate import PartialState
from safetensors.torch import save_file

from lrm.train.config import load_config
from lrm.train.loop import train

if __name__ == "__main__":
    torch.set_num_threads(1)
    cfg = load_config(sys.argv[1])
    summary = train(cfg, progress=False)
    state = PartialState()  # after train(), which sets up the (gloo) process group
    # The unwrapped model is not returned; read this rank's copy back from the DDP module.
    params = {k: v.detach().clone().contiguous() for k, v in summary.pop("model").state_dict().items()}
    save_file(params, str(Path(cfg.run_dir) / f"rank-{state.process_index}.safetensors"),
              metadata={"world": str(state.num_processes), "step": str(summary["step"])})
