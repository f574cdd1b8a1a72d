"""Fast inference-only evaluation of the field on fixed planes (the reference is `Field.forward`).

The decoder's first layer is linear and bilinear interpolation is linear, so the first layer
can be applied to the planes once instead of to every point:

    W1 · [f_0(x), f_1(x), f_2(x)] + b1 = Σ_p bilerp(W1_p · plane_p, uv_p(x)) + b1

`FoldedField` stores each plane projected through its slice `W1_p` ([hidden, h, w] instead of
[C, h, w]), channels-last with a one-texel zero border (grid_sample's zero padding), and looks
points up with one `embedding_bag` (12 weighted rows per point: 3 planes x 4 bilinear taps).
The rest of the MLP runs in fp32 on chunks sized for the cache. Results equal `Field.forward`
to float round-off (summation order only); `tests/test_fastfield.py` checks this.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lrm.model.field import Field


class FoldedField:
    """Field decoder folded into the planes of one batch of triplanes.

    field: the decoder; planes: [B, 3, C, h, w]; chunk: points per MLP chunk.
    Calling it maps xyz [B, N, 3] (world) -> raw density [B, N], rgb [B, N, 3], like `Field`.
    """

    def __init__(self, field: Field, planes: torch.Tensor, chunk: int = 16384) -> None:
        b, p, c, h, w = planes.shape
        assert p == 3 and c == field.cfg.channels and h == w, (planes.shape, field.cfg.channels)
        self.field, self.chunk = field, chunk
        self.batch, self.h, self.w = b, h, w
        linears = [m for m in field.mlp if isinstance(m, nn.Linear)]
        self.act = F.relu_ if field.cfg.activation == "relu" else (lambda x: F.silu(x, inplace=True))
        first, self.rest = linears[0], linears[1:]
        with torch.no_grad(), torch.autocast(planes.device.type, enabled=False):
            w1 = rearrange(first.weight.float(), "o (p c) -> p o c", p=3)  # [3, hidden, C]
            proj = torch.einsum("poc,bpchw->bphwo", w1, planes.float())  # [B, 3, h, w, hidden]
            proj = F.pad(proj, (0, 0, 1, 1, 1, 1))  # zero border: [B, 3, h+2, w+2, hidden]
        self.table = rearrange(proj, "b p y x o -> (b p y x) o").contiguous()
        self.bias1 = first.bias.detach().float() if first.bias is not None else None
        self.weights = [(m.weight.detach().float().t().contiguous(),
                         None if m.bias is None else m.bias.detach().float()) for m in self.rest]
        self.fused = _fused_linear(planes.device, field.cfg.activation, self.rest)
        self.pairs = torch.tensor(field.cfg.axes)  # [3, 2] axis pairs (column, row)
        self.plane_base = torch.arange(3) * (w + 2)  # [3] first border row of each plane
        self.radius = field.cfg.radius

    def taps(self, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """xyz: [B, N, 3] world -> row indices into `table` [B*N, 12], bilinear weights [B*N, 12]."""
        b, n, _ = xyz.shape
        w = self.w
        # grid_sample's unnormalisation ((u + 1) * w - 1) / 2, align_corners=False, per axis once
        g = xyz.reshape(b * n, 3).float() * (w / (2 * self.radius)) + (w - 1) / 2  # [BN, 3]
        g0 = g.floor()
        f = g - g0  # bilinear fractions
        # +1 for the zero border; out-of-range taps land on the border (value 0)
        i0 = g0.clamp_(-2, w).long()
        i1 = (i0 + 2).clamp_(max=w + 1)
        i0 = i0.clamp_(min=-1).add_(1)
        cols, rows = self.pairs[:, 0], self.pairs[:, 1]  # [3] axis giving each plane's column / row
        base = self.plane_base.to(xyz.device)
        if b > 1:
            batch = torch.arange(b, device=xyz.device).repeat_interleave(n)[:, None] * (3 * (w + 2))
            base = base + batch  # [BN, 3]
        r0 = (base + i0[:, rows]) * (w + 2)  # [BN, 3]
        r1 = (base + i1[:, rows]) * (w + 2)
        x0, x1 = i0[:, cols], i1[:, cols]
        idx = torch.stack([r0 + x0, r0 + x1, r1 + x0, r1 + x1], -1)  # [BN, 3, 4]
        fx, fy = f[:, cols], f[:, rows]
        gx, gy = 1 - fx, 1 - fy
        wts = torch.stack([gx * gy, fx * gy, gx * fy, fx * fy], -1)
        return idx.reshape(b * n, 12), wts.reshape(b * n, 12)

    def hidden(self, xyz: torch.Tensor) -> torch.Tensor:
        """xyz: [B, N, 3] world -> pre-activation of the first hidden layer [B*N, hidden]"""
        idx, wts = self.taps(xyz)
        out = F.embedding_bag(idx, self.table, per_sample_weights=wts, mode="sum")
        if self.bias1 is not None:
            out += self.bias1
        return out

    def mlp(self, h: torch.Tensor) -> torch.Tensor:
        """h: [N, hidden] first-layer pre-activation -> raw outputs [N, 4]"""
        if self.fused is not None:
            return self.fused(self.act(h))
        for wt, bias in self.weights:
            h = self.act(h)
            h = torch.addmm(bias, h, wt) if bias is not None else h @ wt
        return h

    @torch.no_grad()
    def __call__(self, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """xyz: [B, N, 3] world -> raw density [B, N], rgb [B, N, 3] (float32)"""
        with torch.autocast(xyz.device.type, enabled=False):  # the decoder always runs in fp32
            return self._call(xyz)

    def _call(self, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, _ = xyz.shape
        assert b == self.batch, f"planes hold {self.batch} triplanes, points {b}"
        flat = xyz.reshape(b * n, 3) if b == 1 else None
        outs = []
        if flat is not None:
            for i in range(0, n, self.chunk):
                outs.append(self.mlp(self.hidden(flat[None, i : i + self.chunk])))
            out = torch.cat(outs) if len(outs) > 1 else outs[0] if outs else flat.new_zeros(0, 4)
        else:
            for i in range(0, n, self.chunk):
                outs.append(self.mlp(self.hidden(xyz[:, i : i + self.chunk])).reshape(b, -1, 4))
            out = torch.cat(outs, 1)
        out = out.reshape(b, n, 4)
        return out[..., 0], self.field.color(out[..., 1:])


def _fused_linear(device: torch.device, activation: str, layers: list[nn.Linear]):
    """The hidden layers as oneDNN linear+activation ops (CPU builds with mkldnn; ~30% faster
    than addmm + activation on 64-wide layers), or None to use addmm. Checked on a probe."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if device.type != "cpu" or op is None or not torch.backends.mkldnn.is_available():
        return None
    act = "relu" if activation == "relu" else "swish"
    params = [(m.weight.detach().float().contiguous(), m.bias.detach().float() if m.bias is not None else None)
              for m in layers]

    def run(h: torch.Tensor) -> torch.Tensor:
        for i, (w, b) in enumerate(params):
            h = op(h, w, b, act if i < len(params) - 1 else "none", [], "")
        return h

    try:
        probe = torch.randn(8, layers[0].in_features)
        ref = probe
        for i, m in enumerate(layers):
            ref = F.linear(ref, m.weight.float(), None if m.bias is None else m.bias.float())
            if i < len(layers) - 1:
                ref = F.relu(ref) if activation == "relu" else F.silu(ref)
        if not torch.allclose(run(probe), ref, atol=1e-4, rtol=1e-4):
            return None
    except (RuntimeError, TypeError):
        return None
    return run
