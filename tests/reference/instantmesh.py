"""Slow reference of InstantMesh's NeRF reconstructor (instantmesh.md §3-§5), reading the
upstream state dict (after the `lrm_generator.` prefix) directly. Plain tensor ops, no lrm imports.

    planes = forward_planes(sd, images, cams, heads, enc_heads)   # images [B, V, 3, S, S], cams [B, V, 16]
    sigma, rgb = query(sd, planes[0], xyz)                        # §5.1-§5.2, OpenLRM's decoder
"""

from __future__ import annotations

import math

import torch

from tests.reference.encoders import attention, gelu, layer_norm, linear, patchify
from tests.reference.interp import resize_table
from tests.reference.openlrm import deconv, silu
from tests.reference.openlrm import query as openlrm_query


def camera_embed(sd, cam16):
    """§3.4: Linear(16 -> E) -> SiLU -> Linear(E -> E), no activation after."""
    return linear(silu(linear(cam16, sd, "encoder.camera_embedder.0")), sd, "encoder.camera_embedder.2")


def modulated_vit(sd, images, cam, heads, eps=1e-12):
    """§3.1-§3.3. images: [N, 3, S, S] in [0, 1]; cam: [N, E] camera embedding -> [N, 1 + P, E]"""
    s = {k[len("encoder.model."):]: v for k, v in sd.items() if k.startswith("encoder.model.")}
    x = (images - 0.5) / 0.5  # the DINO processor's mean = std = 0.5
    w = s["embeddings.patch_embeddings.projection.weight"]
    n = images.shape[-1] // w.shape[-1]
    x = patchify(x, w, s["embeddings.patch_embeddings.projection.bias"])
    x = torch.cat([s["embeddings.cls_token"].expand(x.shape[0], -1, -1), x], 1)
    pos = s["embeddings.position_embeddings"]
    x = x + torch.cat([pos[:, :1], resize_table(pos[:, 1:], n, "hf4")], 1)  # bicubic, scale (n + 0.1)/14
    e = x.shape[-1]
    depth = 1 + max(int(k.split(".")[2]) for k in s if k.startswith("encoder.layer."))
    for i in range(depth):
        b = f"encoder.layer.{i}."
        ada = linear(silu(cam), s, b + "adaLN_modulation.1")  # [N, 4E]: shift_msa, scale_msa, shift_mlp, scale_mlp
        shift_a, scale_a, shift_m, scale_m = (ada[:, None, j * e:(j + 1) * e] for j in range(4))
        h = layer_norm(x, s[b + "layernorm_before.weight"], s[b + "layernorm_before.bias"], eps) * (1 + scale_a) + shift_a
        a = b + "attention.attention."
        x = x + linear(attention(linear(h, s, a + "query"), linear(h, s, a + "key"), linear(h, s, a + "value"),
                                 heads), s, b + "attention.output.dense")
        h = layer_norm(x, s[b + "layernorm_after.weight"], s[b + "layernorm_after.bias"], eps) * (1 + scale_m) + shift_m
        x = x + linear(gelu(linear(h, s, b + "intermediate.dense")), s, b + "output.dense")
    return layer_norm(x, s["layernorm.weight"], s["layernorm.bias"], eps)


def forward_planes(sd, images, cams, heads, enc_heads):
    """images: [B, V, 3, S, S]; cams: [B, V, 16] -> planes [B, 3, C, 2r, 2r]"""
    bsz, v = images.shape[:2]
    flat = images.reshape(bsz * v, *images.shape[2:])
    tokens = modulated_vit(sd, flat, camera_embed(sd, cams.reshape(bsz * v, 16)), enc_heads)
    cond = tokens.reshape(bsz, v * tokens.shape[1], tokens.shape[2])  # view-major, each view's CLS first
    x = sd["transformer.pos_embed"].expand(bsz, -1, -1)
    d = x.shape[-1]
    layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.layers."))
    for i in range(layers):
        b = f"transformer.layers.{i}."
        h = layer_norm(x, sd[b + "norm1.weight"], sd[b + "norm1.bias"], 1e-5)
        wq, wk, wv = (sd[b + f"cross_attn.{n}_proj_weight"] for n in "qkv")
        x = x + attention(h @ wq.T, cond @ wk.T, cond @ wv.T, heads) @ sd[b + "cross_attn.out_proj.weight"].T
        h = layer_norm(x, sd[b + "norm2.weight"], sd[b + "norm2.bias"], 1e-5)
        wq, wk, wv = sd[b + "self_attn.in_proj_weight"].split(d)
        x = x + attention(h @ wq.T, h @ wk.T, h @ wv.T, heads) @ sd[b + "self_attn.out_proj.weight"].T
        h = layer_norm(x, sd[b + "norm3.weight"], sd[b + "norm3.bias"], 1e-5)
        x = x + linear(gelu(linear(h, sd, b + "mlp.0")), sd, b + "mlp.3")
    x = layer_norm(x, sd["transformer.norm.weight"], sd["transformer.norm.bias"], 1e-6)
    r = int(round(math.sqrt(x.shape[1] // 3)))
    x = x.reshape(bsz, 3, r, r, d).permute(0, 1, 4, 2, 3)  # token t = p*r*r + h*r + w
    return deconv(x, sd["transformer.deconv.weight"], sd["transformer.deconv.bias"])


def query(sd, planes, xyz):
    """planes: [3, C, H, W]; xyz: [N, 3] -> density softplus(raw - 1) [N], rgb [N, 3] (§5.1-§5.2:
    OpenLRM v1.1's decoder, same key names)."""
    return openlrm_query(sd, planes, xyz)
