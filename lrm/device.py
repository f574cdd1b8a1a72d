"""Device and precision selection, decided once at runtime from one argument each.

- device "auto": CUDA if available, else CPU.
- dtype "fp32": exact (the numerics of the published implementations).
  "bf16": bf16 autocast for matmuls/attention (parameters stay fp32).
  "auto": bf16 where the hardware computes it fast (CUDA with bf16 support; CPUs with AVX-512 BF16
  or AMX), fp32 elsewhere — on CPUs without native bf16, bf16 matmuls are slower than fp32.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Literal

import torch

from lrm.errors import LRMError

Precision = Literal["fp32", "bf16", "auto"]


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LRMError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise LRMError("device 'mps' requested but MPS is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise LRMError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


def cpu_has_fast_bf16() -> bool:
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)


def resolve_precision(precision: Precision, device: torch.device) -> torch.dtype:
    """The autocast dtype to use: torch.float32 (no autocast) or torch.bfloat16."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise LRMError(f"unknown precision {precision!r}; use fp32, bf16 or auto")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    return torch.float32


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """bf16 autocast on `device` when dtype is bf16; a no-op for fp32."""
    if dtype == torch.float32:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
