"""Kill-and-resume gives the uninterrupted run's parameters; broken checkpoints are refused."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lrm.errors import LRMError
from lrm.train import checkpoint as ckpt
from lrm.train.config import save_config
from lrm.train.loop import train
from train_helpers import dataset, micro, one_thread  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
ROOT = Path(__file__).resolve().parents[1]


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _max_diff(a, b) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    root = dataset(tmp_path)
    # accumulation 2 and 2 loader workers: the data stream must not depend on either.
    opts = dict(steps=6, checkpoint_every=3, accumulation=2, data={"workers": 2})
    full = _params(train(micro(root, tmp_path / "full", **opts), progress=False)["model"])
    first = train(micro(root, tmp_path / "cut", **opts), progress=False, max_steps=4)
    assert first["step"] == 4  # a graceful stop writes a checkpoint at the step it stopped
    # Drop it: the run resumes from step 3, as after a kill between checkpoints.
    import shutil

    shutil.rmtree(ckpt.step_dir(tmp_path / "cut", 4))
    resumed = train(micro(root, tmp_path / "cut", **opts), resume="auto", progress=False)
    assert resumed["step"] == 6
    assert _max_diff(full, _params(resumed["model"])) <= 1e-6
    # And the lr schedule continued: the final checkpoints agree in optimizer state too.
    a = ckpt.load_trainer_state(ckpt.step_dir(tmp_path / "full", 6))
    b = ckpt.load_trainer_state(ckpt.step_dir(tmp_path / "cut", 6))
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 6


@pytest.mark.parametrize("cut", [1, 2, 4], ids=["step-1", "in-warm-up", "after-warm-up"])
def test_resume_from_any_step_is_bitwise(tmp_path, cut):
    """Resuming from the checkpoint of step 1, of a step inside the warm-up (2 steps) and of one
    after it, with accumulation 2 and 2 loader workers, gives the uninterrupted run's parameters
    and optimizer state bit for bit (CPU, fp32)."""
    root = dataset(tmp_path)
    opts = dict(steps=6, checkpoint_every=1, keep_checkpoints=10, accumulation=2, data={"workers": 2},
                optim={"warmup": 3})
    full = _params(train(micro(root, tmp_path / "full", **opts), progress=False)["model"])
    train(micro(root, tmp_path / "cut", **opts), progress=False, max_steps=cut)
    resumed = train(micro(root, tmp_path / "cut", **opts), resume="auto", progress=False)
    assert resumed["step"] == 6
    assert _max_diff(full, _params(resumed["model"])) == 0.0
    a = ckpt.load_trainer_state(ckpt.step_dir(tmp_path / "full", 6))["optimizer"]["state"]
    b = ckpt.load_trainer_state(ckpt.step_dir(tmp_path / "cut", 6))["optimizer"]["state"]
    assert all(torch.equal(a[k][n], b[k][n]) for k in a for n in ("exp_avg", "exp_avg_sq"))


def test_resume_restores_the_global_rng(tmp_path, monkeypatch):
    """lrm's own randomness comes from generators seeded by (seed, step); a model's own random
    layers (dropout, noise) draw from the global RNG, which a resume must restore. Stand-in:
    every training forward scales its renders by a factor drawn from the global RNG."""
    from lrm.train import loop

    forward = loop.TrainStep.forward

    def noisy(self, *args, **kwargs):
        out, planes = forward(self, *args, **kwargs)
        out["rgb"] = out["rgb"] * (1 + 0.5 * torch.rand(()))
        return out, planes

    monkeypatch.setattr(loop.TrainStep, "forward", noisy)
    root = dataset(tmp_path)
    opts = dict(steps=4, checkpoint_every=2)
    full = _params(train(micro(root, tmp_path / "full", **opts), progress=False)["model"])
    train(micro(root, tmp_path / "cut", **opts), progress=False, max_steps=2)
    resumed = train(micro(root, tmp_path / "cut", **opts), resume="auto", progress=False)
    assert resumed["step"] == 4
    assert _max_diff(full, _params(resumed["model"])) <= 1e-6


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_checkpoint_is_rejected_and_the_previous_used(tmp_path):
    root = dataset(tmp_path)
    run = tmp_path / "run"
    train(micro(root, run, steps=2, checkpoint_every=1, keep_checkpoints=3), progress=False)
    _truncate(ckpt.step_dir(run, 2) / "model.safetensors")
    reason = ckpt.verify(ckpt.step_dir(run, 2))
    assert "model.safetensors" in reason and "truncated" in reason
    with pytest.warns(UserWarning, match=r"step-000002 is unusable: model.safetensors has \d+ bytes"):
        assert ckpt.latest_valid(run) == ckpt.step_dir(run, 1)
    with pytest.raises(LRMError, match="cannot resume from .*step-000002.*truncated"):
        train(micro(root, run, steps=3), resume=str(ckpt.step_dir(run, 2)), progress=False)
    out = train(micro(root, run, steps=3, checkpoint_every=1), resume="auto", progress=False)
    assert out["step"] == 3
    assert ckpt.verify(ckpt.step_dir(run, 2)) is None  # step 2 was trained and written again


@pytest.mark.parametrize("damage", ["flip", "no-manifest", "missing-file"])
def test_other_damage_is_detected(tmp_path, damage):
    root = dataset(tmp_path)
    run = tmp_path / "run"
    train(micro(root, run, steps=1, checkpoint_every=1), progress=False)
    folder = ckpt.step_dir(run, 1)
    if damage == "flip":
        data = bytearray((folder / "trainer.pt").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / "trainer.pt").write_bytes(bytes(data))
        assert "sha256" in ckpt.verify(folder)
    elif damage == "no-manifest":
        (folder / "manifest.json").unlink()
        assert "incomplete" in ckpt.verify(folder)
    else:
        (folder / "config.json").unlink()
        assert "config.json is missing" in ckpt.verify(folder)
    with pytest.warns(UserWarning, match="unusable"):
        assert ckpt.latest_valid(run) is None
    with pytest.raises(LRMError, match="none of its checkpoints is intact"):
        train(micro(root, run, steps=2), resume="auto", progress=False)


@pytest.mark.parametrize("group", [False, True], ids=["process", "process-group"])
def test_sigterm_stops_with_a_checkpoint_that_resumes(tmp_path, group):
    """A real process is sent SIGTERM mid-run; it saves a checkpoint and exits cleanly. With
    `group`, the signal goes to its whole process group, loader worker included, as `timeout`,
    Slurm's scancel and Ctrl-C send it: the worker must leave it to the main process."""
    cfg = micro(dataset(tmp_path), tmp_path / "run", steps=100000, checkpoint_every=100000,
                data={"workers": 1 if group else 0})
    save_config(cfg, tmp_path / "cfg.json")
    script = ("import sys, torch; torch.set_num_threads(1); from lrm.cli.train import add_parser; "
              "import argparse; p = argparse.ArgumentParser(); add_parser(p.add_subparsers()); "
              "a = p.parse_args(['train', '--config', sys.argv[1], '--no-progress']); sys.exit(a.run(a))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "cfg.json")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=group)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    if group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    [(step, folder)] = ckpt.list_checkpoints(tmp_path / "run")
    assert step >= 2 and ckpt.verify(folder) is None
    assert f"step {step}:" in out
    # and it resumes: two more steps from where the signal stopped it
    from lrm.train.loop import train

    cfg.steps = step + 2
    out = train(cfg, resume="auto", progress=False)
    assert out["step"] == step + 2
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "run")][-1] == step + 2
