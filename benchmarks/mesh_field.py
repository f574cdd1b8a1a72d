"""A realistic density field for mesh benchmarks: the decoder of a preset (openlrm-base by
default: 3 bilinear 64x64 plane lookups of 48 channels + a 4-layer 64-wide MLP) with planes
and MLP fitted for a few hundred steps to an analytic object, so that the field has a surface
where a trained model's would, soft edges, thin parts and some background noise.

The object: a ball (body) with a torus handle and a thin fin, about the size of an object
that fills the input photo. Fitted once and cached (a safetensors file).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lrm.model.field import Field
from lrm.model.presets import PRESETS

DEFAULT_CACHE = Path.home() / ".cache" / "lrm" / "bench_mesh_field_{preset}.safetensors"


def object_sdf(p: torch.Tensor) -> torch.Tensor:
    """Signed distance (approximate) of the benchmark object, negative inside: [N, 3] -> [N]"""
    body = (p - torch.tensor([0.0, 0.0, -0.05])).norm(dim=-1) - 0.45
    q = p - torch.tensor([0.5, 0.0, 0.0])  # handle: torus in the xz-plane
    ring = torch.stack([torch.stack([q[:, 0], q[:, 2]], -1).norm(dim=-1) - 0.22, q[:, 1]], -1).norm(dim=-1) - 0.06
    fin = torch.maximum((p[:, 1] - 0.0).abs() - 0.02, (p - torch.tensor([0.0, 0.0, 0.45])).norm(dim=-1) - 0.3)
    return torch.minimum(torch.minimum(body, ring), fin)


def target_density(p: torch.Tensor, peak: float = 30.0, width: float = 0.015) -> torch.Tensor:
    return peak * torch.sigmoid(-object_sdf(p) / width)


def fit_field(preset: str = "openlrm-base", steps: int = 400, points: int = 16384, seed: int = 0,
              log: bool = True) -> tuple[Field, torch.Tensor]:
    """Fit planes [1, 3, C, 64, 64] and the decoder so softplus/exp(raw - 1) ~ target density."""
    cfg = PRESETS[preset]().field
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    field = Field(cfg)
    planes = torch.nn.Parameter(torch.randn(1, 3, cfg.channels, 64, 64, generator=g) * 0.1)
    opt = torch.optim.Adam([{"params": [planes], "lr": 3e-2}, {"params": field.parameters(), "lr": 3e-3}])
    t0 = time.perf_counter()
    for step in range(steps):
        uniform = torch.rand(points // 2, 3, generator=g) * 2 - 1
        near = torch.rand(points - points // 2, 3, generator=g) * 1.6 - 0.8
        xyz = torch.cat([uniform, near]) * cfg.radius
        raw, _ = field(planes, xyz[None])
        loss = F.mse_loss(field.density(raw[0]), target_density(xyz / cfg.radius)) / 100.0
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log and (step % 100 == 0 or step == steps - 1):
            print(f"fit step {step:4d} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return field.eval(), planes.detach()


def load_or_fit(preset: str = "openlrm-base", cache: Path | None = None, steps: int = 400) -> tuple[Field, torch.Tensor]:
    from safetensors.torch import load_file, save_file

    path = Path(str(cache or DEFAULT_CACHE).format(preset=preset))
    if path.exists():
        state = load_file(str(path))
        field = Field(PRESETS[preset]().field)
        field.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("field.")}, strict=True)
        return field.eval(), state["planes"]
    field, planes = fit_field(preset, steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"planes": planes.contiguous(), **{f"field.{k}": v.contiguous() for k, v in field.state_dict().items()}}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)
    return field, planes


def field_functions(field: Field, planes: torch.Tensor):
    """(density_fn, color_fn) over world xyz [N, 3], exactly what LRM.query computes."""

    def density(xyz: torch.Tensor) -> torch.Tensor:
        raw, _ = field(planes, xyz[None])
        return field.density(raw[0])

    def color(xyz: torch.Tensor) -> torch.Tensor:
        return field(planes, xyz[None])[1][0]

    return density, color
