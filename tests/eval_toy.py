"""A tiny lrm-mv-1 dataset of analytic objects (rasterised trimesh primitives) for evaluation tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import trimesh

from lrm import cameras
from lrm.data.format import ObjectViews, index_dataset, write_dataset_info, write_object
from lrm.mesh.view_render import rasterize

DISTANCE, FOCAL = 3.2, 0.75


def _render_rgba(mesh: trimesh.Trimesh, c2w: np.ndarray, size: int) -> np.ndarray:
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0
    rgb, alpha = rasterize(mesh.vertices, mesh.faces, colours, c2w, np.array([FOCAL, FOCAL, 0.5, 0.5]), size,
                           background=0.0, shading=0.3, supersample=2)
    straight = rgb / np.maximum(alpha, 1e-6)[..., None]  # un-premultiply
    return np.concatenate([straight, alpha[..., None]], -1).clip(0, 1).__mul__(255).round().astype(np.uint8)


def toy_objects() -> dict[str, trimesh.Trimesh]:
    """Meshes already normalised: longest bbox side spans [-1, 1], centred at the origin."""
    box = trimesh.creation.box((1.6, 1.0, 2.0))
    box = box.subdivide().subdivide()
    box.visual.vertex_colors = np.c_[(box.vertices / 2 + 0.5) * 255, np.full(len(box.vertices), 255)].astype(np.uint8)
    cyl = trimesh.creation.cylinder(radius=0.6, height=2.0, sections=48)
    cyl.visual.vertex_colors = np.array([230, 140, 40, 255], np.uint8)
    return {"box": box, "cylinder": cyl}


def make_toy_dataset(root: Path, size: int = 48, ring: int = 4) -> Path:
    write_dataset_info(root, {"resolution": size, "views": 2, "ring": ring, "source": "toy"})
    c2w = torch.stack([cameras.canonical_c2w(DISTANCE),
                       cameras.look_at(cameras.orbit_positions(torch.tensor([-60.0]), 20.0, DISTANCE))[0]]).numpy()
    ring_c2w = cameras.orbit_cameras(ring, DISTANCE, 20.0, -90.0).numpy()
    intr = np.tile(np.array([FOCAL, FOCAL, 0.5, 0.5], np.float32), (2, 1))
    for name, mesh in toy_objects().items():
        obj = ObjectViews(
            id=name,
            rgba=np.stack([_render_rgba(mesh, c, size) for c in c2w]),
            c2w=c2w, intrinsics=intr,
            ring_rgba=np.stack([_render_rgba(mesh, c, size) for c in ring_c2w]),
            ring_c2w=ring_c2w, ring_intrinsics=np.tile(intr[:1], (ring, 1)),
            meta={"split": "test", "source": "toy", "license": "CC0-1.0", "faces": len(mesh.faces)},
        )
        buf = io.BytesIO()
        mesh.export(buf, file_type="ply")
        write_object(root, obj, mesh_ply=buf.getvalue())
    index_dataset(root)
    return root
