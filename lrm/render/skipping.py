"""Empty-space skipping twin of `lrm.render.renderer._render_chunk` (inference only).

Same rays, same sample positions, same quadrature; only where the field is evaluated differs.
Given `occupied(xyz) -> bool` (an `lrm.render.occupancy.OccupancyGrid`), a sample is queried
when it lies in an occupied cell, and for the interval quadrature (which averages the raw
densities of an interval's two ends) also when a neighbour along the ray does. So every
interval touching an occupied sample is computed exactly; intervals between two skipped
samples get density 0, like intervals outside the box. Importance samples are drawn from the
coarse weights as in the reference (weights of skipped intervals are 0 instead of ~0).

Rays none of whose coarse or fine samples is occupied are culled: those that miss the box
around the occupied cells before sampling, the others after importance sampling. Their result
is the background with opacity and depth 0, as the full computation would give.
The occupancy threshold bounds the error per pixel (`lrm.render.occupancy`); tests compare
with the reference renderer.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from lrm.render.march import accumulate, interval_weights, point_weights
from lrm.render.renderer import Occupied, Query, RenderConfig, ray_bounds, render_rays
from lrm.render.sampling import importance, stratified


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    """mask: [..., S] bool -> mask or'ed with its neighbours along the last axis"""
    out = mask.clone()
    out[..., 1:] |= mask[..., :-1]
    out[..., :-1] |= mask[..., 1:]
    return out


def query_where(query: Query, pts: torch.Tensor, need: torch.Tensor, sigma: torch.Tensor, rgb: torch.Tensor) -> None:
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


def render_chunk_skipping(
    query: Query,
    activation: Callable[[torch.Tensor], torch.Tensor],
    origins: torch.Tensor,
    dirs: torch.Tensor,
    background: torch.Tensor,
    cfg: RenderConfig,
    generator: torch.Generator | None,
    occupied: Occupied,
) -> dict[str, torch.Tensor]:
    """origins, dirs: [B, R, 3]; background: [B, R, 3] -> {"rgb": [B, R, 3], "depth": [B, R], "opacity": [B, R]}"""
    box = occupied.bounds() if hasattr(occupied, "bounds") else False
    if origins.shape[0] > 1 or box is False:
        return _render(query, activation, origins, dirs, background, cfg, generator, occupied)
    out = {"rgb": background.clone(), "depth": origins.new_zeros(origins.shape[:2]),
           "opacity": origins.new_zeros(origins.shape[:2])}
    rays = _hits_box(origins[0], dirs[0], *box).nonzero()[:, 0] if box is not None else []
    if len(rays) == origins.shape[1]:
        return _render(query, activation, origins, dirs, background, cfg, generator, occupied)
    if len(rays):  # the others miss every occupied cell
        part = _render(query, activation, origins[:, rays], dirs[:, rays], background[:, rays], cfg, generator,
                       occupied)
        for k in out:
            out[k][:, rays] = part[k]
    return out


def _render(
    query: Query,
    activation: Callable[[torch.Tensor], torch.Tensor],
    origins: torch.Tensor,
    dirs: torch.Tensor,
    background: torch.Tensor,
    cfg: RenderConfig,
    generator: torch.Generator | None,
    occupied: Occupied,
) -> dict[str, torch.Tensor]:
    near, far, valid = ray_bounds(origins, dirs, cfg)
    interval = cfg.quadrature == "interval"
    assert interval or cfg.importance == 0, "importance sampling needs interval quadrature"
    t = stratified(near, far, cfg.samples, cfg.spacing, generator)  # [B, R, S]
    pts = origins[..., None, :] + t[..., None] * dirs[..., None, :]
    occ = occupied(pts) & valid[..., None]  # [B, R, S]
    done = _dilate(occ) if interval else occ  # samples whose field value is known
    sigma, rgb = torch.zeros_like(t), torch.zeros(*t.shape, 3, device=t.device)
    query_where(query, pts, done, sigma, rgb)

    t_fine = None
    if cfg.importance > 0:
        with torch.no_grad():
            w, _, _ = interval_weights(t, sigma, rgb, activation, _keep(pts, done, cfg))
            t_fine = importance(t, w, cfg.importance, generator)
        occ_f = occupied(origins[..., None, :] + t_fine[..., None] * dirs[..., None, :]) & valid[..., None]
        active = occ.any(-1) | occ_f.any(-1)  # [B, R]
    else:
        active = occ.any(-1)

    out_rgb, depth, opacity = background.clone(), torch.zeros_like(near), torch.zeros_like(near)
    if origins.shape[0] == 1:  # cull empty rays (one triplane: rays index freely)
        rays = active[0].nonzero()[:, 0]
        if len(rays) == 0:
            return {"rgb": out_rgb, "depth": depth, "opacity": opacity}
        pick = lambda x: x[:, rays]  # noqa: E731
        origins, dirs, t, sigma, rgb, occ, done, valid = map(pick, (origins, dirs, t, sigma, rgb, occ, done, valid))
        background = pick(background)
        if t_fine is not None:
            t_fine, occ_f = pick(t_fine), pick(occ_f)
    else:
        rays = None

    if t_fine is not None:  # merge, then query what the merged order needs and is not known yet
        t, order = torch.sort(torch.cat([t, t_fine], -1), dim=-1)
        sigma = torch.cat([sigma, torch.zeros_like(t_fine)], -1).gather(-1, order)
        rgb = torch.cat([rgb, torch.zeros(*t_fine.shape, 3, device=t.device)], -2)
        rgb = rgb.gather(-2, order[..., None].expand(*order.shape, 3))
        occ = torch.cat([occ, occ_f], -1).gather(-1, order)
        done = torch.cat([done, torch.zeros_like(occ_f)], -1).gather(-1, order)
        pts = origins[..., None, :] + t[..., None] * dirs[..., None, :]
        todo = _dilate(occ) & ~done
        query_where(query, pts, todo, sigma, rgb)
        done |= todo
    else:
        pts = origins[..., None, :] + t[..., None] * dirs[..., None, :]

    keep = _keep(pts, done, cfg)
    if interval:
        weights, colors, depths = interval_weights(t, sigma, rgb, activation, keep)
    else:
        weights, colors, depths = point_weights(activation(sigma), keep), rgb, t
    weights = weights * valid[..., None]
    c, d, o = accumulate(weights, colors, depths, background)
    if rays is None:
        return {"rgb": c, "depth": d, "opacity": o}
    out_rgb[:, rays], depth[:, rays], opacity[:, rays] = c, d, o
    return {"rgb": out_rgb, "depth": depth, "opacity": opacity}


def _hits_box(origins: torch.Tensor, dirs: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Conservative slab test: origins, dirs [R, 3]; lo, hi [3] -> [R] bool (touching counts)."""
    pad = 1e-4 * (hi - lo).abs().max()
    d = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0, t1 = (lo - pad - origins) / d, (hi + pad - origins) / d
    near = torch.minimum(t0, t1).amax(-1)
    far = torch.maximum(t0, t1).amin(-1)
    return far >= near


def _keep(pts: torch.Tensor, done: torch.Tensor, cfg: RenderConfig) -> torch.Tensor:
    """Samples that count: known, and inside the box when the config masks the outside. -> [B, R, S]"""
    if not cfg.mask_outside:
        return done
    return done & (pts.abs() <= cfg.radius).all(dim=-1)


def render_rays_skipping(
    query: Query,
    activation: Callable[[torch.Tensor], torch.Tensor],
    origins: torch.Tensor,
    dirs: torch.Tensor,
    background: torch.Tensor | float,
    cfg: RenderConfig,
    occupied: Occupied,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """`lrm.render.renderer.render_rays`, skipping the field where `occupied` says it is empty
    (e.g. `lrm.render.occupancy.OccupancyGrid`). origins, dirs: [B, R, 3]
    -> {"rgb": [B, R, 3], "depth": [B, R], "opacity": [B, R]}"""
    return render_rays(query, activation, origins, dirs, background, cfg, generator,
                       chunk_fn=partial(render_chunk_skipping, occupied=occupied))
