"""Precision chosen by measurement: time the candidate matmul kernels on the running machine.

CPU flags say what a CPU can run, not how fast: on an AVX2-only EPYC `torch._int_mm` ran 45x and
bf16 150x slower than fp32, while on an Ice Lake with VNNI int8 ran 3.8x faster. So `--dtype auto`
on a CPU times the kernels the fast path would use, at a shape like the model's Linear layers,
and takes the fastest one that meets the accuracy contract (`ACCURACY`), fp32 unless another is
clearly faster (`MARGIN`).

Speed is not enough: with oneDNN held to AVX2 (no VNNI), `torch._int_mm` returned sums off by up
to 27 % (16-bit pair sums saturating), and the int8 path's error against fp32 rose from 0.9 % to
13 %. So each reduced-precision kernel's output on the probe's product (activations ~ N(0, 1),
weights uniform over the full int8 range, the hard case for such kernels) is compared with a
float64 product; one above its contract is never chosen, however fast.

The probe costs at most ~0.3 s: every candidate first runs a small screening matmul (a kernel
below a tenth of fp32 there is dropped at once), then the survivors are timed at the model's
shape within a fixed budget. Results are cached per CPU model, kernel ISA, torch version, thread
count and shape in `<cache>/lrm/precision-probe.json` (<cache>: $XDG_CACHE_HOME or ~/.cache;
`LRM_PROBE_CACHE` names another file), but only
when the machine was quiet: the 1-minute load average below half the cores before, and other
processes keeping under a quarter of a core busy on average while it ran (from /proc/stat, less
this process's own CPU time; the load average lags by a minute, and a probe cached beside a
training run that had just started read int8 at 14 instead of 320 GFLOP/s). A probe beside
other work is used for that run and measured again next time. `LRM_PROBE=0` switches probing off; the CPU-flag guess is
then used (`guess_from_flags`).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

CANDIDATES = ("fp32", "bf16", "int8")
MARGIN = 1.15  # a reduced precision must beat fp32 by this factor to be chosen (timing noise)
SLOW = 0.8  # an explicit choice below this fraction of fp32's rate gets a one-line warning
SCREEN_SHAPE = (64, 256, 256)  # [M, K] x [K, N]: 8.4 MFLOP, ~13 ms even at 0.65 GFLOP/s
SCREEN_DROP = 0.1  # a kernel below this fraction of fp32 on the screening product is not timed further
# (int8's per-row quantisation weighs more on the small screening product: it read 0.4x fp32
# there and 2.9x at the model's shape on the development CPU; the AVX2 EPYC's int8 and bf16
# are at 0.02x and 0.005x)
BUDGET_S = 0.03  # timing budget per candidate at the model's shape
# relative (Frobenius) error against float64 on the probe's product that a candidate may have:
# measured 0.28 % for bf16 and 0.8-0.9 % for int8 on sound kernels, 12-14 % for int8 with oneDNN
# held to AVX2
ACCURACY = {"fp32": 1e-4, "bf16": 0.01, "int8": 0.02}
MAX_ROWS = 128  # rows of the timed product: the rate per FLOP is flat beyond this, the cost is not
OTHERS_MAX = 0.25  # cores other processes may keep busy during a probe that is cached


@dataclass
class ProbeResult:
    rates: dict[str, float]  # GFLOP/s per candidate measured (0.0: unavailable or screened out)
    choice: str  # "fp32" | "bf16" | "int8"
    cached: bool = False
    errors: dict[str, float] = field(default_factory=dict)  # relative error per candidate (see ACCURACY)

    def describe(self) -> str:
        """e.g. 'probed: fp32 118, bf16 0.7, int8 2.6 GFLOP/s' (+ '; int8 inaccurate: 13 % error')"""
        parts = [f"{k} {_fmt(v)}" for k, v in self.rates.items()]
        bad = [f"{k} inaccurate: {100 * self.errors[k]:.0f} % error" for k in self.rates if not accurate(self.errors, k)]
        return (("cached probe: " if self.cached else "probed: ") + ", ".join(parts) + " GFLOP/s"
                + "".join(f"; {b}" for b in bad))


def _fmt(rate: float) -> str:
    return "n/a" if rate <= 0 else (f"{rate:.0f}" if rate >= 10 else f"{rate:.1f}")


def choose(rates: dict[str, float], allowed: tuple[str, ...] = ("bf16", "int8"),
           errors: dict[str, float] | None = None) -> str:
    """The fastest accurate candidate; fp32 unless one of `allowed` beats it by MARGIN.

    rates: GFLOP/s per candidate (missing or <= 0: unavailable); errors: relative error per
    candidate (missing: not measured, taken as within the contract)."""
    base = rates.get("fp32", 0.0)
    best, best_rate = "fp32", base * MARGIN
    for name in allowed:
        r = rates.get(name, 0.0)
        if r > best_rate and accurate(errors or {}, name):
            best, best_rate = name, r
    return best


def accurate(errors: dict[str, float], name: str) -> bool:
    """Whether `name`'s measured error (if any) is within its contract (ACCURACY)."""
    return errors.get(name, 0.0) <= ACCURACY.get(name, 0.0)


def is_slow(rates: dict[str, float], name: str) -> bool:
    """Whether `name` measured below SLOW x fp32's rate."""
    base, r = rates.get("fp32", 0.0), rates.get(name, 0.0)
    return name != "fp32" and base > 0 and 0 < r < SLOW * base


def guess_from_flags() -> str:
    """The first guess without probing: bf16 on AVX-512 BF16 / AMX, int8 with VNNI, else fp32."""
    cpu = getattr(torch, "cpu", None)
    has = lambda check: bool(getattr(cpu, check, lambda: False)())  # noqa: E731
    if has("_is_avx512_bf16_supported") or has("_is_amx_tile_supported"):
        return "bf16"
    from lrm.model.quant import int8_available

    if (has("_is_avx512_vnni_supported") or has("_is_avxvnni_supported")) and int8_available():
        return "int8"
    return "fp32"


def _kernels(x: torch.Tensor, w: torch.Tensor) -> dict[str, Callable[[], object] | None]:
    """Per candidate, a zero-argument callable running the product x [m, k] · w [n, k]ᵀ as the
    fast path would (None: unavailable in this build)."""
    from lrm.model.quant import Int8Linear, int8_available

    n, k = w.shape
    xb, wb = x.bfloat16(), w.bfloat16()
    out: dict[str, Callable[[], object] | None] = {
        "fp32": lambda: torch.nn.functional.linear(x, w),
        "bf16": lambda: torch.nn.functional.linear(xb, wb),  # what bf16 autocast runs
        "int8": None,
    }
    if int8_available():
        lin = torch.nn.utils.skip_init(torch.nn.Linear, k, n, bias=False)
        lin.weight.data = w
        q = Int8Linear(lin)  # quantises the activations per call, as in use
        out["int8"] = lambda: q(x)
    return out


def probe_operands(m: int, k: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations x [m, k] ~ N(0, 1) and weights w [n, k] uniform in [-1, 1] (after per-row
    quantisation they fill the int8 range: the hard case for kernels that saturate)."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(m, k, generator=g), torch.rand(n, k, generator=g) * 2 - 1


def accuracy(shape: tuple[int, int, int]) -> dict[str, float]:
    """Relative (Frobenius) error of each available candidate's product against float64, at the
    model's inner width K (what accumulates) and a few rows and columns of `shape` = (M, K, N);
    unavailable candidates are left out."""
    m, k, n = min(shape[0], SCREEN_SHAPE[0]), shape[1], min(shape[2], SCREEN_SHAPE[2])
    x, w = probe_operands(m, k, n)
    ref = torch.nn.functional.linear(x.double(), w.double())
    out = {}
    for name, fn in _kernels(x, w).items():
        if fn is not None:
            got = torch.as_tensor(fn()).double()
            out[name] = float((got - ref).norm() / ref.norm())
    return out


def _rate(fn: Callable[[], object], flops: float, budget: float) -> float:
    """GFLOP/s of the fastest of at least two timed calls within `budget` seconds: other work on
    the machine only slows calls down, so the fastest one is the kernel's own speed."""
    fn()  # warm-up (allocations, kernel selection)
    calls, best, t0 = 0, float("inf"), time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        calls += 1
        if (calls >= 2 and time.perf_counter() - t0 >= budget) or calls >= 200:
            return flops / best / 1e9


def measure(shape: tuple[int, int, int], budget: float = BUDGET_S) -> dict[str, float]:
    """GFLOP/s of each candidate on this machine (CPU), at `shape` = (M, K, N)."""
    sm, sk, sn = SCREEN_SHAPE
    screen_kernels = _kernels(*probe_operands(sm, sk, sn))
    screen = {name: 0.0 if fn is None else _rate(fn, 2.0 * sm * sk * sn, 0.005)
              for name, fn in screen_kernels.items()}
    m, k, n = min(shape[0], MAX_ROWS), shape[1], shape[2]
    kernels = _kernels(*probe_operands(m, k, n))
    rates = {}
    for name, fn in kernels.items():
        if fn is None or screen[name] <= 0 or (name != "fp32" and screen[name] < SCREEN_DROP * screen["fp32"]):
            rates[name] = screen[name]  # far slower (or absent): the screening figure stands
        else:
            rates[name] = _rate(fn, 2.0 * m * k * n, budget)
    return rates


def cpu_name() -> str:
    """The CPU's model name with its family and model numbers: cloud VMs often report a generic
    name ("Intel(R) Xeon(R) Processor") for CPUs of different generations."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']} model {fields['model']})"
    return name


def kernel_isa() -> str:
    """The instruction set torch's kernels dispatch to (ATEN_CPU_CAPABILITY lowers it), plus
    oneDNN's cap when ONEDNN_MAX_CPU_ISA sets one: both change which kernels are fast."""
    isa = torch.backends.cpu.get_cpu_capability()
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return f"{isa}, oneDNN {cap}" if cap else isa


def cache_path() -> Path:
    """$LRM_PROBE_CACHE, else <cache>/lrm/precision-probe.json (<cache>: $XDG_CACHE_HOME or ~/.cache)"""
    if os.environ.get("LRM_PROBE_CACHE"):
        return Path(os.environ["LRM_PROBE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lrm" / "precision-probe.json"


def cache_key(shape: tuple[int, int, int], threads: int) -> str:
    return (f"{cpu_name()} | {kernel_isa()} | torch {torch.__version__} | {threads} threads"
            f" | {shape[0]}x{shape[1]}x{shape[2]}")


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass  # a read-only home: probe again next time


def probe(shape: tuple[int, int, int], measure_fn: Callable[[tuple[int, int, int]], dict[str, float]] = measure,
          path: Path | None = None,
          accuracy_fn: Callable[[tuple[int, int, int]], dict[str, float]] = accuracy) -> ProbeResult:
    """The measured choice for a CPU forward pass whose big Linear layers are `shape` = (M, K, N),
    from the cache when this CPU, torch version and thread count were probed before."""
    path = cache_path() if path is None else path
    key = cache_key(shape, torch.get_num_threads())
    data = _read_cache(path)
    entry = data.get(key)
    if (isinstance(entry, dict) and all(isinstance(entry.get(c), (int, float)) for c in CANDIDATES)
            and isinstance(entry.get("errors"), dict) and entry.get("quiet") is True):
        # entries from before the accuracy check or the quiet check are measured again
        rates = {c: float(entry[c]) for c in CANDIDATES}
        errors = {k: float(v) for k, v in entry["errors"].items() if isinstance(v, (int, float))}
        return ProbeResult(rates, choose(rates, errors=errors), cached=True, errors=errors)
    busy = _busy()
    before = _cpu_seconds()
    rates, errors = measure_fn(shape), accuracy_fn(shape)
    others = _others_cores(before, _cpu_seconds())
    if not busy and others < OTHERS_MAX:  # a measurement beside other work is used, not kept
        data[key] = {**rates, "errors": errors, "quiet": True}
        _write_cache(path, data)
    return ProbeResult(rates, choose(rates, errors=errors), errors=errors)


def _cpu_seconds() -> tuple[float, float, float] | None:
    """(busy CPU seconds of the whole machine from /proc/stat, this process's CPU seconds, wall
    clock), or None where /proc/stat cannot be read (not Linux)"""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    busy = sum(ticks) - ticks[3] - ticks[4]  # user nice system idle iowait irq softirq steal: all but idle, iowait
    return busy / hz, time.process_time(), time.perf_counter()


def _others_cores(before: tuple[float, float, float] | None, after: tuple[float, float, float] | None) -> float:
    """Cores that other processes kept busy on average between two `_cpu_seconds` readings
    (0.0 where unknown)"""
    if before is None or after is None or after[2] <= before[2]:
        return 0.0
    tick = (os.cpu_count() or 1) / os.sysconf("SC_CLK_TCK")  # /proc/stat counts whole ticks per CPU
    others = (after[0] - before[0]) - (after[1] - before[1]) - tick
    return max(0.0, others / (after[2] - before[2]))


def _busy() -> bool:
    """Whether other work holds half of this process's cores or more (1-minute load average):
    timings are then noise (measured: int8 read 0.4 to 250 GFLOP/s beside a training run)."""
    try:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return os.getloadavg()[0] >= 0.5 * cores
    except OSError:
        return False


def model_shape(transformer) -> tuple[int, int, int]:
    """The (rows, width, out width) of a model's transformer MLP (its biggest Linear layers):
    the shape the probe times. transformer: a TransformerConfig."""
    return 3 * transformer.token_res**2, transformer.dim, 4 * transformer.dim


def probing_enabled() -> bool:
    return os.environ.get("LRM_PROBE", "1").strip().lower() not in ("0", "no", "off", "false")
