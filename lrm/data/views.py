"""Where the cameras go: OpenLRM's training distribution plus a fixed evaluation ring.

Random views (as OpenLRM's Blender renders, docs/spec/openlrm-v1.1.md §14.4):
- view 0, the "front": camera at (0, -d, 0) looking along +y, image up = +z, d ~ U(1.9, 2.6);
  exactly `lrm.cameras.canonical_c2w(d)`, the model's source camera;
- views 1..V-1: direction uniform in the cube [-1, 1]³ then normalised, radius U(1.9, 2.6),
  rejected unless -0.75 < z < 1.6 (z of the camera position), looking at the origin, up +z;
- focal 0.75 (fx/W = fy/H, lens 24 mm on a 32 mm sensor: fov 67.38°), principal point centred.
Ring views (evaluation): K cameras at elevation 20°, distance 2.0, azimuths -90° + 360°·k/K
(view 0 = the front, then turning towards +x), same focal.

The random numbers come from a generator seeded by the object id: renders are reproducible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from lrm.cameras import focal_to_fov, look_at, orbit_cameras


@dataclass
class ViewConfig:
    views: int = 32  # random views per object; view 0 is the front view
    distance: tuple[float, float] = (1.9, 2.6)  # camera distance range of the random views
    z_range: tuple[float, float] = (-0.75, 1.6)  # allowed z of a random camera position
    focal: float = 0.75  # normalised focal fx/W = fy/H of every view
    ring: int = 16  # fixed evaluation views; 0 disables the ring
    ring_elevation: float = 20.0  # degrees above the xy-plane
    ring_distance: float = 2.0  # camera distance of the ring
    ring_start_azimuth: float = -90.0  # degrees; -90 = in front of the object, at -y

    @property
    def fov(self) -> float:
        return focal_to_fov(self.focal)


def object_seed(object_id: str) -> int:
    return int.from_bytes(hashlib.sha256(object_id.encode()).digest()[:8], "little")


def random_positions(n: int, cfg: ViewConfig, rng: np.random.Generator) -> np.ndarray:
    """[n, 3] camera positions: the front one, then rejection-sampled cube directions."""
    pos = [np.array([0.0, -rng.uniform(*cfg.distance), 0.0])]
    while len(pos) < n:
        direction = rng.uniform(-1.0, 1.0, 3)
        norm = np.linalg.norm(direction)
        radius = rng.uniform(*cfg.distance)
        if norm < 1e-6:
            continue
        p = direction / norm * radius
        if cfg.z_range[0] < p[2] < cfg.z_range[1]:
            pos.append(p)
    return np.stack(pos[:n])


def training_cameras(object_id: str, cfg: ViewConfig) -> tuple[np.ndarray, np.ndarray]:
    """-> c2w [V, 4, 4] float32 (OpenGL), intrinsics [V, 4] float32 (fx, fy, cx, cy normalised)."""
    rng = np.random.default_rng(object_seed(object_id))
    pos = random_positions(cfg.views, cfg, rng)
    c2w = look_at(torch.from_numpy(pos).float()).numpy()
    return c2w.astype(np.float32), _intrinsics(cfg.views, cfg.focal)


def ring_cameras(cfg: ViewConfig) -> tuple[np.ndarray, np.ndarray]:
    """-> c2w [K, 4, 4], intrinsics [K, 4] of the fixed evaluation ring (same for every object)."""
    if cfg.ring == 0:
        return np.zeros((0, 4, 4), np.float32), np.zeros((0, 4), np.float32)
    c2w = orbit_cameras(cfg.ring, cfg.ring_distance, cfg.ring_elevation, cfg.ring_start_azimuth)
    return c2w.numpy().astype(np.float32), _intrinsics(cfg.ring, cfg.focal)


def _intrinsics(n: int, focal: float) -> np.ndarray:
    return np.tile(np.array([[focal, focal, 0.5, 0.5]], np.float32), (n, 1))
