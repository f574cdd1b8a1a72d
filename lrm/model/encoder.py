"""Image encoder: a compact ViT covering DINOv2-with-registers (OpenLRM v1.1) and DINO v1 (TripoSR).

Token order inside the encoder is `[CLS, registers..., patches...]`; the output is the final
LayerNorm of CLS + patches, registers dropped: `[B, 1 + P, E]`.

The position table is learned for a `pos_grid`² patch grid and resized to the input's grid.
The three resize rules in the wild differ numerically and are all reproduced (`PosResize`):
- "dinov2": bicubic, antialias=True, scale_factor = n / grid (OpenLRM's DINOv2, no +0.1);
- "hf4": bicubic, no antialias, scale_factor = (n + 0.1) / grid (transformers 4.35, TripoSR);
- "hf5": bicubic, no antialias, size = (n, n) (transformers 5.x).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lrm.model.attention import Attention

PosResize = Literal["dinov2", "hf4", "hf5"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
from lrm.configs import require


@dataclass
class EncoderConfig:
    dim: int = 768  # token width E
    depth: int = 12  # number of transformer blocks
    heads: int = 12  # attention heads (head width dim // heads)
    patch_size: int = 14  # square patch side in pixels
    pos_grid: int = 37  # side of the learned position-embedding grid
    registers: int = 4  # register tokens (DINOv2-reg: 4; DINO v1: 0)
    layer_scale: bool = True  # LayerScale gammas after attention and MLP (DINOv2)
    eps: float = 1e-6  # LayerNorm epsilon (DINOv2 1e-6; HF DINO 1e-12)
    imagenet_norm: bool = False  # normalise the [0,1] input with ImageNet mean/std (DINO v1)
    half_norm: bool = False  # normalise the [0,1] input as (x - 0.5) / 0.5 (InstantMesh's DINO processor)
    mod_dim: int = 0  # camera modulation of every block's two pre-norms (InstantMesh's adaLN); 0 = none
    pos_resize: PosResize = "dinov2"  # position-table resize rule, see module docstring
    pos_std: float = 0.02  # init std of the position table (DINO's 0.02). Training from scratch wants
    # ~1: at 0.02 the white background's patches are nearly identical, the image tokens carry
    # little of where they are, and the triplane cannot learn which part of the photo it shows
    # (measured on `tiny`, 3 objects, 200 steps: occupancy BCE 0.20 at 0.02, 0.07 at 1.0)

    def __post_init__(self) -> None:
        require([(min(self.dim, self.depth, self.heads, self.patch_size, self.pos_grid) > 0,
                  f"encoder sizes must be > 0 (dim {self.dim}, depth {self.depth}, heads {self.heads}, "
                  f"patch_size {self.patch_size}, pos_grid {self.pos_grid})"),
                 (self.dim % self.heads == 0, f"encoder dim {self.dim} is not divisible by heads {self.heads}"),
                 (self.registers >= 0 and self.eps > 0 and self.pos_std >= 0 and self.mod_dim >= 0,
                  "encoder registers, pos_std, mod_dim must be >= 0 and eps > 0"),
                 (not (self.imagenet_norm and self.half_norm), "encoder: choose imagenet_norm or half_norm, not both")])


def resize_pos_embed(table: torch.Tensor, grid_hw: tuple[int, int], rule: PosResize) -> torch.Tensor:
    """Resize a square patch position table to another grid, in float32.

    table: [1, G*G, E] (patch entries only, row-major) -> [1, h*w, E]
    """
    n_in = table.shape[1]
    g = int(round(n_in**0.5))
    assert g * g == n_in, f"position table of {n_in} entries is not square"
    h, w = grid_hw
    if (h, w) == (g, g):
        return table
    grid = rearrange(table.float(), "1 (gh gw) e -> 1 e gh gw", gh=g)
    if rule == "dinov2":
        out = F.interpolate(grid, scale_factor=(h / g, w / g), mode="bicubic", antialias=True)
    elif rule == "hf4":
        out = F.interpolate(
            grid, scale_factor=((h + 0.1) / g, (w + 0.1) / g), mode="bicubic", align_corners=False
        )
    elif rule == "hf5":
        out = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
    else:
        raise ValueError(f"unknown position resize rule {rule!r}")
    if out.shape[-2:] != (h, w):
        raise ValueError(f"position table resize gave {tuple(out.shape[-2:])}, expected {(h, w)}")
    return rearrange(out, "1 e h w -> 1 (h w) e").to(table.dtype)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, E] -> [B, L, E]"""
        return self.fc2(F.gelu(self.fc1(x)))


class EncoderBlock(nn.Module):
    """Pre-norm ViT block: `x + ls1*Attn(LN(x))`, then `x + ls2*MLP(LN(x))`.

    With `mod_dim` (InstantMesh) each pre-norm is modulated by the view's camera embedding c:
    `[shift_a | scale_a | shift_m | scale_m] = ada(SiLU(c))`, `LN(x) * (1 + scale) + shift`."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.attn = Attention(cfg.dim, cfg.heads, qkv_bias=True, out_bias=True)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.mlp = Mlp(cfg.dim, 4 * cfg.dim)
        self.ls1 = nn.Parameter(torch.ones(cfg.dim)) if cfg.layer_scale else None
        self.ls2 = nn.Parameter(torch.ones(cfg.dim)) if cfg.layer_scale else None
        self.ada = nn.Linear(cfg.mod_dim, 4 * cfg.dim) if cfg.mod_dim else None

    def forward(self, x: torch.Tensor, mod: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, L, E]; mod: [B, M] camera embedding (modulated blocks only) -> [B, L, E]"""
        h1, h2 = self.norm1, self.norm2
        if self.ada is not None:
            assert mod is not None, "a camera-modulated encoder needs a camera embedding"
            sa, ca, sm, cm = self.ada(F.silu(mod)).unsqueeze(1).chunk(4, dim=-1)
            h1 = lambda t: self.norm1(t) * (1 + ca) + sa  # noqa: E731
            h2 = lambda t: self.norm2(t) * (1 + cm) + sm  # noqa: E731
        a = self.attn(h1(x))
        x = x + (a * self.ls1 if self.ls1 is not None else a)
        m = self.mlp(h2(x))
        return x + (m * self.ls2 if self.ls2 is not None else m)


class ImageEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        e = cfg.dim
        self.patch_embed = nn.Conv2d(3, e, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + cfg.pos_grid**2, e) * cfg.pos_std)
        self.register_tokens = nn.Parameter(torch.zeros(1, cfg.registers, e)) if cfg.registers else None
        self.blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(e, eps=cfg.eps)
        self.reset_buffers()
        self.grad_checkpointing = False

    def reset_buffers(self) -> None:
        """(Re)create the non-persistent ImageNet mean/std buffers (after meta-device construction)."""
        dev = self.cls_token.device if not self.cls_token.is_meta else "cpu"
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, device=dev).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD, device=dev).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, mod: torch.Tensor | None = None) -> torch.Tensor:
        """images: [B, 3, H, W] RGB in [0, 1]; mod: [B, M] per-image camera embedding (modulated
        encoders only) -> tokens [B, 1 + P, E] (CLS first, no registers)."""
        assert images.ndim == 4 and images.shape[1] == 3, f"expected [B, 3, H, W], got {tuple(images.shape)}"
        p = self.cfg.patch_size
        h, w = images.shape[-2] // p, images.shape[-1] // p
        if self.cfg.imagenet_norm:
            images = (images - self.mean) / self.std
        elif self.cfg.half_norm:
            images = (images - 0.5) / 0.5
        x = rearrange(self.patch_embed(images), "b e h w -> b (h w) e")
        pos = self.pos_embed
        patch_pos = resize_pos_embed(pos[:, 1:], (h, w), self.cfg.pos_resize)
        pos = torch.cat([pos[:, :1], patch_pos], dim=1).to(x.dtype)
        cls = self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype)
        x = torch.cat([cls, x], dim=1) + pos
        r = self.cfg.registers
        if self.register_tokens is not None:
            reg = self.register_tokens.expand(x.shape[0], -1, -1).to(x.dtype)
            x = torch.cat([x[:, :1], reg, x[:, 1:]], dim=1)
        for block in self.blocks:
            if self.grad_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, mod, use_reentrant=False)
            else:
                x = block(x, mod)
        x = self.norm(x)
        return torch.cat([x[:, :1], x[:, 1 + r :]], dim=1)
