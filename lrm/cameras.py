"""Camera conventions, as plain functions over tensors.

- World: right-handed, Z up. Objects live in the box [-1, 1]³ (OpenLRM) or [-0.87, 0.87]³ (TripoSR).
- Poses: camera-to-world 4x4, OpenGL/Blender camera axes (x right, y up, looking along -z).
- Intrinsics: normalised by image size, `(fx/W, fy/H, cx/W, cy/H)`.
- The 16-number conditioning camera: the 3x4 c2w row-major, then fx/W, fy/H, cx/W, cy/H.
- Azimuth is measured from +x towards +y; elevation from the xy-plane towards +z.
"""

from __future__ import annotations

import math

import torch


def fov_to_focal(fov_deg: float) -> float:
    """Normalised focal length (f / image side) of a square image with field of view fov_deg."""
    return 0.5 / math.tan(math.radians(fov_deg) / 2)


def focal_to_fov(focal: float) -> float:
    return math.degrees(2 * math.atan(0.5 / focal))


def intrinsics(focal: float, n: int = 1) -> torch.Tensor:
    """Normalised intrinsics of a centred square camera: [n, 4] (fx, fy, cx, cy)."""
    return torch.tensor([[focal, focal, 0.5, 0.5]]).expand(n, 4).clone()


def camera_vector(c2w: torch.Tensor, intr: torch.Tensor) -> torch.Tensor:
    """c2w: [..., 4, 4]; intr: [..., 4] -> [..., 16] (3x4 row-major + fx, fy, cx, cy)"""
    return torch.cat([c2w[..., :3, :4].flatten(-2), intr], dim=-1)


def canonical_c2w(distance: float) -> torch.Tensor:
    """OpenLRM's source camera: at (0, -d, 0) looking along +y, image up = +z. -> [4, 4]"""
    return torch.tensor(
        [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, -distance], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    )


def look_at(positions: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """OpenGL c2w of cameras at `positions` looking at `target` (default origin), world up +z.

    positions: [N, 3] -> [N, 4, 4]
    """
    target = torch.zeros(3) if target is None else target
    back = positions - target
    back = back / back.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 0.0, 1.0]).expand_as(back)
    right = torch.linalg.cross(up, back)
    right = right / right.norm(dim=-1, keepdim=True)
    true_up = torch.linalg.cross(back, right)
    c2w = torch.eye(4).repeat(positions.shape[0], 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, true_up, back, positions
    return c2w


def orbit_positions(azimuths_deg: torch.Tensor, elevation_deg: float, distance: float) -> torch.Tensor:
    """azimuths_deg: [N] -> positions [N, 3] on a sphere of radius `distance`."""
    az = torch.deg2rad(azimuths_deg.double())
    el = math.radians(elevation_deg)
    pos = torch.stack(
        [distance * math.cos(el) * torch.cos(az), distance * math.cos(el) * torch.sin(az),
         torch.full_like(az, distance * math.sin(el))], dim=-1,
    )
    return pos.float()


def orbit_cameras(
    n: int, distance: float, elevation_deg: float, start_azimuth_deg: float
) -> torch.Tensor:
    """n cameras evenly spaced in azimuth (no repeated end frame), moving from
    `start_azimuth_deg` towards larger azimuths. -> c2w [n, 4, 4]"""
    az = start_azimuth_deg + 360.0 * torch.arange(n) / n
    return look_at(orbit_positions(az, elevation_deg, distance))


def normalize_poses(c2w: torch.Tensor, distance: float | None = None) -> torch.Tensor:
    """Rotate a set of poses so that the first becomes the canonical source camera.

    c2w: [V, 4, 4] -> [V, 4, 4]; M = canonical(d) · inverse(c2w[0]), d = |position of view 0|
    unless given; every pose is left-multiplied by M.
    """
    d = float(c2w[0, :3, 3].norm()) if distance is None else distance
    m = canonical_c2w(d).to(c2w) @ torch.linalg.inv(c2w[0])
    return m @ c2w


def world_to_view_frame(front_azimuth_deg: float) -> torch.Tensor:
    """Rotation from the model's Z-up world to a Y-up "viewer" frame (glTF convention) in which
    the input photo's camera sits on +Z: a mesh opened in a glTF viewer faces the viewer the way
    the photo does. front_azimuth_deg is the azimuth of the input camera. -> [3, 3]"""
    a = math.radians(front_azimuth_deg)
    z = torch.tensor([math.cos(a), math.sin(a), 0.0])  # towards the viewer
    y = torch.tensor([0.0, 0.0, 1.0])  # up
    x = torch.linalg.cross(y, z)
    return torch.stack([x, y, z])  # rows: new axes expressed in world coordinates


ZERO123PP_AZIMUTHS = (30.0, 90.0, 150.0, 210.0, 270.0, 330.0)  # Zero123++ v1.2's six views, degrees
ZERO123PP_ELEVATIONS = (20.0, -10.0, 20.0, -10.0, 20.0, -10.0)
ZERO123PP_FOV = 30.0


def zero123pp_cameras(radius: float = 4.0) -> torch.Tensor:
    """The 16-number cameras of the six views Zero123++ v1.2 generates (a 3 x 2 sheet of tiles,
    view k = 2 * row + column), looking at the origin from `radius`, FOV 30 degrees. -> [6, 16]"""
    pos = torch.cat([orbit_positions(torch.tensor([a]), e, radius)
                     for a, e in zip(ZERO123PP_AZIMUTHS, ZERO123PP_ELEVATIONS)])
    return camera_vector(look_at(pos), intrinsics(fov_to_focal(ZERO123PP_FOV), 6))


def project(points: torch.Tensor, c2w: torch.Tensor, intr: torch.Tensor, eps: float = 1e-9
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinhole projection of world points into normalised image coordinates (x right, y down,
    [0, 1] across the image), in the points' dtype.

    points: [..., N, 3]; c2w: [..., 3, 4] (or 4 x 4) OpenGL camera-to-world; intr: [..., 4]
    (fx, fy, cx, cy) -> xy [..., N, 2], depth [..., N] along the viewing direction. Points with
    depth <= eps are projected as if at depth eps; callers decide what that means."""
    rot, origin = c2w[..., :3, :3], c2w[..., :3, 3]
    cam = ((points - origin[..., None, :]).unsqueeze(-2) @ rot[..., None, :, :]).squeeze(-2)  # R^T (X - t)
    depth = -cam[..., 2]  # OpenGL cameras look along -z
    z = depth.clamp(min=eps)
    k = intr[..., None, :]
    x = k[..., 0] * cam[..., 0] / z + k[..., 2]
    y = k[..., 3] - k[..., 1] * cam[..., 1] / z
    return torch.stack([x, y], dim=-1), depth
