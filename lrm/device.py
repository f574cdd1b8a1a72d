"""Device and precision selection, decided once at runtime from one argument each.

- device "auto": CUDA if available, else CPU.
- dtype "fp32": exact (the numerics of the published implementations).
  "bf16": bf16 autocast for matmuls/attention (parameters stay fp32).
  "int8" (CPU only): dynamic int8 for the big Linear layers of the encoder and transformer
  (`lrm.model.quant`); everything else fp32.
  "auto": bf16 on CUDA with bf16 support; on a CPU the fastest of fp32 / bf16 / int8 as measured
  on the running machine (`lrm.probe`: a reduced precision must beat fp32 by 15%), because CPU
  flags do not tell speed (int8 ran 3.8x faster than fp32 on an Ice Lake, 45x slower on an
  AVX2-only EPYC); with probing off (LRM_PROBE=0) the CPU-flag guess; fp32 elsewhere.
The field decoder always runs in fp32 (it is small, and the density feeds thresholds).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterator, Literal

import torch

from lrm.errors import LRMError

Precision = Literal["fp32", "bf16", "int8", "auto"]


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


def resolve_precision(precision: Precision, device: torch.device,
                      shape: tuple[int, int, int] = (768, 192, 768)) -> torch.dtype:
    """The compute dtype of the forward pass: torch.float32 (no autocast), torch.bfloat16
    (autocast) or torch.int8 (quantised Linear layers, CPU). shape: (tokens, width, out width) of
    the model's big Linear layers, the shape "auto" probes at on a CPU."""
    return choose_precision(precision, device, shape)[0]


def choose_precision(precision: Precision, device: torch.device,
                     shape: tuple[int, int, int] = (768, 192, 768)) -> tuple[torch.dtype, str]:
    """resolve_precision, with a note on why: the probe's figures for "auto" on a CPU, and a
    warning (also raised as a RuntimeWarning) when an explicit bf16/int8 measured slower than fp32."""
    from lrm import probe
    from lrm.model.quant import int8_available

    if precision == "fp32":
        return torch.float32, ""
    if precision not in ("bf16", "int8", "auto"):
        raise LRMError(f"unknown precision {precision!r}; use fp32, bf16, int8 or auto")
    if precision == "int8":
        if device.type != "cpu":
            raise LRMError("--dtype int8 runs on the CPU only; use bf16 on GPUs")
        if not int8_available():
            raise LRMError("this PyTorch build has no CPU int8 matmul (torch._int_mm); use fp32")
    if device.type != "cpu":
        if precision == "auto":
            ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
            return (torch.bfloat16 if ok else torch.float32), ""
        return torch.bfloat16, ""
    if not probe.probing_enabled():
        name = probe.guess_from_flags() if precision == "auto" else precision
        return _DTYPES[name], ("CPU-flag guess (LRM_PROBE=0)" if precision == "auto" else "")
    result = probe.probe(shape)
    if precision == "auto":
        return _DTYPES[result.choice], result.describe()
    note = ""
    if not probe.accurate(result.errors, precision):
        note = (f"--dtype {precision}: this CPU's {precision} kernel measured "
                f"{100 * result.errors[precision]:.0f} % error against fp32 (contract "
                f"{100 * probe.ACCURACY[precision]:.0f} %; {result.describe()}); --dtype auto or fp32 is exact here")
        warnings.warn(note, RuntimeWarning, stacklevel=3)
    elif probe.is_slow(result.rates, precision):
        ratio = result.rates["fp32"] / result.rates[precision]
        note = (f"--dtype {precision} measured {ratio:.1f}x slower than fp32 on this CPU "
                f"({result.describe()}); --dtype auto or fp32 is faster here")
        warnings.warn(note, RuntimeWarning, stacklevel=3)
    return _DTYPES[precision], note


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.int8}


def training_precision(choice: str, shape: tuple[int, int, int]) -> tuple[str, str]:
    """accelerate's `mixed_precision` for a training run, and a note on why. "auto": bf16 on CUDA
    with bf16; on a CPU bf16 only where the probe measures it faster than fp32 (the flags said
    bf16 on an AVX512-BF16 Xeon whose bf16 training step measured 1.3x slower), else "no"."""
    if choice != "auto":
        return choice, ""
    if torch.cuda.is_available():
        return ("bf16" if torch.cuda.is_bf16_supported() else "no"), ""
    from lrm import probe

    if not probe.probing_enabled():
        return ("bf16" if probe.guess_from_flags() == "bf16" else "no"), "CPU-flag guess (LRM_PROBE=0)"
    result = probe.probe(shape)
    return ("bf16" if probe.choose(result.rates, ("bf16",), result.errors) == "bf16" else "no"), result.describe()


def precision_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.int8: "int8"}.get(dtype, str(dtype))


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """bf16 autocast on `device` when dtype is bf16; a no-op for fp32 and int8."""
    if dtype != torch.bfloat16:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def physical_cores() -> int:
    """Physical cores this process may run on (logical CPUs in its affinity / threads per core)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_core = 1
    try:
        siblings = open("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list").read().strip()
        per_core = max(1, sum(b - a + 1 for a, b in
                              (tuple(map(int, (r.split("-") * 2)[:2])) for r in siblings.split(","))))
    except (OSError, ValueError):
        pass
    return max(1, logical // per_core)


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads and return the number used.

    threads: an explicit count; None: the LRM_THREADS environment variable, else the physical
    cores not busy with other work (cores minus the 1-minute load average, at least 1). On a
    shared machine an oversubscribed thread pool is several times slower than one thread: each
    parallel region waits for its slowest, descheduled thread (docs/performance.md).
    """
    if threads is None and os.environ.get("LRM_THREADS"):
        try:
            threads = int(os.environ["LRM_THREADS"])
        except ValueError:
            raise LRMError(f"LRM_THREADS={os.environ['LRM_THREADS']!r} is not an integer") from None
    if threads is None:
        cores = physical_cores()
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        threads = max(1, min(cores, round(cores - load + 0.25)))
    if threads < 1:
        raise LRMError(f"thread count must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


def configure_allocator() -> bool:
    """Keep freed memory in the process heap (glibc only), returns whether it applied.

    glibc serves blocks above 32 MB with fresh mmap()s, so every large activation is
    page-faulted and zeroed again: on the 2-core VM this made a 37 MB elementwise op 4-7x slower
    than the arithmetic (docs/performance.md). Raising the mmap and trim thresholds reuses the
    heap instead; peak RSS is unchanged.
    """
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False
