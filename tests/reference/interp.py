"""Position-table resizes written out as explicit 1-D weight matrices (float64), from the spec:
- openlrm-v1.1.md §4.2: bicubic, antialias=True, scale_factor n/37 (PyTorch's AA kernel: the
  cubic filter with a = -0.5, widened by the scale when downsampling, weights renormalised);
- triposr.md §5.3: bicubic, no antialias, a = -0.75, s = (i + 0.5)/scale - 0.5, taps clamped
  (transformers 4.35: scale = (n + 0.1)/g; transformers 5.x: size = n, i.e. scale = n/g).
A 2-D resize is `My @ X @ Mx^T` (separable)."""

from __future__ import annotations

import math

import torch


def cubic(d: float, a: float) -> float:
    """Cubic convolution kernel W(d) (Keys): a = -0.75 in PyTorch's bicubic, -0.5 in its AA path."""
    d = abs(d)
    if d <= 1:
        return (a + 2) * d**3 - (a + 3) * d**2 + 1
    if d < 2:
        return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    return 0.0


def bicubic_matrix(n_in: int, n_out: int, scale: float, a: float = -0.75) -> torch.Tensor:
    """Plain bicubic (align_corners=False) with `scale` = output/input as passed to interpolate.
    -> [n_out, n_in]; row i holds the weights of output i."""
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        s = (i + 0.5) / scale - 0.5
        x0 = math.floor(s)
        t = s - x0
        for k, w in zip(range(x0 - 1, x0 + 3), (cubic(1 + t, a), cubic(t, a), cubic(1 - t, a), cubic(2 - t, a))):
            m[i, min(max(k, 0), n_in - 1)] += w
    return m


def aa_bicubic_matrix(n_in: int, n_out: int, scale: float) -> torch.Tensor:
    """Antialiased bicubic (align_corners=False), `scale` = output/input. -> [n_out, n_in]

    support = 2 * (1/scale) when downsampling; output i is centred at (i + 0.5)/scale in input
    pixel units; input j contributes W(((j + 0.5) - centre) * scale) with a = -0.5; the weights
    of each output are normalised to sum 1."""
    inv = 1.0 / scale  # input pixels per output pixel
    support = 2.0 * inv if inv >= 1 else 2.0
    filt_scale = 1.0 / inv if inv >= 1 else 1.0
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        centre = inv * (i + 0.5)
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), n_in)
        w = [cubic((j + 0.5 - centre) * filt_scale, -0.5) for j in range(lo, hi)]
        total = sum(w)
        for j, wj in zip(range(lo, hi), w):
            m[i, j] = wj / total
    return m


def resize(grid: torch.Tensor, my: torch.Tensor, mx: torch.Tensor) -> torch.Tensor:
    """grid: [C, h, w] -> [C, h', w'] with row weights my [h', h] and column weights mx [w', w]."""
    return torch.einsum("ih,chw,jw->cij", my, grid.double(), mx)


def resize_table(table: torch.Tensor, n: int, rule: str) -> torch.Tensor:
    """Patch position table [1, G*G, E] -> [1, n*n, E] by one of the rules: "dinov2", "hf4", "hf5"."""
    g = int(round(math.sqrt(table.shape[1])))
    if n == g:  # upstream returns the table untouched at its own grid size
        return table
    grid = table[0].double().T.reshape(-1, g, g)  # [E, G, G], row-major patches
    if rule == "dinov2":
        m = aa_bicubic_matrix(g, n, n / g)
    elif rule == "hf4":
        m = bicubic_matrix(g, n, (n + 0.1) / g)
    else:
        m = bicubic_matrix(g, n, n / g)
    out = resize(grid, m, m)
    return out.reshape(grid.shape[0], n * n).T[None].to(table.dtype)
