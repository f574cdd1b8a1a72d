"""Image metrics for novel views: PSNR, SSIM, and LPIPS when its weights are available.

Images are float RGB in [0, 1] (data range 1), [V, H, W, 3] or [H, W, 3]; metrics are computed
per view, then averaged over views.

- PSNR = 10 log10(1 / MSE), MSE over all pixels and channels of one view.
- SSIM (Wang et al. 2004): 11×11 Gaussian window with σ = 1.5, K1 = 0.01, K2 = 0.03,
  population statistics, computed per channel over the "valid" window positions (no padding),
  averaged over positions and channels. Equal to skimage's `structural_similarity(...,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)`.
- LPIPS (VGG): from lrm's own implementation when it and its weights are present; otherwise
  the metric is absent (None), never 0.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch


def _views(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    return t[None] if t.ndim == 3 else t  # [V, H, W, 3]


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """pred, gt: [V, H, W, 3] or [H, W, 3] in [0, 1] -> mean over views of 10 log10(1 / MSE)."""
    p, g = _views(pred), _views(gt)
    assert p.shape == g.shape, (p.shape, g.shape)
    mse = ((p - g) ** 2).flatten(1).mean(1).clamp(min=1e-12)  # [V]; identical views give 120 dB
    return float((10 * torch.log10(1.0 / mse)).mean())


def _gaussian(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: np.ndarray, gt: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """pred, gt: [V, H, W, 3] or [H, W, 3] in [0, 1] (H, W >= size) -> mean SSIM over views."""
    from scipy.ndimage import correlate1d

    p, g = (_views(x).numpy() for x in (pred, gt))
    assert p.shape == g.shape, (p.shape, g.shape)
    c1, c2 = 0.01**2, 0.03**2
    k, r = _gaussian(size, sigma), size // 2

    def blur(t: np.ndarray) -> np.ndarray:  # separable Gaussian over H, W; valid positions only
        t = correlate1d(t, k, axis=1, mode="constant")[:, r:-r]
        return correlate1d(t, k, axis=2, mode="constant")[:, :, r:-r]

    mp, mg = blur(p), blur(g)
    sp = blur(p * p) - mp**2
    sg = blur(g * g) - mg**2
    spg = blur(p * g) - mp * mg
    s = ((2 * mp * mg + c1) * (2 * spg + c2)) / ((mp**2 + mg**2 + c1) * (sp + sg + c2))
    return float(s.reshape(len(s), -1).mean(1).mean())


def load_lpips(weights: str = "", device: str | torch.device = "cpu") -> Callable[[np.ndarray, np.ndarray], float] | None:
    """An LPIPS-VGG metric `(pred, gt) -> mean over views`, or None when lrm's LPIPS or its
    weights are not available locally. `weights`: a folder holding the VGG16 and LPIPS head
    files (default: the torch hub cache and an installed `lpips` package; see lrm.losses.lpips)."""
    try:
        from lrm.losses.lpips import load_lpips as load_net
    except ImportError:  # an lrm without the trainer's LPIPS
        return None
    with warnings.catch_warnings():  # absence is reported in the report and by the CLI instead
        warnings.simplefilter("ignore")
        net = load_net(weights, device)
    if net is None:
        return None

    @torch.no_grad()
    def metric(pred: np.ndarray, gt: np.ndarray) -> float:
        p = _views(pred).permute(0, 3, 1, 2).float().to(device)
        g = _views(gt).permute(0, 3, 1, 2).float().to(device)
        return float(net(p, g).mean())

    return metric
