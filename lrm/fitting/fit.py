"""Fit a triplane and the field decoder of an architecture directly to a coloured mesh.

No encoder or transformer: the planes [1, 3, C, h, w] are free parameters, optimised with the
decoder so that the density matches the mesh's occupancy and the colour its surface colour.
This gives realistic fields at full size (for benchmarks of rendering and meshing, where random
weights give fog or noise) and an upper bound of what a feed-forward model can reach.

Targets, with the mesh centred and scaled so that its largest half-extent is `extent` x radius:
- occupancy: the mesh voxelised on a `voxels`³ grid by ray parity along z (exact for closed
  meshes; a union of closed parts is voxelised part by part), looked up trilinearly;
- density: a logistic loss on (raw - raw at the mesh threshold) / T against the soft occupancy,
  which puts the iso-surface where the interpolated occupancy is ½ (unbiased), plus hinge
  losses pushing the activated density above `inside_factor` x the threshold well inside and
  below `outside_density` well outside (so that empty space is really empty);
- colour: the surface colour (vertex colours or texture) at area-uniform surface samples,
  supervised on points jittered off the surface.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from lrm.configs import from_dict, to_dict
from lrm.errors import LRMError
from lrm.fitting.targets import MeshTargets, normalize
from lrm.model.field import Field
from lrm.model.lrm import LRMConfig


@dataclass
class FitConfig:
    steps: int = 300  # optimisation steps
    points: int = 16384  # sample points per step
    lr_planes: float = 5e-2  # Adam learning rate of the planes
    lr_field: float = 1e-2  # Adam learning rate of the decoder
    extent: float = 0.8  # largest half-extent of the object / field radius
    voxels: int = 192  # side of the occupancy grid used for labels
    surface_samples: int = 400_000  # coloured surface samples drawn once
    inside_factor: float = 10.0  # inside density target = factor x mesh threshold
    outside_density: float = 1e-5  # outside density target (below empty-space skipping's cut)
    seed: int = 0  # seed of the samples and the initialisation


def inverse_density(field: Field, density: float) -> float:
    """The raw value whose activated density is `density`."""
    cfg = field.cfg
    raw = math.log(math.expm1(density)) if cfg.density == "softplus" else math.log(density)
    return raw - cfg.density_bias


def fit_field(
    mesh: trimesh.Trimesh, cfg: LRMConfig, fit: FitConfig, log: Callable[[str], None] = lambda s: None
) -> tuple[Field, torch.Tensor, trimesh.Trimesh]:
    """Fit planes + decoder of architecture `cfg` to `mesh`.

    -> field (eval mode), planes [1, 3, C, h, w], the normalised mesh (the frame of the field)
    """
    torch.manual_seed(fit.seed)
    radius = cfg.field.radius
    mesh = normalize(mesh, radius, fit.extent)
    targets = MeshTargets(mesh, radius, fit.voxels, fit.surface_samples, fit.seed)
    field = Field(cfg.field)
    side = 2 * cfg.transformer.token_res
    planes = torch.nn.Parameter(torch.randn(1, 3, cfg.field.channels, side, side) * 0.1)
    opt = torch.optim.Adam([{"params": [planes], "lr": fit.lr_planes},
                            {"params": field.parameters(), "lr": fit.lr_field}])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, fit.steps, eta_min=0.05 * fit.lr_field)
    raw_in = inverse_density(field, fit.inside_factor * cfg.inference.mesh_threshold)
    raw_out = inverse_density(field, fit.outside_density)
    raw_thr = inverse_density(field, cfg.inference.mesh_threshold)
    scale = 1.0 / (raw_in - raw_out)
    temperature = (raw_in - raw_out) / 16
    gen = torch.Generator().manual_seed(fit.seed)
    t0 = time.perf_counter()
    for step in range(fit.steps):
        xyz, occ, colors, m = targets.sample(fit.points, gen)
        raw, rgb = field(planes, xyz[None])
        raw = raw[0]
        hinge = (occ == 1) * F.relu(raw_in - raw) + (occ == 0) * F.relu(raw - raw_out)
        logistic = F.binary_cross_entropy_with_logits((raw - raw_thr) / temperature, occ)
        loss_occ = logistic + hinge.mean() * scale
        loss_rgb = F.mse_loss(rgb[0, :m], colors)
        loss = loss_occ + loss_rgb
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == fit.steps - 1:
            log(f"step {step:4d}  occupancy {loss_occ.item():.4f}  colour {loss_rgb.item():.4f}  "
                f"{time.perf_counter() - t0:.0f}s")
    return field.eval(), planes.detach(), mesh


# --- evaluation ------------------------------------------------------------------------
@torch.no_grad()
def field_mesh(field: Field, planes: torch.Tensor, threshold: float, resolution: int) -> trimesh.Trimesh:
    """Dense marching cubes of the fitted field (grid with endpoints over [-r, r]³), vertex colours."""
    import mcubes

    from lrm.model.fastfield import FoldedField

    r = field.cfg.radius
    folded = FoldedField(field, planes)
    axis = torch.linspace(-r, r, resolution)
    density = []
    for x in axis:  # one x-slab at a time
        yz = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
        xyz = torch.cat([x.expand(len(yz), 1), yz], -1)
        density.append(field.density(folded(xyz[None])[0][0]).reshape(resolution, resolution))
    volume = torch.stack(density).numpy()
    verts, faces = mcubes.marching_cubes(volume, threshold)
    if len(faces) == 0:
        raise LRMError(f"the fitted field has no surface at density {threshold}")
    verts = verts * (2 * r / (resolution - 1)) - r
    rgb = folded(torch.from_numpy(verts).float()[None])[1][0].clamp(0, 1).numpy()
    return trimesh.Trimesh(verts, faces, vertex_colors=(rgb * 255 + 0.5).astype(np.uint8), process=False)


def fit_metrics(field: Field, planes: torch.Tensor, mesh: trimesh.Trimesh, threshold: float,
                resolution: int = 192, points: int = 20_000) -> tuple[dict[str, float], trimesh.Trimesh]:
    """Volume IoU (voxel centres at `resolution`) and surface Chamfer of the fitted field's mesh
    against the normalised input mesh. -> metrics, the fitted mesh"""
    from lrm.fitting.targets import voxelize
    from lrm.model.fastfield import FoldedField
    from lrm.fitting.surface_distance import surface_chamfer

    r = field.cfg.radius
    occ = torch.from_numpy(voxelize(mesh, resolution, r))
    centres = (torch.arange(resolution) + 0.5) * (2 * r / resolution) - r
    xyz = torch.stack(torch.meshgrid(centres, centres, centres, indexing="ij"), -1).reshape(-1, 3)
    raw, _ = FoldedField(field, planes)(xyz[None])
    pred = (field.density(raw[0]) > threshold).reshape(occ.shape)
    iou = float((pred & occ).sum() / (pred | occ).sum().clamp(min=1))
    fitted = field_mesh(field, planes, threshold, resolution)
    return {"iou": iou, "chamfer": surface_chamfer(fitted, mesh, points)}, fitted


# --- persistence -----------------------------------------------------------------------
FIT_NAME = "fit.safetensors"


def save_fit(folder: str | Path, cfg: LRMConfig, field: Field, planes: torch.Tensor,
             metrics: dict | None = None) -> Path:
    """folder/config.json (the architecture), folder/fit.safetensors (planes + field.*), metrics.json."""
    from lrm.tensorfile import save_tensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"planes": planes.detach().float().contiguous()}
    tensors.update({f"field.{k}": v.detach().float().contiguous() for k, v in field.state_dict().items()})
    save_tensors(tensors, folder / FIT_NAME)
    (folder / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return folder


def load_fit(folder: str | Path) -> tuple[LRMConfig, Field, torch.Tensor]:
    """-> architecture config, fitted field (eval), planes [1, 3, C, h, w]"""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / FIT_NAME).is_file():
        raise LRMError(f"{folder}: no {FIT_NAME} (made by `lrm fit`)")
    cfg = from_dict(LRMConfig, json.loads((folder / "config.json").read_text()), str(folder / "config.json"))
    tensors = load_file(str(folder / FIT_NAME))
    field = Field(cfg.field)
    field.load_state_dict({k[len("field."):]: v for k, v in tensors.items() if k.startswith("field.")})
    return cfg, field.eval(), tensors["planes"]
