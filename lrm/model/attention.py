"""Multi-head attention on PyTorch SDPA, shared by the encoder and the triplane transformer.

Self-attention keeps one packed projection `qkv` (one matmul); cross-attention keeps `q` and a
packed `kv` so that the context width may differ from the query width. Upstream checkpoints in
either layout (packed `in_proj_weight`, or separate q/k/v) are converted to these two by the
loaders in `lrm.convert`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Attention(nn.Module):
    """Scaled dot-product attention, `heads` heads of width `dim // heads`.

    Args:
        dim: query and output width D.
        heads: number of heads H.
        context_dim: width Dc of the keys/values; None means self-attention.
        qkv_bias: whether the q/k/v projections have a bias.
        out_bias: whether the output projection has a bias.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        context_dim: int | None = None,
        qkv_bias: bool = False,
        out_bias: bool = False,
    ) -> None:
        super().__init__()
        assert dim % heads == 0, f"dim {dim} is not divisible by heads {heads}"
        self.heads = heads
        self.is_cross = context_dim is not None
        if self.is_cross:
            self.q = nn.Linear(dim, dim, bias=qkv_bias)
            self.kv = nn.Linear(context_dim, 2 * dim, bias=qkv_bias)
        else:
            self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.out = nn.Linear(dim, dim, bias=out_bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, L, D]; context: [B, Lc, Dc] (cross-attention only) -> [B, L, D]."""
        if self.is_cross:
            assert context is not None, "cross-attention needs a context"
            q = self.q(x)
            k, v = self.kv(context).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (rearrange(t, "b l (h d) -> b h l d", h=self.heads) for t in (q, k, v))
        if q.dtype != v.dtype:  # autocast may leave mixed dtypes on some backends
            k, v = k.to(q.dtype), v.to(q.dtype)
        if q.device.type == "cpu":  # the CPU flash kernel is ~25% faster on contiguous heads (same values)
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(rearrange(y, "b h l d -> b l (h d)"))
