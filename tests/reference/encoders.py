"""Slow, explicit forward passes of the two upstream image encoders, reading upstream-layout
state dicts. Plain tensor ops; attention written out as softmax(QK^T/sqrt(d))V.

- `dinov2_forward`: Meta's DINOv2 with registers as OpenLRM v1.1 uses it (openlrm-v1.1.md §4).
- `vit_forward`: transformers-4.35 ViT as TripoSR uses it (triposr.md §5), 4.x or 5.x key names.
"""

from __future__ import annotations

import math

import torch

from tests.reference.interp import resize_table


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def attention(q, k, v, heads):
    """q: [B, L, D]; k, v: [B, Lk, D] -> [B, L, D]; heads split the last axis in order."""
    b, lq, d = q.shape
    hd = d // heads
    q = q.reshape(b, lq, heads, hd).transpose(1, 2)
    k = k.reshape(b, -1, heads, hd).transpose(1, 2)
    v = v.reshape(b, -1, heads, hd).transpose(1, 2)
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
    return (a @ v).transpose(1, 2).reshape(b, lq, d)


def linear(x, sd, name, bias=True):
    y = x @ sd[name + ".weight"].T
    return y + sd[name + ".bias"] if bias else y


def patchify(images, weight, bias):
    """Patch embedding as an explicit matmul: images [B, 3, H, W] -> [B, P, E], patches row-major."""
    b, _, h, w = images.shape
    p = weight.shape[-1]
    x = images.reshape(b, 3, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # [B, h, w, 3, p, p]
    x = x.reshape(b, (h // p) * (w // p), 3 * p * p)
    return x @ weight.reshape(weight.shape[0], -1).T + bias


def dinov2_forward(sd, images, heads, prefix="encoder.model.", registers=4, eps=1e-6):
    """images: [B, 3, S, S] raw RGB in [0, 1] -> [B, 1 + P, E] (final LN of CLS + patches)."""
    s = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    p = s["patch_embed.proj.weight"].shape[-1]
    n = images.shape[-1] // p
    x = patchify(images, s["patch_embed.proj.weight"], s["patch_embed.proj.bias"])
    x = torch.cat([s["cls_token"].expand(x.shape[0], -1, -1), x], 1)
    pos = s["pos_embed"]
    x = x + torch.cat([pos[:, :1], resize_table(pos[:, 1:], n, "dinov2")], 1)  # AA bicubic, offset 0
    if registers:
        x = torch.cat([x[:, :1], s["register_tokens"].expand(x.shape[0], -1, -1), x[:, 1:]], 1)
    depth = 1 + max(int(k.split(".")[1]) for k in s if k.startswith("blocks."))
    for i in range(depth):
        b = f"blocks.{i}."
        h = layer_norm(x, s[b + "norm1.weight"], s[b + "norm1.bias"], eps)
        q, k, v = linear(h, s, b + "attn.qkv").chunk(3, -1)
        x = x + s[b + "ls1.gamma"] * linear(attention(q, k, v, heads), s, b + "attn.proj")
        h = layer_norm(x, s[b + "norm2.weight"], s[b + "norm2.bias"], eps)
        x = x + s[b + "ls2.gamma"] * linear(gelu(linear(h, s, b + "mlp.fc1")), s, b + "mlp.fc2")
    x = layer_norm(x, s["norm.weight"], s["norm.bias"], eps)
    return torch.cat([x[:, :1], x[:, 1 + registers:]], 1)


def vit_forward(sd, images, heads, prefix="image_tokenizer.model.", names="4.x", eps=1e-12, rule="hf4"):
    """images: [B, 3, S, S] in [0, 1] -> last_hidden_state [B, 1 + P, E] (ImageNet-normalised input,
    position grid resized with the transformers-4.35 rule unless `rule` says otherwise)."""
    s = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    images = (images - mean) / std
    w = s["embeddings.patch_embeddings.projection.weight"]
    n = images.shape[-1] // w.shape[-1]
    x = patchify(images, w, s["embeddings.patch_embeddings.projection.bias"])
    x = torch.cat([s["embeddings.cls_token"].expand(x.shape[0], -1, -1), x], 1)
    pos = s["embeddings.position_embeddings"]
    x = x + torch.cat([pos[:, :1], resize_table(pos[:, 1:], n, rule)], 1)
    layer = "encoder.layer." if names == "4.x" else "layers."
    depth = 1 + max(int(k[len(layer):].split(".")[0]) for k in s if k.startswith(layer))
    for i in range(depth):
        b = f"{layer}{i}."
        if names == "4.x":
            q, k, v, o = (b + "attention.attention.query", b + "attention.attention.key",
                          b + "attention.attention.value", b + "attention.output.dense")
            fc1, fc2 = b + "intermediate.dense", b + "output.dense"
        else:
            q, k, v, o = (b + "attention.q_proj", b + "attention.k_proj", b + "attention.v_proj", b + "attention.o_proj")
            fc1, fc2 = b + "mlp.fc1", b + "mlp.fc2"
        h = layer_norm(x, s[b + "layernorm_before.weight"], s[b + "layernorm_before.bias"], eps)
        x = x + linear(attention(linear(h, s, q), linear(h, s, k), linear(h, s, v), heads), s, o)
        h = layer_norm(x, s[b + "layernorm_after.weight"], s[b + "layernorm_after.bias"], eps)
        x = x + linear(gelu(linear(h, s, fc1)), s, fc2)
    return layer_norm(x, s["layernorm.weight"], s["layernorm.bias"], eps)
