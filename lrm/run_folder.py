"""A training run's checkpoint folders, as inference reads them: the layout, the integrity
check, and the newest intact checkpoint. Writing them is the trainer's (lrm.train.checkpoint);
`lrm.hub.load_model(RUN_DIR)` loads through this module without importing the trainer.

    RUN_DIR/checkpoints/step-000123/
      config.json, model.safetensors   # the model
      trainer.pt                       # optimizer, scheduler, RNG states, data position
      manifest.json                    # written last: size and sha256 of every other file
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

from lrm.model.lrm import CONFIG_NAME, WEIGHTS_NAME

CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"
TRAINER_STATE = "trainer.pt"
FORMAT = "lrm-train-checkpoint-1"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def step_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step-{step:06d}"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(folder: Path) -> str | None:
    """None if the checkpoint is complete and intact, else the reason it is not."""
    path = folder / MANIFEST
    if not path.is_file():
        return "no manifest.json (incomplete write)"
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        return f"unreadable manifest.json ({exc})"
    for name in (CONFIG_NAME, WEIGHTS_NAME, TRAINER_STATE):
        if name not in files:
            return f"manifest lists no {name}"
    for name, info in files.items():
        p = folder / name
        if not p.is_file():
            return f"{name} is missing"
        size = p.stat().st_size
        if size != info["size"]:
            return f"{name} has {size} bytes, the manifest says {info['size']} (truncated or replaced)"
        if sha256(p) != info["sha256"]:
            return f"{name} does not match its sha256 in the manifest (corrupt)"
    return None


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of the checkpoint folders of a run, oldest first (not verified)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return sorted(found)


def latest_valid(run_dir: str | Path) -> Path | None:
    """The newest intact checkpoint of a run; each newer broken one is reported with a warning."""
    for _, folder in reversed(list_checkpoints(run_dir)):
        reason = verify(folder)
        if reason is None:
            return folder
        warnings.warn(f"checkpoint {folder} is unusable: {reason}; trying the previous one", stacklevel=2)
    return None
