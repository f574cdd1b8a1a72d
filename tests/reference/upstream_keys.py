"""Upstream state-dict key tables written from the spec's pattern tables, independently of
lrm.convert, and random state dicts in those layouts.

OpenLRM v1.1: docs/spec/openlrm-v1.1.md §15.1-§15.3. TripoSR: docs/spec/triposr.md §15.1-§15.2.
Dimensions are parameters so that tests can use reduced sizes; the defaults are the spec's.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

HERE = Path(__file__).parent


def read_tsv(name: str) -> dict[str, tuple[int, ...]]:
    """A key table transcribed from the spec (tests/reference/*.tsv)."""
    table = {}
    for line in (HERE / name).read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")
            table[key] = tuple(int(s) for s in shape.split(","))
    return table


def openlrm_keys(enc_dim=768, enc_depth=12, patch=14, pos_entries=1370, registers=4, dim=768, layers=12,
                 cam=1024, tokens=3072, channels=48, hidden=64, mask_token=False):
    """§15.1/§15.3: pos_embed, encoder.model.* (Meta DINOv2), camera_embedder, transformer, upsampler,
    synthesizer.decoder. Cross-attention is packed iff enc_dim == dim (nn.MultiheadAttention)."""
    e, d = enc_dim, dim
    t = {"pos_embed": (1, tokens, d), "encoder.model.cls_token": (1, 1, e),
         "encoder.model.pos_embed": (1, pos_entries, e)}
    if registers:
        t["encoder.model.register_tokens"] = (1, registers, e)
    if mask_token:
        t["encoder.model.mask_token"] = (1, e)
    t["encoder.model.patch_embed.proj.weight"] = (e, 3, patch, patch)
    t["encoder.model.patch_embed.proj.bias"] = (e,)
    for i in range(enc_depth):
        b = f"encoder.model.blocks.{i}."
        t.update({b + "norm1.weight": (e,), b + "norm1.bias": (e,), b + "attn.qkv.weight": (3 * e, e),
                  b + "attn.qkv.bias": (3 * e,), b + "attn.proj.weight": (e, e), b + "attn.proj.bias": (e,),
                  b + "ls1.gamma": (e,), b + "norm2.weight": (e,), b + "norm2.bias": (e,),
                  b + "mlp.fc1.weight": (4 * e, e), b + "mlp.fc1.bias": (4 * e,), b + "mlp.fc2.weight": (e, 4 * e),
                  b + "mlp.fc2.bias": (e,), b + "ls2.gamma": (e,)})
    t.update({"encoder.model.norm.weight": (e,), "encoder.model.norm.bias": (e,),
              "camera_embedder.mlp.0.weight": (cam, 16), "camera_embedder.mlp.0.bias": (cam,),
              "camera_embedder.mlp.2.weight": (cam, cam), "camera_embedder.mlp.2.bias": (cam,)})
    for i in range(layers):
        b = f"transformer.layers.{i}."

        def modln(k):
            return {b + f"norm{k}.norm.weight": (d,), b + f"norm{k}.norm.bias": (d,),
                    b + f"norm{k}.mlp.1.weight": (2 * d, cam), b + f"norm{k}.mlp.1.bias": (2 * d,)}

        t.update(modln(1))
        if e == d:
            t[b + "cross_attn.in_proj_weight"] = (3 * d, d)
        else:
            t.update({b + "cross_attn.q_proj_weight": (d, d), b + "cross_attn.k_proj_weight": (d, e),
                      b + "cross_attn.v_proj_weight": (d, e)})
        t[b + "cross_attn.out_proj.weight"] = (d, d)
        t.update(modln(2))
        t.update({b + "self_attn.in_proj_weight": (3 * d, d), b + "self_attn.out_proj.weight": (d, d)})
        t.update(modln(3))
        t.update({b + "mlp.0.weight": (4 * d, d), b + "mlp.0.bias": (4 * d,), b + "mlp.3.weight": (d, 4 * d),
                  b + "mlp.3.bias": (d,)})
    t.update({"transformer.norm.weight": (d,), "transformer.norm.bias": (d,),
              "upsampler.weight": (d, channels, 2, 2), "upsampler.bias": (channels,)})
    dims = [3 * channels, hidden, hidden, hidden, 4]
    for j in range(4):
        t[f"synthesizer.decoder.net.{2 * j}.weight"] = (dims[j + 1], dims[j])
        t[f"synthesizer.decoder.net.{2 * j}.bias"] = (dims[j + 1],)
    return t


OPENLRM_SIZES = {  # §15.3 / §2.2
    "small": dict(enc_dim=384, dim=512, layers=12, channels=32),
    "base": dict(enc_dim=768, dim=768, layers=12, channels=48),
    "large": dict(enc_dim=768, dim=1024, layers=16, channels=80),
}


def triposr_keys(vit_dim=768, vit_depth=12, patch=16, pos_entries=197, dim=1024, layers=16, res=32,
                 channels=40, hidden=64, decoder_layers=10, names="4.x", pooler=True):
    """§15.1 (transformers 4.x names) and §15.2 (5.x renames of the ViT submodules)."""
    e, d = vit_dim, dim
    p = "image_tokenizer.model."
    t = {p + "embeddings.cls_token": (1, 1, e), p + "embeddings.position_embeddings": (1, pos_entries, e),
         p + "embeddings.patch_embeddings.projection.weight": (e, 3, patch, patch),
         p + "embeddings.patch_embeddings.projection.bias": (e,)}
    for i in range(vit_depth):
        if names == "4.x":
            b = p + f"encoder.layer.{i}."
            q, k, v, o = (b + "attention.attention.query", b + "attention.attention.key",
                          b + "attention.attention.value", b + "attention.output.dense")
            fc1, fc2 = b + "intermediate.dense", b + "output.dense"
        else:
            b = p + f"layers.{i}."
            q, k, v, o = (b + "attention.q_proj", b + "attention.k_proj", b + "attention.v_proj",
                          b + "attention.o_proj")
            fc1, fc2 = b + "mlp.fc1", b + "mlp.fc2"
        for name in (q, k, v, o):
            t[name + ".weight"], t[name + ".bias"] = (e, e), (e,)
        t[fc1 + ".weight"], t[fc1 + ".bias"] = (4 * e, e), (4 * e,)
        t[fc2 + ".weight"], t[fc2 + ".bias"] = (e, 4 * e), (e,)
        for ln in ("layernorm_before", "layernorm_after"):
            t[b + ln + ".weight"], t[b + ln + ".bias"] = (e,), (e,)
    t[p + "layernorm.weight"], t[p + "layernorm.bias"] = (e,), (e,)
    if pooler:
        t[p + "pooler.dense.weight"], t[p + "pooler.dense.bias"] = (e, e), (e,)
    t["tokenizer.embeddings"] = (3, d, res, res)
    t.update({"backbone.norm.weight": (d,), "backbone.norm.bias": (d,), "backbone.proj_in.weight": (d, d),
              "backbone.proj_in.bias": (d,)})
    for j in range(layers):
        b = f"backbone.transformer_blocks.{j}."
        for n in (1, 2, 3):
            t[b + f"norm{n}.weight"], t[b + f"norm{n}.bias"] = (d,), (d,)
        for a, kv_in in (("attn1", d), ("attn2", e)):
            t[b + f"{a}.to_q.weight"] = (d, d)
            t[b + f"{a}.to_k.weight"] = (d, kv_in)
            t[b + f"{a}.to_v.weight"] = (d, kv_in)
            t[b + f"{a}.to_out.0.weight"], t[b + f"{a}.to_out.0.bias"] = (d, d), (d,)
        t[b + "ff.net.0.proj.weight"], t[b + "ff.net.0.proj.bias"] = (8 * d, d), (8 * d,)
        t[b + "ff.net.2.weight"], t[b + "ff.net.2.bias"] = (d, 4 * d), (d,)
    t.update({"backbone.proj_out.weight": (d, d), "backbone.proj_out.bias": (d,),
              "post_processor.upsample.weight": (d, channels, 2, 2), "post_processor.upsample.bias": (channels,)})
    dims = [3 * channels] + [hidden] * (decoder_layers - 1) + [4]
    for j in range(decoder_layers):
        t[f"decoder.layers.{2 * j}.weight"], t[f"decoder.layers.{2 * j}.bias"] = (dims[j + 1], dims[j]), (dims[j + 1],)
    return t


def instantmesh_keys(vit_dim=768, vit_depth=12, patch=16, pos_entries=197, dim=1024, layers=12, res=32,
                     channels=40, hidden=64):
    """instantmesh.md §2.3, after the `lrm_generator.` prefix (NeRF variants)."""
    e, d = vit_dim, dim
    p = "encoder.model."
    t = {p + "embeddings.cls_token": (1, 1, e), p + "embeddings.position_embeddings": (1, pos_entries, e),
         p + "embeddings.patch_embeddings.projection.weight": (e, 3, patch, patch),
         p + "embeddings.patch_embeddings.projection.bias": (e,)}
    for i in range(vit_depth):
        b = p + f"encoder.layer.{i}."
        for name in ("attention.attention.query", "attention.attention.key", "attention.attention.value",
                     "attention.output.dense"):
            t[b + name + ".weight"], t[b + name + ".bias"] = (e, e), (e,)
        t[b + "intermediate.dense.weight"], t[b + "intermediate.dense.bias"] = (4 * e, e), (4 * e,)
        t[b + "output.dense.weight"], t[b + "output.dense.bias"] = (e, 4 * e), (e,)
        for ln in ("layernorm_before", "layernorm_after"):
            t[b + ln + ".weight"], t[b + ln + ".bias"] = (e,), (e,)
        t[b + "adaLN_modulation.1.weight"], t[b + "adaLN_modulation.1.bias"] = (4 * e, e), (4 * e,)
    t[p + "layernorm.weight"], t[p + "layernorm.bias"] = (e,), (e,)
    t["encoder.camera_embedder.0.weight"], t["encoder.camera_embedder.0.bias"] = (e, 16), (e,)
    t["encoder.camera_embedder.2.weight"], t["encoder.camera_embedder.2.bias"] = (e, e), (e,)
    t["transformer.pos_embed"] = (1, 3 * res * res, d)
    for i in range(layers):
        b = f"transformer.layers.{i}."
        for n in (1, 2, 3):
            t[b + f"norm{n}.weight"], t[b + f"norm{n}.bias"] = (d,), (d,)
        t[b + "cross_attn.q_proj_weight"] = (d, d)
        t[b + "cross_attn.k_proj_weight"] = (d, e)
        t[b + "cross_attn.v_proj_weight"] = (d, e)
        t[b + "cross_attn.out_proj.weight"] = (d, d)
        t[b + "self_attn.in_proj_weight"] = (3 * d, d)
        t[b + "self_attn.out_proj.weight"] = (d, d)
        t[b + "mlp.0.weight"], t[b + "mlp.0.bias"] = (4 * d, d), (4 * d,)
        t[b + "mlp.3.weight"], t[b + "mlp.3.bias"] = (d, 4 * d), (d,)
    t["transformer.norm.weight"], t["transformer.norm.bias"] = (d,), (d,)
    t["transformer.deconv.weight"], t["transformer.deconv.bias"] = (d, channels, 2, 2), (channels,)
    dims = [3 * channels, hidden, hidden, hidden, 4]
    for j in range(4):
        t[f"synthesizer.decoder.net.{2 * j}.weight"] = (dims[j + 1], dims[j])
        t[f"synthesizer.decoder.net.{2 * j}.bias"] = (dims[j + 1],)
    return t


def n_params(table: dict[str, tuple[int, ...]]) -> int:
    return sum(math.prod(s) for s in table.values())


def random_state(table: dict[str, tuple[int, ...]], seed: int = 0, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Random tensors with sensible scales: matrices ~ N(0, 1/fan_in), norm/scale vectors ~ 1 + 0.1 N,
    biases ~ 0.1 N, tokens and tables ~ 0.5 N. Deterministic in `seed`."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in table.items():
        x = torch.randn(shape, generator=g, dtype=torch.float32)
        leaf = key.rsplit(".", 1)[-1]
        if len(shape) >= 2 and leaf.endswith("weight"):
            fan_in = math.prod(shape[1:]) if "upsampler" not in key and "upsample" not in key else shape[0]
            x = x / math.sqrt(fan_in)
        elif leaf in ("gamma", "lambda1"):
            x = 0.5 + 0.1 * x
        elif leaf == "weight" and len(shape) == 1:
            x = 1 + 0.1 * x
        elif leaf == "bias":
            x = 0.1 * x
        else:
            x = 0.5 * x
        out[key] = x.to(dtype)
    return out
