"""Triplane transformer: learned triplane tokens cross-attend to the image tokens.

Two block variants, both holding the learned tokens `[1, 3*r*r, D]` (token t = p*r*r + h*r + w):
- "openlrm": per block ModLN -> cross-attn -> ModLN -> self-attn -> ModLN -> GELU MLP, all
  pre-norm residual, bias-free attention; final LayerNorm. Conditioned on the camera.
- "triposr": GroupNorm -> Linear in -> per block LN -> self-attn -> LN -> cross-attn -> LN ->
  GEGLU feed-forward -> Linear out, plus the raw tokens (outer residual). No camera.
- "instantmesh": as "openlrm" with plain LayerNorms (eps 1e-5) in place of ModLN: the camera
  enters through the encoder instead (InstantMesh; docs/weights.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from lrm.model.attention import Attention
from lrm.model.camera import ModLN

BlockKind = Literal["openlrm", "triposr", "instantmesh"]
from lrm.configs import require


@dataclass
class TransformerConfig:
    block: BlockKind = "openlrm"  # block variant, see module docstring
    dim: int = 768  # token width D
    layers: int = 12  # number of blocks
    heads: int = 12  # attention heads
    context_dim: int = 768  # width of the image tokens (encoder dim)
    mod_dim: int = 1024  # camera-embedding width for ModLN ("openlrm" only)
    token_res: int = 32  # side r of each plane's token grid (3*r*r tokens)
    token_std: float = 0.0  # init std of the learned triplane tokens (0: dim**-0.5, OpenLRM's); training
    # from scratch on a small budget wants ~1: at dim**-0.5 the blocks' outputs, the same for every
    # token, swamp the tokens (output cosine 0.99 between tokens, measured on `tiny`) and the
    # planes carry almost no position to learn from

    def __post_init__(self) -> None:
        require([(min(self.dim, self.layers, self.heads, self.context_dim, self.token_res) > 0,
                  f"transformer sizes must be > 0 (dim {self.dim}, layers {self.layers}, heads {self.heads}, "
                  f"context_dim {self.context_dim}, token_res {self.token_res})"),
                 (self.dim % self.heads == 0, f"transformer dim {self.dim} is not divisible by heads {self.heads}"),
                 (self.mod_dim >= 0 and self.token_std >= 0, "transformer mod_dim and token_std must be >= 0")])


class OpenLRMBlock(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.norm1 = ModLN(d, cfg.mod_dim)
        self.cross_attn = Attention(d, cfg.heads, context_dim=cfg.context_dim)
        self.norm2 = ModLN(d, cfg.mod_dim)
        self.self_attn = Attention(d, cfg.heads)
        self.norm3 = ModLN(d, cfg.mod_dim)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        """x: [B, L, D]; context: [B, Lc, Dc]; mod: [B, M] -> [B, L, D]"""
        x = x + self.cross_attn(self.norm1(x, mod), context)
        x = x + self.self_attn(self.norm2(x, mod))
        return x + self.fc2(F.gelu(self.fc1(self.norm3(x, mod))))


class InstantMeshBlock(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.norm1 = nn.LayerNorm(d, eps=1e-5)
        self.cross_attn = Attention(d, cfg.heads, context_dim=cfg.context_dim)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)
        self.self_attn = Attention(d, cfg.heads)
        self.norm3 = nn.LayerNorm(d, eps=1e-5)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mod: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, L, D]; context: [B, Lc, Dc] -> [B, L, D] (mod is ignored: the encoder is modulated)"""
        x = x + self.cross_attn(self.norm1(x), context)
        x = x + self.self_attn(self.norm2(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm3(x))))


class TripoSRBlock(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.norm1 = nn.LayerNorm(d, eps=1e-5)
        self.self_attn = Attention(d, cfg.heads, out_bias=True)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)
        self.cross_attn = Attention(d, cfg.heads, context_dim=cfg.context_dim, out_bias=True)
        self.norm3 = nn.LayerNorm(d, eps=1e-5)
        self.fc1 = nn.Linear(d, 8 * d)  # GEGLU: value = first half, gate = second half
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mod: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, L, D]; context: [B, Lc, Dc] -> [B, L, D] (mod is ignored: no camera)"""
        x = x + self.self_attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), context)
        value, gate = self.fc1(self.norm3(x)).chunk(2, dim=-1)
        return x + self.fc2(value * F.gelu(gate))


class TriplaneTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, n = cfg.dim, 3 * cfg.token_res**2
        self.tokens = nn.Parameter(torch.randn(1, n, d) * (cfg.token_std or d**-0.5))
        block = {"openlrm": OpenLRMBlock, "triposr": TripoSRBlock, "instantmesh": InstantMeshBlock}[cfg.block]
        self.blocks = nn.ModuleList(block(cfg) for _ in range(cfg.layers))
        if cfg.block != "triposr":
            self.norm = nn.LayerNorm(d, eps=1e-6)
        else:
            self.norm_in = nn.GroupNorm(32, d, eps=1e-6)
            self.proj_in = nn.Linear(d, d)
            self.proj_out = nn.Linear(d, d)
        self.grad_checkpointing = False

    def forward(self, context: torch.Tensor, mod: torch.Tensor | None) -> torch.Tensor:
        """context: [B, Lc, Dc] image tokens; mod: [B, M] camera embedding or None -> [B, 3*r*r, D]"""
        b = context.shape[0]
        tokens = self.tokens.expand(b, -1, -1).to(context.dtype)
        if self.cfg.block != "triposr":
            assert mod is not None or self.cfg.block == "instantmesh", "the openlrm block needs a camera embedding"
            x = tokens
        else:
            x = self.norm_in(rearrange(tokens, "b l d -> b d l"))
            x = self.proj_in(rearrange(x, "b d l -> b l d"))
        for blk in self.blocks:
            if self.grad_checkpointing and self.training:
                x = checkpoint(blk, x, context, mod, use_reentrant=False)
            else:
                x = blk(x, context, mod)
        if self.cfg.block != "triposr":
            return self.norm(x)
        return self.proj_out(x) + tokens
