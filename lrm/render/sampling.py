"""Sample depths along rays: stratified samples and importance (PDF) samples.

Deterministic unless a torch.Generator is passed (jitter only when asked).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Spacing = Literal["endpoints", "midpoints"]


def stratified(
    near: torch.Tensor,
    far: torch.Tensor,
    n: int,
    spacing: Spacing = "endpoints",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """n depths per ray between near and far.

    near, far: [...] -> t: [..., n]
    "endpoints" (OpenLRM): t_k = near + (k + U_k)/(n - 1)*(far - near), U_k ~ U[0, 1) with a
    generator (upstream's jitter; the last sample may pass `far`), else U_k = 0.5, its mean.
    (U_k = 0 would put the first and last samples exactly on the box faces, where the in-box
    test of OpenLRM's renderer is decided by float rounding: renders would then differ by up to
    ~0.02 between two correct implementations or devices.)
    "midpoints" (TripoSR): t_k = near*(1 - τ_k) + far*τ_k with τ_k = (k + 0.5)/n.
    """
    k = torch.arange(n, device=near.device, dtype=torch.float32)
    span = (far - near)[..., None]
    if spacing == "midpoints":
        tau = (k + 0.5) / n
        return near[..., None] * (1 - tau) + far[..., None] * tau
    step = span / (n - 1)
    t = near[..., None] + k * step
    if generator is None:
        return t + 0.5 * step
    return t + torch.rand(t.shape, generator=generator, device=t.device) * step


def smooth_weights(weights: torch.Tensor) -> torch.Tensor:
    """OpenLRM's weight smoothing for importance sampling: max-pool (k2, s1, pad 1), then
    average-pool (k2, s1), plus 0.01. weights: [..., S-1] -> [..., S-1]"""
    shape = weights.shape
    w = weights.reshape(-1, 1, shape[-1])
    w = F.max_pool1d(w, 2, stride=1, padding=1)
    w = F.avg_pool1d(w, 2, stride=1)
    return (w + 0.01).reshape(shape)


def importance(
    t: torch.Tensor,
    weights: torch.Tensor,
    n: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Importance samples from the coarse interval weights, OpenLRM's rule.

    t: [..., S] sorted coarse depths; weights: [..., S-1] interval weights -> [..., n] depths.
    Bins are the coarse midpoints b_0..b_{S-2}; the smoothed weights of the inner intervals
    (dropping the first and last) give the probabilities of bins [b_j, b_{j+1}], j < S-3
    (the last bin is never sampled, as upstream). u is (k + 0.5)/n without a generator,
    else U[0, 1).
    """
    s = t.shape[-1]
    assert weights.shape[-1] == s - 1 and s >= 4, (t.shape, weights.shape)
    bins = 0.5 * (t[..., 1:] + t[..., :-1])  # [..., S-1]
    w = smooth_weights(weights)[..., 1:-1] + 1e-5  # [..., S-3]
    pdf = w / w.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, -1)], -1)  # [..., S-2]
    lead = cdf.shape[:-1]
    if generator is None:
        u = (torch.arange(n, device=t.device, dtype=torch.float32) + 0.5) / n
        u = u.expand(*lead, n).contiguous()
    else:
        u = torch.rand(*lead, n, generator=generator, device=t.device)
    i = torch.searchsorted(cdf.contiguous(), u, right=True)
    below = (i - 1).clamp(min=0)
    above = i.clamp(max=s - 3)
    cdf_b, cdf_a = cdf.gather(-1, below), cdf.gather(-1, above)
    bin_b, bin_a = bins.gather(-1, below), bins.gather(-1, above)
    den = cdf_a - cdf_b
    den = torch.where(den < 1e-5, torch.ones_like(den), den)
    return bin_b + (u - cdf_b) / den * (bin_a - bin_b)
