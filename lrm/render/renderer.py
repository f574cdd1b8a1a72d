"""Volume rendering of a field along rays: bounds -> stratified (+ importance) samples ->
compositing over a background. Functional: the field is a `query` callable.

    query(xyz [B, N, 3]) -> (raw density [B, N], rgb [B, N, 3])
    activation(raw) -> density

This is the reference renderer. Its empty-space-skipping twin, `lrm.render.skipping`
(inference only; tests/test_fast_mode.py checks it against this one), reuses the chunking of
`render_rays`; this module does not import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

from lrm.configs import require
from lrm.render.march import accumulate, interval_weights, point_weights
from lrm.render.rays import ray_box, ray_sphere
from lrm.render.sampling import Spacing, importance, stratified

Query = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Occupied = Callable[[torch.Tensor], torch.Tensor]  # xyz [B, N, 3] -> bool [B, N]
ChunkRenderer = Callable[..., dict[str, torch.Tensor]]  # (query, activation, origins, dirs, bg, cfg, generator)


@dataclass
class RenderConfig:
    bounds: Literal["box", "sphere"] = "box"  # shape that limits the rays
    radius: float = 1.0  # box half-side or sphere radius, world units
    shrink: float = 0.0  # shrink the bounds by this fraction (TripoSR: 1e-3)
    clamp_near: bool = False  # clamp the entry depth at 0 (cameras inside the bounds)
    min_extent: float = 0.0  # rays whose inside segment is not longer than this stay empty
    samples: int = 48  # stratified samples per ray
    spacing: Spacing = "endpoints"  # stratified layout, see lrm.render.sampling.stratified
    importance: int = 48  # importance samples per ray (0: none)
    quadrature: Literal["interval", "point"] = "interval"  # see lrm.render.march
    mask_outside: bool = True  # intervals touching a sample outside the box get zero density
    chunk: int = 4096  # rays per chunk

    def __post_init__(self) -> None:
        require([(self.radius > 0 and 0 <= self.shrink < 1, "render radius must be > 0 and shrink in [0, 1)"),
                 (self.samples > 0 and self.importance >= 0 and self.chunk > 0,
                  f"render samples and chunk must be > 0, importance >= 0 (got {self.samples}, {self.chunk}, "
                  f"{self.importance})")])


def _query(query: Query, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pts: [B, R, S, 3] -> raw density [B, R, S], rgb [B, R, S, 3]"""
    b, r, s, _ = pts.shape
    sigma, rgb = query(pts.reshape(b, r * s, 3))
    return sigma.reshape(b, r, s).float(), rgb.reshape(b, r, s, 3).float()


def ray_bounds(origins: torch.Tensor, dirs: torch.Tensor, cfg: RenderConfig) -> tuple[torch.Tensor, ...]:
    """origins, dirs: [B, R, 3] -> near, far, valid: [B, R] (invalid rays get near 0, far 1)"""
    half = cfg.radius * (1 - cfg.shrink)
    if cfg.bounds == "box":
        near, far = ray_box(origins, dirs, half, cfg.clamp_near)
    else:
        near, far = ray_sphere(origins, dirs, half, cfg.clamp_near)
    valid = (far - near) > cfg.min_extent  # [B, R]
    near = torch.where(valid, near, torch.zeros_like(near))
    far = torch.where(valid, far, torch.ones_like(far))
    return near, far, valid


def _render_chunk(
    query: Query,
    activation: Callable[[torch.Tensor], torch.Tensor],
    origins: torch.Tensor,
    dirs: torch.Tensor,
    background: torch.Tensor,
    cfg: RenderConfig,
    generator: torch.Generator | None,
) -> dict[str, torch.Tensor]:
    near, far, valid = ray_bounds(origins, dirs, cfg)

    def points(t: torch.Tensor) -> torch.Tensor:  # [B, R, S] -> [B, R, S, 3]
        return origins[..., None, :] + t[..., None] * dirs[..., None, :]

    def inside(t: torch.Tensor) -> torch.Tensor | None:  # [B, R, S] -> [B, R, S] bool
        return (points(t).abs() <= cfg.radius).all(dim=-1) if cfg.mask_outside else None

    t = stratified(near, far, cfg.samples, cfg.spacing, generator)  # [B, R, S]
    sigma, rgb = _query(query, points(t))

    if cfg.quadrature == "point":
        assert cfg.importance == 0, "importance sampling needs interval quadrature"
        weights = point_weights(activation(sigma), inside(t))
        colors, depths = rgb, t
    else:
        if cfg.importance > 0:
            with torch.no_grad():
                w, _, _ = interval_weights(t, sigma, rgb, activation, inside(t))
                t_fine = importance(t.detach(), w, cfg.importance, generator)
            sigma_f, rgb_f = _query(query, points(t_fine))
            t, order = torch.sort(torch.cat([t, t_fine], -1), dim=-1)
            sigma = torch.cat([sigma, sigma_f], -1).gather(-1, order)
            rgb = torch.cat([rgb, rgb_f], -2).gather(-2, order[..., None].expand(*order.shape, 3))
        weights, colors, depths = interval_weights(t, sigma, rgb, activation, inside(t))

    weights = weights * valid[..., None]
    out_rgb, depth, opacity = accumulate(weights, colors, depths, background)
    return {"rgb": out_rgb, "depth": depth, "opacity": opacity}


def render_rays(
    query: Query,
    activation: Callable[[torch.Tensor], torch.Tensor],
    origins: torch.Tensor,
    dirs: torch.Tensor,
    background: torch.Tensor | float,
    cfg: RenderConfig,
    generator: torch.Generator | None = None,
    chunk_fn: ChunkRenderer | None = None,
) -> dict[str, torch.Tensor]:
    """Render rays in chunks of `cfg.chunk`.

    origins, dirs: [B, R, 3]; background: float or broadcastable to [B, R, 3]; chunk_fn: what
    renders one chunk, with this module's chunk renderer's arguments (default: that renderer;
    lrm.render.skipping.render_rays_skipping passes its empty-space-skipping twin)
    -> {"rgb": [B, R, 3], "depth": [B, R], "opacity": [B, R]}
    """
    b, r, _ = origins.shape
    bg = torch.as_tensor(background, dtype=torch.float32, device=origins.device).expand(b, r, 3)
    chunk_fn = chunk_fn or _render_chunk
    outs = [
        chunk_fn(
            query, activation, origins[:, i : i + cfg.chunk], dirs[:, i : i + cfg.chunk],
            bg[:, i : i + cfg.chunk], cfg, generator,
        )
        for i in range(0, r, cfg.chunk)
    ]
    return {k: torch.cat([o[k] for o in outs], dim=1) for k in outs[0]}
