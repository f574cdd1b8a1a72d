"""Two CPU processes (gloo) under `accelerate launch`: DDP keeps the ranks' parameters identical."""

import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file

from lrm.model.lrm import LRM
from lrm.train.config import save_config
from train_helpers import dataset, micro

ROOT = Path(__file__).resolve().parents[1]


def test_ddp_two_processes_keep_identical_parameters(tmp_path):
    cfg = micro(dataset(tmp_path), tmp_path / "run", steps=3, batch_size=1, checkpoint_every=3)
    save_config(cfg, tmp_path / "cfg.json")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    # accelerate 1.x's `--cpu` launcher starts one process (several only through mpirun); its
    # torchrun launcher (`--multi_gpu`) starts two, which join one gloo group on a CPU machine.
    with socket.socket() as sock:  # a free port, not the default 29500 another run may hold
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path / "cfg.json")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [load_file(str(tmp_path / "run" / f"rank-{k}.safetensors")) for k in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for k in ranks[0]:
        assert torch.equal(ranks[0][k], ranks[1][k]), k
    # Training moved the weights away from the (seeded) initialisation.
    torch.manual_seed(cfg.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init = LRM(cfg.model).state_dict()
    moved = [k for k in init if not torch.equal(init[k], ranks[0][k])]
    assert len(moved) > len(init) // 2
    # The checkpoint holds the same weights.
    saved = load_file(str(tmp_path / "run" / "checkpoints" / "step-000003" / "model.safetensors"))
    assert all(torch.equal(saved[k], ranks[0][k]) for k in saved)
