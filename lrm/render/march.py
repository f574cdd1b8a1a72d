"""Alpha compositing along rays.

Two quadratures:
- interval (OpenLRM): between consecutive samples k, k+1 the raw densities are averaged
  *before* the activation, colours and depths are averaged, δ_k = t_{k+1} - t_k (metric);
- point (TripoSR): each sample is its own interval with activated density σ_k and the fixed
  δ = 1/S of the normalised ray parameter.
Both then use α = 1 - exp(-σ δ), T_k = Π_{j<k} (1 - α_j + 1e-10), w_k = α_k T_k.
"""

from __future__ import annotations

from typing import Callable

import torch


def transmittance_weights(alpha: torch.Tensor) -> torch.Tensor:
    """alpha: [..., K] -> weights w_k = α_k Π_{j<k}(1 - α_j + 1e-10): [..., K]"""
    trans = torch.cumprod(1 - alpha + 1e-10, dim=-1)
    trans = torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], dim=-1)
    return alpha * trans


def interval_weights(
    t: torch.Tensor,
    sigma_raw: torch.Tensor,
    rgb: torch.Tensor,
    activation: Callable[[torch.Tensor], torch.Tensor],
    inside: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Midpoint quadrature over the S-1 intervals between sorted samples.

    t: [..., S]; sigma_raw: [..., S] raw density; rgb: [..., S, 3]; inside: [..., S] bool or None
    -> weights [..., S-1], interval colours [..., S-1, 3], interval depths [..., S-1]
    An interval touching a sample that is not `inside` has zero density (OpenLRM gives such
    samples a raw density of -FLT_MAX/8, which the activation maps to exactly 0).
    """
    delta = t[..., 1:] - t[..., :-1]
    sigma = activation(0.5 * (sigma_raw[..., 1:] + sigma_raw[..., :-1]))
    if inside is not None:
        sigma = sigma * (inside[..., 1:] & inside[..., :-1])
    alpha = 1 - torch.exp(-sigma * delta)
    colors = 0.5 * (rgb[..., 1:, :] + rgb[..., :-1, :])
    depths = 0.5 * (t[..., 1:] + t[..., :-1])
    return transmittance_weights(alpha), colors, depths


def point_weights(sigma: torch.Tensor, inside: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample quadrature with δ = 1/S.

    sigma: [..., S] activated density; inside: [..., S] bool or None -> weights [..., S]"""
    if inside is not None:
        sigma = sigma * inside
    alpha = 1 - torch.exp(-sigma / sigma.shape[-1])
    return transmittance_weights(alpha)


def accumulate(
    weights: torch.Tensor, colors: torch.Tensor, depths: torch.Tensor, background: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """weights: [..., K]; colors: [..., K, 3]; depths: [..., K]; background: broadcastable to [..., 3]
    -> rgb [..., 3], depth [...] (expected depth of the opaque part; 0 where empty), opacity [...]"""
    opacity = weights.sum(-1)
    rgb = (weights[..., None] * colors).sum(-2) + background * (1 - opacity[..., None])
    depth = (weights * depths).sum(-1) / opacity.clamp(min=1e-10)
    return rgb, depth, opacity
