"""Slow, independent references for the splat tests: a numpy volume renderer of an analytic field
and a numpy Gaussian-splat rasteriser (EWA splatting as in the 3DGS paper: each Gaussian's 3D
covariance projected through the perspective Jacobian, a 0.3 px² low-pass, front-to-back alpha
compositing in depth order). Cameras are OpenGL-style pinholes looking at the origin."""

from __future__ import annotations

import numpy as np
import torch


def look_at_origin(eye: np.ndarray) -> np.ndarray:
    """-> c2w rotation [3, 3] (columns: camera right, up, back) of a camera at `eye` looking at
    the origin, with world +Z up in the image."""
    forward = -eye / np.linalg.norm(eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(right, forward), -forward], 1)


def volume_render(density, color, eye: np.ndarray, size: int, focal: float, samples: int = 768,
                  near: float = 0.5, far: float = 4.5) -> np.ndarray:
    """density, color: xyz [N, 3] torch -> [N] / [N, 3]; zero outside [-1, 1]³; white background.
    -> [size, size, 3]"""
    rot = look_at_origin(eye)
    j, i = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    d = np.stack([(j - size / 2) / (focal * size), -(i - size / 2) / (focal * size), -np.ones_like(j)], -1) @ rot.T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    t = np.linspace(near, far, samples)
    pts = torch.from_numpy((eye + d[..., None, :] * t[:, None]).reshape(-1, 3)).float()
    inside = (pts.abs() <= 1).all(-1)
    sigma = (density(pts) * inside).numpy().reshape(size, size, samples)
    rgb = color(pts).numpy().reshape(size, size, samples, 3)
    alpha = 1 - np.exp(-sigma * (t[1] - t[0]))
    trans = np.cumprod(np.concatenate([np.ones((size, size, 1)), 1 - alpha[..., :-1]], -1), -1)
    w = trans * alpha
    return (w[..., None] * rgb).sum(2) + (1 - w.sum(-1, keepdims=True))


def quaternion_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def splat_render(xyz, rgb, opacity, scales, quats, eye: np.ndarray, size: int, focal: float) -> np.ndarray:
    """Splats ([N, 3] centres, [N, 3] colours, [N] opacities, [N, 3] std devs, [N, 4] (w, x, y, z)
    rotations) seen from `eye`; white background. -> [size, size, 3]"""
    rot = look_at_origin(eye)
    w2c = rot.T
    cam = (np.asarray(xyz, np.float64) - eye) @ w2c.T
    depth = -cam[:, 2]
    f = focal * size
    j, i = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    out, trans = np.zeros((size, size, 3)), np.ones((size, size))
    for k in np.argsort(depth):
        z = depth[k]
        if z <= 0.1:
            continue
        x, y = cam[k, 0], cam[k, 1]
        u, v = size / 2 + f * x / z, size / 2 - f * y / z
        jac = np.array([[f / z, 0, f * x / z**2], [0, -f / z, -f * y / z**2]])
        m = quaternion_matrix(np.asarray(quats[k], np.float64))
        cov = jac @ w2c @ m @ np.diag(np.asarray(scales[k], np.float64) ** 2) @ m.T @ w2c.T @ jac.T + 0.3 * np.eye(2)
        inv = np.linalg.inv(cov)
        dx, dy = j - u, i - v
        a = np.minimum(0.99, opacity[k] * np.exp(-0.5 * (inv[0, 0] * dx * dx + 2 * inv[0, 1] * dx * dy
                                                         + inv[1, 1] * dy * dy)))
        a[a < 1 / 255] = 0
        out += (trans * a)[..., None] * rgb[k]
        trans *= 1 - a
    return out + trans[..., None]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10 * np.log10(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))
