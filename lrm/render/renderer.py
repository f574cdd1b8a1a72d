"""Volume rendering of a field along rays: bounds -> stratified (+ importance) samples ->
compositing over a background. Functional: the field is a `query` callable.

    query(xyz [B, N, 3]) -> (raw density [B, N], rgb [B, N, 3])
    activation(raw) -> density
    occupied(xyz [B, N, 3]) -> bool [B, N]   (optional, empty-space skipping)

With `occupied` (e.g. a `lrm.render.occupancy.OccupancyGrid`) the field is queried only where
it is needed: at occupied samples and, for the interval quadrature (which averages the raw
densities of an interval's two ends), at their neighbours along the ray. Every interval that
touches an occupied sample is then computed exactly; the others get density 0, like samples
outside the box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

from lrm.render.march import composite, interval_weights, point_weights
from lrm.render.rays import ray_box, ray_sphere
from lrm.render.sampling import Spacing, importance, stratified

Query = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Occupied = Callable[[torch.Tensor], torch.Tensor]


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


def _query(query: Query, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pts: [B, R, S, 3] -> raw density [B, R, S], rgb [B, R, S, 3]"""
    b, r, s, _ = pts.shape
    sigma, rgb = query(pts.reshape(b, r * s, 3))
    return sigma.reshape(b, r, s).float(), rgb.reshape(b, r, s, 3).float()


def _query_where(
    query: Query, pts: torch.Tensor, need: torch.Tensor, sigma: torch.Tensor, rgb: torch.Tensor
) -> None:
    """Fill sigma [B, R, S] and rgb [B, R, S, 3] in place at the `need` [B, R, S] samples of pts [B, R, S, 3]."""
    b = pts.shape[0]
    counts = need.reshape(b, -1).sum(-1)
    m = int(counts.max())
    if m == 0:
        return
    if b == 1:
        sg, cl = query(pts[need][None])
        sigma[need], rgb[need] = sg[0].float(), cl[0].float()
        return
    # pad every batch element to the same number of points (the query takes [B, N, 3])
    batch = pts.new_zeros(b, m, 3)
    slot = torch.arange(m, device=pts.device)[None] < counts[:, None]  # [B, M]
    batch[slot] = pts[need]
    sg, cl = query(batch)
    sigma[need], rgb[need] = sg[slot].float(), cl[slot].float()


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    """mask: [..., S] bool -> mask or'ed with its neighbours along the last axis"""
    out = mask.clone()
    out[..., 1:] |= mask[..., :-1]
    out[..., :-1] |= mask[..., 1:]
    return out


def _render_chunk(
    query: Query,
    activation: Callable[[torch.Tensor], torch.Tensor],
    origins: torch.Tensor,
    dirs: torch.Tensor,
    background: torch.Tensor,
    cfg: RenderConfig,
    generator: torch.Generator | None,
    occupied: Occupied | None = None,
) -> dict[str, torch.Tensor]:
    half = cfg.radius * (1 - cfg.shrink)
    if cfg.bounds == "box":
        near, far = ray_box(origins, dirs, half, cfg.clamp_near)
    else:
        near, far = ray_sphere(origins, dirs, half, cfg.clamp_near)
    valid = (far - near) > cfg.min_extent  # [B, R]
    near = torch.where(valid, near, torch.zeros_like(near))
    far = torch.where(valid, far, torch.ones_like(far))

    def points(t: torch.Tensor) -> torch.Tensor:  # [B, R, S] -> [B, R, S, 3]
        return origins[..., None, :] + t[..., None] * dirs[..., None, :]

    def inside(t: torch.Tensor) -> torch.Tensor | None:  # [B, R, S] -> [B, R, S] bool
        return (points(t).abs() <= cfg.radius).all(dim=-1) if cfg.mask_outside else None

    t = stratified(near, far, cfg.samples, cfg.spacing, generator)  # [B, R, S]
    interval = cfg.quadrature == "interval"

    def mask(t: torch.Tensor, done: torch.Tensor | None) -> torch.Tensor | None:
        """samples that count: inside the box and (when skipping) evaluated"""
        keep = inside(t)
        return keep if done is None else done if keep is None else keep & done

    done = None  # [B, R, S] bool: samples the field was queried at (None: all)
    if occupied is None:
        sigma, rgb = _query(query, points(t))
    else:
        pts = points(t)
        occ = occupied(pts) & valid[..., None]  # [B, R, S]
        done = _dilate(occ) if interval else occ
        sigma, rgb = torch.zeros(t.shape, device=t.device), torch.zeros(*t.shape, 3, device=t.device)
        _query_where(query, pts, done, sigma, rgb)

    if not interval:
        assert cfg.importance == 0, "importance sampling needs interval quadrature"
        weights = point_weights(activation(sigma), mask(t, done))
        colors, depths = rgb, t
    else:
        if cfg.importance > 0:
            with torch.no_grad():
                w, _, _ = interval_weights(t, sigma, rgb, activation, mask(t, done))
                t_fine = importance(t.detach(), w, cfg.importance, generator)
            if occupied is None:
                sigma_f, rgb_f = _query(query, points(t_fine))
            else:  # queried below, after sorting, where needed and not done yet
                sigma_f, rgb_f = torch.zeros_like(t_fine), torch.zeros(*t_fine.shape, 3, device=t.device)
            t, order = torch.sort(torch.cat([t, t_fine], -1), dim=-1)
            sigma = torch.cat([sigma, sigma_f], -1).gather(-1, order)
            rgb = torch.cat([rgb, rgb_f], -2).gather(-2, order[..., None].expand(*order.shape, 3))
            if occupied is not None:
                occ = torch.cat([occ, occupied(points(t_fine)) & valid[..., None]], -1).gather(-1, order)
                done = torch.cat([done, torch.zeros_like(t_fine, dtype=torch.bool)], -1).gather(-1, order)
                todo = _dilate(occ) & ~done
                _query_where(query, points(t), todo, sigma, rgb)
                done = done | todo
        weights, colors, depths = interval_weights(t, sigma, rgb, activation, mask(t, done))

    weights = weights * valid[..., None]
    out_rgb, depth, opacity = composite(weights, colors, depths, background)
    return {"rgb": out_rgb, "depth": depth, "opacity": opacity}


def render_rays(
    query: Query,
    activation: Callable[[torch.Tensor], torch.Tensor],
    origins: torch.Tensor,
    dirs: torch.Tensor,
    background: torch.Tensor | float,
    cfg: RenderConfig,
    generator: torch.Generator | None = None,
    occupied: Occupied | None = None,
) -> dict[str, torch.Tensor]:
    """Render rays in chunks of `cfg.chunk`.

    origins, dirs: [B, R, 3]; background: float or broadcastable to [B, R, 3];
    occupied: optional empty-space test (module docstring), inference only
    -> {"rgb": [B, R, 3], "depth": [B, R], "opacity": [B, R]}
    """
    b, r, _ = origins.shape
    bg = torch.as_tensor(background, dtype=torch.float32, device=origins.device).expand(b, r, 3)
    outs = [
        _render_chunk(
            query, activation, origins[:, i : i + cfg.chunk], dirs[:, i : i + cfg.chunk],
            bg[:, i : i + cfg.chunk], cfg, generator, occupied,
        )
        for i in range(0, r, cfg.chunk)
    ]
    return {k: torch.cat([o[k] for o in outs], dim=1) for k in outs[0]}
