"""Slow reference of TripoSR's forward pass, field and renderer, from triposr.md, reading the
upstream state dict directly. Plain tensor ops, no lrm imports.

    codes = forward(sd, images, vit_heads, heads)           # §4-§8 scene codes [B, 3, C, 2r, 2r]
    sigma, rgb = query(sd, codes[0], xyz)                   # §9 (activated density exp(raw - 1))
    rgb = render(sd, codes[0], origins, dirs)               # §10
"""

from __future__ import annotations

import math

import torch

from tests.reference.encoders import attention, gelu, layer_norm, linear, vit_forward
from tests.reference.openlrm import deconv, triplane_features

PLANE_AXES = ((0, 1), (0, 2), (1, 2))  # §9.1: (x, y), (x, z), (y, z)


def group_norm(x, groups, w, b, eps):
    """x: [B, C, L] -> GroupNorm over (C/groups channels x L) per group, then per-channel affine."""
    bsz, c, n = x.shape
    g = x.reshape(bsz, groups, (c // groups) * n)
    mu = g.mean(-1, keepdim=True)
    var = ((g - mu) ** 2).mean(-1, keepdim=True)
    g = (g - mu) / torch.sqrt(var + eps)
    return g.reshape(bsz, c, n) * w[:, None] + b[:, None]


def forward(sd, images, vit_heads, heads, names="4.x"):
    """images: [B, 3, S, S] in [0, 1] -> scene codes [B, 3, C, 2r, 2r]"""
    ctx = vit_forward(sd, images, vit_heads, names=names)  # [B, 1 + P, E]
    emb = sd["tokenizer.embeddings"]  # [3, D, r, r]
    _, d, r, _ = emb.shape
    x0 = emb.permute(1, 0, 2, 3).reshape(d, 3 * r * r)[None].expand(images.shape[0], -1, -1)  # [B, D, L]
    x = group_norm(x0, 32, sd["backbone.norm.weight"], sd["backbone.norm.bias"], 1e-6)
    x = linear(x.transpose(1, 2), sd, "backbone.proj_in")  # [B, L, D]
    layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("backbone.transformer_blocks."))
    for j in range(layers):
        b = f"backbone.transformer_blocks.{j}."
        h = layer_norm(x, sd[b + "norm1.weight"], sd[b + "norm1.bias"], 1e-5)
        a = attention(*(linear(h, sd, b + f"attn1.to_{n}", bias=False) for n in "qkv"), heads)
        x = x + linear(a, sd, b + "attn1.to_out.0")
        h = layer_norm(x, sd[b + "norm2.weight"], sd[b + "norm2.bias"], 1e-5)
        a = attention(linear(h, sd, b + "attn2.to_q", bias=False), linear(ctx, sd, b + "attn2.to_k", bias=False),
                      linear(ctx, sd, b + "attn2.to_v", bias=False), heads)
        x = x + linear(a, sd, b + "attn2.to_out.0")
        h = layer_norm(x, sd[b + "norm3.weight"], sd[b + "norm3.bias"], 1e-5)
        p = linear(h, sd, b + "ff.net.0.proj")
        value, gate = p[..., : 4 * d], p[..., 4 * d:]  # GEGLU: value first, gate second
        x = x + linear(value * gelu(gate), sd, b + "ff.net.2")
    x = linear(x, sd, "backbone.proj_out").transpose(1, 2) + x0  # [B, D, L] + raw tokens
    planes = x.reshape(x.shape[0], d, 3, r, r).permute(0, 2, 1, 3, 4)  # detokenize: [B, 3, D, r, r]
    return deconv(planes, sd["post_processor.upsample.weight"], sd["post_processor.upsample.bias"])


def decode(sd, feats):
    """§9.2: Linear layers at 0, 2, ..., SiLU between -> density exp(raw - 1), colour sigmoid."""
    n = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("decoder.layers.")) // 2
    h = feats
    for j in range(n):
        h = linear(h, sd, f"decoder.layers.{2 * j}")
        if j < n - 1:
            h = h * torch.sigmoid(h)
    return torch.exp(h[:, 0] - 1.0), torch.sigmoid(h[:, 1:])


def query(sd, planes, xyz, radius=0.87):
    """planes: [3, C, H, W]; xyz: [N, 3] world -> density [N], rgb [N, 3]"""
    q = (xyz + radius) / (2 * radius) * 2 - 1
    return decode(sd, triplane_features(planes, q, PLANE_AXES))


def render(sd, planes, o, d, radius=0.87, samples=128):
    """§10. o, d: [R, 3] (d unit) -> rgb [R, 3] on white"""
    half = radius * (1 - 1e-3)
    dd = torch.where(d.abs() < 1e-6, torch.full_like(d, 1e-6), d)
    t1, t2 = (half - o) / dd, (-half - o) / dd
    near = torch.minimum(t1, t2).max(-1).values.clamp(min=0)
    far = torch.maximum(t1, t2).min(-1).values
    valid = far - near > 0.01
    tau = (torch.arange(samples, dtype=torch.float32) + 0.5) / samples
    z = near[:, None] * (1 - tau) + far[:, None] * tau
    pts = o[:, None] + z[..., None] * d[:, None]
    sigma, rgb = query(sd, planes, pts.reshape(-1, 3), radius)
    sigma, rgb = sigma.reshape(-1, samples), rgb.reshape(-1, samples, 3)
    alpha = 1 - torch.exp(-sigma / samples)  # δ = 1/128 of the normalised ray parameter
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha + 1e-10], 1), 1)[:, :-1]
    w = alpha * trans
    out = (w[..., None] * rgb).sum(1) + (1 - w.sum(1, keepdim=True))
    return torch.where(valid[:, None], out, torch.ones_like(out))


def camera_rays(c2w, fovy_deg, h, w):
    """§11: pixel-centre rays of an OpenGL camera. c2w: [4, 4] -> o, d: [H*W, 3]"""
    f = 0.5 * h / math.tan(math.radians(fovy_deg) / 2)
    i, j = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    dirs = torch.stack([(j + 0.5 - w / 2) / f, -(i + 0.5 - h / 2) / f, -torch.ones_like(i)], -1).reshape(-1, 3)
    d = dirs @ c2w[:3, :3].T
    d = d / d.norm(dim=-1, keepdim=True)
    return c2w[:3, 3].expand_as(d), d
