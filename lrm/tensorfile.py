"""Writing safetensors files: atomically, and with the mode the user's umask gives.

safetensors' writer creates files 0600 whatever the umask, so a model saved for a team or a web
server could not be read by anyone else; every safetensors file lrm writes goes through here.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def umask_mode() -> int:
    """The mode a plain new file gets under the current umask (0o644 under the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write `tensors` to `path` via a temporary file in the same folder (a crash leaves the old
    file or none, never a torn one), then give it the umask's mode."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.chmod(tmp, umask_mode())
    tmp.replace(path)
    return path
