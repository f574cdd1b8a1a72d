"""OpenLRM v1.1 checkpoints (`config.json` with 12 constructor kwargs + `model.safetensors` or
`pytorch_model.bin`) -> our config and state dict. See docs/spec/openlrm-v1.1.md §2, §15.

Key mapping (upstream -> ours):
    pos_embed                                   -> transformer.tokens
    encoder.model.*  (Meta DINOv2 layout)       -> encoder.*  (lrm.convert.encoder)
    camera_embedder.mlp.{0,2}                   -> camera_embedder.fc{1,2}
    transformer.layers.{i}.norm{k}.norm         -> transformer.blocks.{i}.norm{k}.norm
    transformer.layers.{i}.norm{k}.mlp.1        -> transformer.blocks.{i}.norm{k}.mod  ([shift | scale])
    transformer.layers.{i}.cross_attn.in_proj_weight (base) or q/k/v_proj_weight (small, large)
                                                -> transformer.blocks.{i}.cross_attn.q + .kv (k, v)
    transformer.layers.{i}.self_attn.in_proj_weight -> transformer.blocks.{i}.self_attn.qkv
    transformer.layers.{i}.{cross,self}_attn.out_proj -> ....{cross,self}_attn.out
    transformer.layers.{i}.mlp.{0,3}            -> transformer.blocks.{i}.fc{1,2}
    transformer.norm                            -> transformer.norm
    upsampler                                   -> upsampler.deconv
    synthesizer.decoder.net.{0,2,4,6}           -> field.mlp.{0,2,4,6}
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from lrm.convert.encoder import read_encoder
from lrm.convert.reader import StateReader, read_upsampler_and_field
from lrm.errors import LRMError
from lrm.model.encoder import EncoderConfig
from lrm.model.lrm import LRMConfig
from lrm.model.presets import openlrm_base, openlrm_large, openlrm_small
from lrm.model.transformer import TransformerConfig

# encoder_model_name -> (dim, depth, heads) of Meta's DINOv2 ViT/14 with 4 registers.
DINOV2_REG = {
    "dinov2_vits14_reg": (384, 12, 6),
    "dinov2_vitb14_reg": (768, 12, 12),
    "dinov2_vitl14_reg": (1024, 24, 16),
}
REQUIRED = ("camera_embed_dim", "rendering_samples_per_ray", "transformer_dim", "transformer_layers",
            "transformer_heads", "triplane_low_res", "triplane_dim", "encoder_type", "encoder_model_name",
            "encoder_feat_dim")
OPTIONAL = ("triplane_high_res", "encoder_freeze")  # unused by the model / a training switch


def is_openlrm_config(data: dict[str, Any]) -> bool:
    return isinstance(data, dict) and "encoder_type" in data and "transformer_dim" in data


def config_from_openlrm(kw: dict[str, Any], name: str | None = None, where: str = "config.json") -> LRMConfig:
    """Our config from the 12 upstream kwargs; inference defaults from the matching size
    (small/base/large), else base's. Unsupported values raise an LRMError naming them."""
    missing = [k for k in REQUIRED if k not in kw]
    unknown = sorted(set(kw) - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        raise LRMError(f"{where}: not an OpenLRM v1.1 config ("
                       + "; ".join(filter(None, [missing and f"missing {', '.join(missing)}",
                                                 unknown and f"unknown {', '.join(unknown)}"])) + ")")
    if kw["encoder_type"] != "dinov2":
        raise LRMError(f"{where}: encoder_type {kw['encoder_type']!r} is not supported "
                       "(the v1.1 models use 'dinov2'; DINO v1 'dino' is the v1.0 encoder)")
    enc_name = kw["encoder_model_name"]
    if enc_name not in DINOV2_REG:
        raise LRMError(f"{where}: encoder_model_name {enc_name!r} is not supported "
                       f"(choose from {', '.join(DINOV2_REG)})")
    e_dim, e_depth, e_heads = DINOV2_REG[enc_name]
    if kw["encoder_feat_dim"] != e_dim:
        raise LRMError(f"{where}: encoder_feat_dim {kw['encoder_feat_dim']} does not match "
                       f"{enc_name} (width {e_dim})")
    d, heads, low = int(kw["transformer_dim"]), int(kw["transformer_heads"]), int(kw["triplane_low_res"])
    if d % heads:
        raise LRMError(f"{where}: transformer_dim {d} is not divisible by transformer_heads {heads}")
    high = kw.get("triplane_high_res", 2 * low)
    if high != 2 * low:
        raise LRMError(f"{where}: triplane_high_res {high} must be 2 x triplane_low_res ({2 * low}); "
                       "the upsampler doubles the resolution")
    samples = int(kw["rendering_samples_per_ray"])
    if samples % 2 or samples < 8:
        raise LRMError(f"{where}: rendering_samples_per_ray {samples} must be even and >= 8 "
                       "(half coarse, half importance)")
    sizes = {"small": openlrm_small(), "base": openlrm_base(), "large": openlrm_large()}
    size, cfg = next(((s, c) for s, c in sizes.items() if _same_arch(c, kw, enc_name)), ("custom", sizes["base"]))
    cfg.name = name or f"openlrm-{size}"
    cfg.camera_dim = int(kw["camera_embed_dim"])
    cfg.encoder = EncoderConfig(dim=e_dim, depth=e_depth, heads=e_heads, patch_size=14, pos_grid=37,
                                registers=4, layer_scale=True, eps=1e-6, imagenet_norm=False,
                                pos_resize="dinov2")
    cfg.transformer = TransformerConfig(block="openlrm", dim=d, layers=int(kw["transformer_layers"]), heads=heads,
                                        context_dim=e_dim, mod_dim=cfg.camera_dim, token_res=low)
    cfg.field.channels = int(kw["triplane_dim"])
    cfg.render.samples = cfg.render.importance = samples // 2
    return cfg


def _same_arch(cfg: LRMConfig, kw: dict[str, Any], enc_name: str) -> bool:
    t = cfg.transformer
    return ((t.dim, t.layers, t.heads, cfg.field.channels, cfg.encoder.dim, cfg.render.samples * 2)
            == (kw["transformer_dim"], kw["transformer_layers"], kw["transformer_heads"], kw["triplane_dim"],
                DINOV2_REG[enc_name][0], kw["rendering_samples_per_ray"]))


def read_openlrm(r: StateReader, cfg: LRMConfig) -> dict[str, torch.Tensor]:
    """Take every upstream tensor from `r` -> our state dict (`LRM(cfg).state_dict()` keys)."""
    t, f = cfg.transformer, cfg.field
    d, dc, m, cam = t.dim, t.context_dim, t.mod_dim, cfg.camera_dim
    out: dict[str, torch.Tensor] = {"transformer.tokens": r.take("pos_embed", (1, 3 * t.token_res**2, d))}
    enc = read_encoder(r.scoped("encoder.model."), cfg.encoder, "dinov2")
    out.update({"encoder." + k: v for k, v in enc.items()})

    lin = partial(r.linear, out)

    lin("camera_embedder.fc1", "camera_embedder.mlp.0", cam, 16)
    lin("camera_embedder.fc2", "camera_embedder.mlp.2", cam, cam)
    for i in range(t.layers):
        ours, theirs = f"transformer.blocks.{i}.", f"transformer.layers.{i}."
        for k in (1, 2, 3):
            out[ours + f"norm{k}.norm.weight"] = r.take(theirs + f"norm{k}.norm.weight", (d,))
            out[ours + f"norm{k}.norm.bias"] = r.take(theirs + f"norm{k}.norm.bias", (d,))
            lin(ours + f"norm{k}.mod", theirs + f"norm{k}.mlp.1", 2 * d, m)
        ca = theirs + "cross_attn."
        if dc == d:  # nn.MultiheadAttention packs q/k/v when kdim == vdim == embed_dim (base)
            w = r.take(ca + "in_proj_weight", (3 * d, d))
            q, kv = w[:d].clone(), w[d:].clone()
        else:  # separate projections (small: 384 vs 512, large: 768 vs 1024)
            q = r.take(ca + "q_proj_weight", (d, d))
            kv = torch.cat([r.take(ca + "k_proj_weight", (d, dc)), r.take(ca + "v_proj_weight", (d, dc))])
        out[ours + "cross_attn.q.weight"], out[ours + "cross_attn.kv.weight"] = q, kv
        lin(ours + "cross_attn.out", ca + "out_proj", d, d, bias=False)
        out[ours + "self_attn.qkv.weight"] = r.take(theirs + "self_attn.in_proj_weight", (3 * d, d))
        lin(ours + "self_attn.out", theirs + "self_attn.out_proj", d, d, bias=False)
        lin(ours + "fc1", theirs + "mlp.0", 4 * d, d)
        lin(ours + "fc2", theirs + "mlp.3", d, 4 * d)
    out["transformer.norm.weight"] = r.take("transformer.norm.weight", (d,))
    out["transformer.norm.bias"] = r.take("transformer.norm.bias", (d,))
    read_upsampler_and_field(r, out, d, f, "upsampler", "synthesizer.decoder.net")
    return out


def convert_openlrm_state(state: dict[str, torch.Tensor], cfg: LRMConfig, source: str = "checkpoint"
                          ) -> dict[str, torch.Tensor]:
    """Strictly convert an upstream OpenLRM state dict; errors name the upstream keys."""
    reader = StateReader(state, source)
    out = read_openlrm(reader, cfg)
    reader.finish()
    return out


def openlrm_key_table(cfg: LRMConfig) -> dict[str, tuple[int, ...]]:
    """Every upstream key and shape a checkpoint for `cfg` must hold (nothing allocated)."""
    reader = StateReader.recording()
    read_openlrm(reader, cfg)
    return reader.table
