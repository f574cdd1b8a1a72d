"""Strict, key-by-key reading of an upstream state dict, and safe checkpoint file readers.

A converter asks a `StateReader` for every upstream tensor it needs, with the expected shape.
The reader records what is missing or mis-shaped instead of failing at the first problem, and
`finish()` raises one `CheckpointError` naming every missing, mis-shaped and unexpected
(never consumed) key. Keys known to be unused upstream (a ViT pooler, a DINOv2 mask token) are
consumed with `drop()`. Nothing is loaded non-strictly.

In recording mode (`StateReader.recording()`) the reader holds no tensors: `take` returns meta
tensors of the requested shape and `table` lists the upstream keys and shapes a converter
expects. This gives the complete upstream key table of any config without allocating it.

Files are read without executing code: safetensors, or pickles through
`torch.load(weights_only=True)`, which only rebuilds tensors and plain containers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lrm.errors import CheckpointError
from lrm.model.field import FieldConfig

Shape = tuple[int, ...]


def name_list(keys: list[str], limit: int = 6) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


class StateReader:
    """Consume `state` (upstream key -> tensor) strictly; `source` names it in error messages."""

    def __init__(self, state: dict[str, torch.Tensor] | None, source: str, prefix: str = "") -> None:
        self.state = state
        self.source = source
        self.prefix = prefix
        self.used: set[str] = set()
        self.missing: list[str] = []
        self.mis_shaped: list[str] = []
        self.table: dict[str, Shape] = {}  # every key asked for, with its expected shape
        self.optional: dict[str, Shape] = {}  # known-unused keys that may be present

    @classmethod
    def recording(cls, prefix: str = "") -> "StateReader":
        return cls(None, "<key table>", prefix)

    def scoped(self, prefix: str) -> "StateReader":
        """A view sharing this reader's record (used, missing, table) with a longer key prefix."""
        child = object.__new__(StateReader)
        child.__dict__ = dict(self.__dict__)  # shallow: the record containers are shared
        child.prefix = self.prefix + prefix
        return child

    def keys(self) -> list[str]:
        """Upstream keys under this reader's prefix, prefix stripped (empty when recording)."""
        if self.state is None:
            return []
        n = len(self.prefix)
        return [k[n:] for k in self.state if k.startswith(self.prefix)]

    def take(self, key: str, shape: Shape) -> torch.Tensor:
        """The tensor at prefix+key, which must have `shape`. Problems are recorded, and a
        zero tensor of the expected shape (expanded, not allocated) stands in so that the
        conversion can go on and report every problem at once."""
        full = self.prefix + key
        shape = tuple(int(s) for s in shape)
        self.table[full] = shape
        if self.state is None:
            return torch.empty(shape, device="meta")
        tensor = self.state.get(full)
        if tensor is None:
            self.missing.append(full)
            return torch.zeros(()).expand(shape)
        self.used.add(full)
        if tuple(tensor.shape) != shape:
            self.mis_shaped.append(f"{full} {tuple(tensor.shape)} (expected {shape})")
            return torch.zeros(()).expand(shape)
        return tensor

    def linear(self, out: dict[str, torch.Tensor], ours: str, theirs: str, n_out: int, n_in: int,
               bias: bool = True) -> None:
        """out[ours.weight] = theirs.weight [n_out, n_in], and the bias [n_out] likewise."""
        out[ours + ".weight"] = self.take(theirs + ".weight", (n_out, n_in))
        if bias:
            out[ours + ".bias"] = self.take(theirs + ".bias", (n_out,))

    def affine(self, out: dict[str, torch.Tensor], ours: str, theirs: str, n: int) -> None:
        """A norm layer's weight and bias, both [n]."""
        out[ours + ".weight"] = self.take(theirs + ".weight", (n,))
        out[ours + ".bias"] = self.take(theirs + ".bias", (n,))

    def drop(self, key: str, shape: Shape) -> None:
        """Consume prefix+key if present: a tensor known to be unused by the model."""
        full = self.prefix + key
        self.optional[full] = tuple(int(s) for s in shape)
        if self.state is not None and full in self.state:
            self.used.add(full)

    def unexpected(self) -> list[str]:
        if self.state is None:
            return []
        return [k for k in self.state if k not in self.used]

    def finish(self) -> None:
        """Raise a CheckpointError naming every missing, mis-shaped or unexpected key."""
        problems = []
        if self.missing:
            problems.append(f"missing keys: {name_list(self.missing)}")
        if self.mis_shaped:
            problems.append(f"shape mismatch: {name_list(self.mis_shaped)}")
        extra = self.unexpected()
        if extra:
            problems.append(f"unexpected keys: {name_list(extra)}")
        if problems:
            raise CheckpointError(f"{self.source}: " + "; ".join(problems))


def read_upsampler_and_field(r: StateReader, out: dict[str, torch.Tensor], d: int, field: FieldConfig,
                             upsampler: str, decoder: str) -> None:
    """The layers both published families share, under their own names: the 2x2 stride-2
    deconvolution `upsampler` (weight [d, C, 2, 2]) and the field MLP `decoder` (Linear layers at
    indices 0, 2, 4, ... of an nn.Sequential)."""
    out["upsampler.deconv.weight"] = r.take(upsampler + ".weight", (d, field.channels, 2, 2))
    out["upsampler.deconv.bias"] = r.take(upsampler + ".bias", (field.channels,))
    dims = [3 * field.channels] + [field.hidden] * (field.layers - 1) + [4]
    for j in range(field.layers):
        r.linear(out, f"field.mlp.{2 * j}", f"{decoder}.{2 * j}", dims[j + 1], dims[j])


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, without running code from it.

    `.safetensors` through safetensors; anything else (`.bin`, `.ckpt`, `.pth`, `.pt`) through
    `torch.load(weights_only=True)`, which refuses every object but tensors and containers.
    The result must be a flat mapping of names to tensors.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: cannot read safetensors ({exc})") from None
    import pickle

    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # legacy (pre-zip) format cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path}: refused to unpickle: it holds objects other than tensors "
            f"(read with torch.load(weights_only=True): {first})"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__
        keys = name_list([str(k) for k in obj]) if isinstance(obj, dict) else ""
        raise CheckpointError(
            f"{path}: expected a flat state dict (name -> tensor), got a {kind}"
            + (f" with keys {keys}" if keys else "")
        )
    return dict(obj)
