"""What the harness evaluates: anything that turns one dataset view into a mesh and novel views.

A predictor has a `name`, the azimuth of its input camera (`front_azimuth`, which fixes its
output frame; see docs/evaluation.md), the grey level it renders on (`background`), and
`predict(rgba, distance, gt) -> Prediction`, where `gt` is the ground-truth mesh already moved
into the predictor's frame (for oracle baselines such as the sphere's radius; models ignore it)
and the Prediction's mesh and cameras are in that frame too. `ModelPredictor` wraps any model
the pipeline loads (bundled, preset, folder, published weights); lrm.evaluate.baselines has
the others.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import trimesh

from lrm import cameras
from lrm.errors import EmptySurfaceError
from lrm.evaluate.geometry import as_trimesh
from lrm.mesh.view_render import rasterize
from lrm.pipeline import MESH_SUPERSAMPLE

DATASET_FRONT_AZIMUTH = -90.0  # view 0 of lrm-mv-1 sits at (0, -d, 0)

# (c2w [V, 4, 4], intrinsics [V, 4], size) -> rgb [V, H, W, 3] float in [0, 1]
RenderFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


@dataclass
class Prediction:
    render: RenderFn  # novel views, cameras in the predictor's frame
    mesh: trimesh.Trimesh | None  # in the predictor's frame; None when there is no surface
    mesh_error: str | None = None  # why `mesh` is None
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds


def to_model_frame(c2w_input: np.ndarray, front_azimuth: float) -> np.ndarray:
    """4x4 taking dataset coordinates to a predictor's frame, given the input view's pose.

    The input camera first becomes OpenLRM's canonical camera at (0, -d, 0) (d = its distance
    from the origin), then the world turns about z by (front_azimuth − (−90°)) so that it sits at
    the predictor's front azimuth. c2w_input: [4, 4] -> [4, 4]
    """
    c2w = torch.as_tensor(c2w_input, dtype=torch.float64)
    canon = cameras.canonical_c2w(float(c2w[:3, 3].norm())).double()
    a = np.radians(front_azimuth - DATASET_FRONT_AZIMUTH)
    turn = np.eye(4)
    turn[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return turn @ (canon @ torch.linalg.inv(c2w)).numpy()


class ModelPredictor:
    """A model through lrm.pipeline.Reconstructor: reconstruct from the view as given (alpha
    present: no background removal; already framed by its camera: no recentring), then extract
    the mesh; an empty surface is recorded, and the rendered views are still evaluated."""

    def __init__(self, reconstructor, mesh_resolution: int | None = None, mesh_threshold: float | None = None,
                 photo_colors: bool = False, render_source: str = "field"):
        assert render_source in ("field", "mesh"), render_source
        self.rec = reconstructor
        self.render_source = render_source  # novel views: the field volume-rendered, or the mesh rasterised
        self.photo_colors = photo_colors  # mesh vertex colours from the input where it sees (Reconstructor.photo_colors)
        self.device = reconstructor.device
        inf = reconstructor.inference
        self.name = reconstructor.model.cfg.name
        self.front_azimuth = inf.front_azimuth
        self.background = inf.render_background
        self.camera_conditioned = reconstructor.model.camera_embedder is not None
        self.mesh_resolution = mesh_resolution or inf.mesh_resolution
        self.mesh_threshold = inf.mesh_threshold if mesh_threshold is None else mesh_threshold

    def describe(self) -> dict:
        return {"name": self.name, "kind": "model", "front_azimuth": self.front_azimuth,
                "camera_conditioned": self.camera_conditioned, "device": str(self.rec.device),
                "mesh_resolution": self.mesh_resolution, "mesh_threshold": self.mesh_threshold,
                "vertex_colors": "photo" if self.photo_colors else "field", "render_source": self.render_source}

    def predict(self, rgba: np.ndarray, distance: float, gt: trimesh.Trimesh | None = None) -> Prediction:
        """rgba: [H, W, 4] uint8 input view; distance: its camera's distance from the origin."""
        r = self.rec.reconstruct(rgba, remove_bg=False, recenter=False, mesh=False,
                                 source_distance=distance if self.camera_conditioned else None)
        planes, timings = r.planes, dict(r.timings)
        mesh, error = None, None
        t = time.perf_counter()
        try:
            # every marching-cubes face: the geometry metrics score the field's surface, not a decimation
            m = self.rec.extract_mesh(planes, self.mesh_resolution, self.mesh_threshold, target_faces=0)
            if self.photo_colors and len(m.faces):
                m = self.rec.photo_colors(m, r.image, distance if self.camera_conditioned else None)
            mesh = as_trimesh(m) if len(m.faces) else None
            error = None if mesh is not None else "the extracted mesh has no faces"
        except EmptySurfaceError as exc:
            error = str(exc)
        timings["mesh"] = time.perf_counter() - t
        background = self.background

        def render(c2w: np.ndarray, intrinsics: np.ndarray, size: int) -> np.ndarray:
            if self.render_source == "mesh":  # flat vertex colours, antialiased as turntables; no mesh: background
                if mesh is None:
                    return np.full((len(c2w), size, size, 3), background, np.float32)
                return np.stack([rasterize(m.vertices, m.faces, m.colors, c2w[i], intrinsics[i], size,
                                           background=background, supersample=MESH_SUPERSAMPLE)[0]
                                 for i in range(len(c2w))])
            out = self.rec.render_views(planes, torch.as_tensor(c2w, dtype=torch.float32),
                                        torch.as_tensor(intrinsics, dtype=torch.float32), size, background)
            return out["rgb"]

        return Prediction(render, mesh, error, timings)
