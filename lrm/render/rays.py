"""Rays from cameras, and ray bounds against a box or a sphere.

Cameras are camera-to-world 4x4 matrices in the OpenGL/Blender convention (x right, y up,
looking along -z) with intrinsics normalised by the image size: `(fx/W, fy/H, cx/W, cy/H)`.
Pixel (row i, column j) of a `res`-sided image has its centre at ((j + 0.5)/res, (i + 0.5)/res)
in normalised image coordinates; row 0 is the top of the image.

A region (crop) of a virtual full-resolution image is rendered by giving the top-left
`anchor` (row, column) of the region and its side: rays are those of the full image's pixels.
"""

from __future__ import annotations

import torch


def camera_rays(
    c2w: torch.Tensor,
    intrinsics: torch.Tensor,
    resolution: int | torch.Tensor,
    region: int | None = None,
    anchor: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through pixel centres of a (cropped) image.

    c2w: [B, 4, 4] OpenGL camera-to-world; intrinsics: [B, 4] (fx, fy, cx, cy) normalised;
    resolution: side of the full image, an int or [B]; region: side of the rendered crop
    (default: the full image); anchor: [B, 2] (row, col) of the crop's top-left pixel.
    Returns origins [B, R, 3] and unit directions [B, R, 3], R = region², pixel p = i*region + j.
    """
    b = c2w.shape[0]
    assert c2w.shape[1:] == (4, 4) and intrinsics.shape == (b, 4), (c2w.shape, intrinsics.shape)
    dev = c2w.device
    res = torch.as_tensor(resolution, dtype=torch.float32, device=dev).expand(b)
    side = int(region if region is not None else int(res[0].item()))
    if anchor is None:
        anchor = torch.zeros(b, 2, device=dev)
    idx = torch.arange(side, device=dev, dtype=torch.float32)
    rows = (idx[None, :] + anchor[:, :1].float() + 0.5) / res[:, None]  # [B, side]
    cols = (idx[None, :] + anchor[:, 1:].float() + 0.5) / res[:, None]
    yc = rows[:, :, None].expand(b, side, side).reshape(b, -1)  # [B, R]
    xc = cols[:, None, :].expand(b, side, side).reshape(b, -1)
    k = intrinsics.float()
    fx, fy, cx, cy = (k[:, i : i + 1] for i in range(4))
    x = (xc - cx) / fx  # OpenCV lift: x right, y down, z forward
    y = (yc - cy) / fy
    cam_dirs = torch.stack([x, -y, -torch.ones_like(x)], dim=-1)  # -> OpenGL: y up, -z forward
    rot = c2w[:, :3, :3].float()
    dirs = torch.einsum("bij,brj->bri", rot, cam_dirs)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = c2w[:, None, :3, 3].float().expand_as(dirs)
    return origins, dirs


def ray_box(
    origins: torch.Tensor, dirs: torch.Tensor, half: float, clamp_near: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab test against the box [-half, half]³.

    origins, dirs: [..., 3] -> near, far: [...]; a ray misses when far <= near.
    Direction components below 1e-6 in magnitude are replaced by +1e-6.
    """
    d = torch.where(dirs.abs() < 1e-6, torch.full_like(dirs, 1e-6), dirs)
    t0 = (-half - origins) / d
    t1 = (half - origins) / d
    near = torch.minimum(t0, t1).amax(dim=-1)
    far = torch.maximum(t0, t1).amin(dim=-1)
    if clamp_near:
        near = near.clamp(min=0.0)
    return near, far


def ray_sphere(
    origins: torch.Tensor, dirs: torch.Tensor, radius: float, clamp_near: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Intersection with the sphere of `radius` at the origin.

    origins, dirs (unit): [..., 3] -> near, far: [...]; a ray misses when far <= near.
    """
    b = (origins * dirs).sum(-1)
    c = (origins * origins).sum(-1) - radius**2
    disc = b * b - c
    root = disc.clamp(min=0).sqrt()
    near, far = -b - root, -b + root
    miss = disc <= 0
    far = torch.where(miss, near, far)
    if clamp_near:
        near = near.clamp(min=0.0)
    return near, far
