"""Image-encoder weights from the public layouts to our `ImageEncoder` (one copy of the mapping).

Layouts (keys after an optional prefix such as `model.`, `encoder.model.`, `dinov2.`, `vit.`):
- "dinov2": Meta's DINOv2 `.pth` (`cls_token`, `pos_embed`, `register_tokens`,
  `patch_embed.proj`, `blocks.{i}.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1,
  mlp.fc2, ls2.gamma}`, `norm`); OpenLRM v1.1 stores this layout under `encoder.model.`.
- "hf-dinov2": transformers Dinov2 / Dinov2WithRegisters (`embeddings.*`,
  `encoder.layer.{i}.{norm1, attention.attention.query|key|value, attention.output.dense,
  layer_scale1.lambda1, norm2, mlp.fc1, mlp.fc2, layer_scale2.lambda1}`, `layernorm`).
- "hf-vit4": transformers 4.x ViT (DINO v1; TripoSR under `image_tokenizer.model.`):
  `encoder.layer.{i}.{layernorm_before, attention.attention.query|key|value,
  attention.output.dense, layernorm_after, intermediate.dense, output.dense}`, `layernorm`.
- "hf-vit5": transformers 5.x ViT names: `layers.{i}.{layernorm_before, attention.q_proj|k_proj|
  v_proj, attention.o_proj, layernorm_after, mlp.fc1, mlp.fc2}`.
An encoder modulated by the camera (InstantMesh, hf-vit4 names) adds
`encoder.layer.{i}.adaLN_modulation.1` -> `blocks.{i}.ada`.
Known-unused tensors are dropped: `mask_token` (all layouts), `pooler.dense.*` (ViT).
Separate q/k/v projections are packed into our `qkv` (rows q, k, v).
"""

from __future__ import annotations

import re
from functools import partial
from typing import Literal

import torch

from lrm.convert.reader import StateReader
from lrm.errors import CheckpointError
from lrm.model.encoder import EncoderConfig

Layout = Literal["dinov2", "hf-dinov2", "hf-vit4", "hf-vit5"]
LAYOUTS: tuple[Layout, ...] = ("dinov2", "hf-dinov2", "hf-vit4", "hf-vit5")


def detect_layout(keys: list[str]) -> Layout:
    """Layout of encoder keys (prefix already stripped)."""
    ks = set(keys)
    if "cls_token" in ks:
        return "dinov2"
    if "embeddings.cls_token" not in ks:
        raise CheckpointError("no image encoder found (no cls_token / embeddings.cls_token key)")
    if any(".layer_scale1." in k or k.endswith(".norm1.weight") for k in keys) or "embeddings.register_tokens" in ks:
        return "hf-dinov2"
    if any(k.startswith("layers.") for k in keys):
        return "hf-vit5"
    return "hf-vit4"


def find_prefix(keys: list[str]) -> str:
    """The prefix in front of the encoder's keys, found from its unique cls token."""
    found = []
    for k in keys:
        if k.endswith("embeddings.cls_token"):
            found.append(k[: -len("embeddings.cls_token")])
        elif k.endswith("cls_token"):
            found.append(k[: -len("cls_token")])
    if not found:
        raise CheckpointError("no image encoder found (no cls_token / embeddings.cls_token key)")
    if len(found) > 1:
        raise CheckpointError(f"several image encoders found (prefixes {', '.join(map(repr, found))})")
    return found[0]


def read_encoder(r: StateReader, cfg: EncoderConfig, layout: Layout) -> dict[str, torch.Tensor]:
    """Take every encoder tensor from `r` (scoped at the encoder) -> our `ImageEncoder` keys."""
    vit = layout in ("hf-vit4", "hf-vit5")
    if vit and (cfg.layer_scale or cfg.registers):
        raise CheckpointError(
            f"{r.source}: a ViT ({layout}) checkpoint has no LayerScale or register tokens, "
            "but the config asks for them"
        )
    e, p, g = cfg.dim, cfg.patch_size, cfg.pos_grid
    out: dict[str, torch.Tensor] = {}

    lin, norm = partial(r.linear, out), partial(r.affine, out, n=e)

    def packed(ours: str, q: str, k: str, v: str) -> None:
        out[ours + ".weight"] = torch.cat([r.take(n + ".weight", (e, e)) for n in (q, k, v)])
        out[ours + ".bias"] = torch.cat([r.take(n + ".bias", (e,)) for n in (q, k, v)])

    emb = "" if layout == "dinov2" else "embeddings."
    out["cls_token"] = r.take(emb + "cls_token", (1, 1, e))
    out["pos_embed"] = r.take("pos_embed" if layout == "dinov2" else "embeddings.position_embeddings",
                              (1, 1 + g * g, e))
    if cfg.registers:
        out["register_tokens"] = r.take(emb + "register_tokens", (1, cfg.registers, e))
    r.drop(emb + "mask_token", (1, e) if layout == "dinov2" else (1, 1, e))
    patch = "patch_embed.proj" if layout == "dinov2" else "embeddings.patch_embeddings.projection"
    out["patch_embed.weight"] = r.take(patch + ".weight", (e, 3, p, p))
    out["patch_embed.bias"] = r.take(patch + ".bias", (e,))

    for i in range(cfg.depth):
        ours = f"blocks.{i}."
        if layout == "dinov2":
            b = f"blocks.{i}."
            norm(ours + "norm1", b + "norm1")
            lin(ours + "attn.qkv", b + "attn.qkv", 3 * e, e)
            lin(ours + "attn.out", b + "attn.proj", e, e)
            norm(ours + "norm2", b + "norm2")
            lin(ours + "mlp.fc1", b + "mlp.fc1", 4 * e, e)
            lin(ours + "mlp.fc2", b + "mlp.fc2", e, 4 * e)
            ls1, ls2 = b + "ls1.gamma", b + "ls2.gamma"
        elif layout == "hf-dinov2":
            b = f"encoder.layer.{i}."
            a = b + "attention.attention."
            norm(ours + "norm1", b + "norm1")
            packed(ours + "attn.qkv", a + "query", a + "key", a + "value")
            lin(ours + "attn.out", b + "attention.output.dense", e, e)
            norm(ours + "norm2", b + "norm2")
            lin(ours + "mlp.fc1", b + "mlp.fc1", 4 * e, e)
            lin(ours + "mlp.fc2", b + "mlp.fc2", e, 4 * e)
            ls1, ls2 = b + "layer_scale1.lambda1", b + "layer_scale2.lambda1"
        else:
            v4 = layout == "hf-vit4"
            b = f"encoder.layer.{i}." if v4 else f"layers.{i}."
            a = b + ("attention.attention." if v4 else "attention.")
            names = ("query", "key", "value") if v4 else ("q_proj", "k_proj", "v_proj")
            norm(ours + "norm1", b + "layernorm_before")
            packed(ours + "attn.qkv", *(a + n for n in names))
            lin(ours + "attn.out", b + ("attention.output.dense" if v4 else "attention.o_proj"), e, e)
            norm(ours + "norm2", b + "layernorm_after")
            lin(ours + "mlp.fc1", b + ("intermediate.dense" if v4 else "mlp.fc1"), 4 * e, e)
            lin(ours + "mlp.fc2", b + ("output.dense" if v4 else "mlp.fc2"), e, 4 * e)
            ls1 = ls2 = ""
        if cfg.layer_scale:
            out[ours + "ls1"] = r.take(ls1, (e,))
            out[ours + "ls2"] = r.take(ls2, (e,))
        if cfg.mod_dim:  # InstantMesh's per-layer camera modulation (Sequential(SiLU, Linear))
            lin(ours + "ada", b + "adaLN_modulation.1", 4 * e, cfg.mod_dim)

    norm("norm", "norm" if layout == "dinov2" else "layernorm")
    if vit:
        r.drop("pooler.dense.weight", (e, e))
        r.drop("pooler.dense.bias", (e,))
    return out


def convert_encoder_state(state: dict[str, torch.Tensor], cfg: EncoderConfig) -> dict[str, torch.Tensor]:
    """Any supported encoder layout (optionally prefixed) -> `ImageEncoder(cfg).state_dict()` keys.

    Strict: a key that is neither consumed nor known-unused raises a CheckpointError naming it,
    as does a missing or mis-shaped one.
    """
    prefix = find_prefix(list(state))
    reader = StateReader(state, "encoder checkpoint")
    scoped = reader.scoped(prefix)
    out = read_encoder(scoped, cfg, detect_layout(scoped.keys()))
    reader.finish()
    return out


def detect_encoder_config(state: dict[str, torch.Tensor]) -> EncoderConfig:
    """Encoder config from a state dict's shapes. DINOv2 layouts get OpenLRM's conventions (raw
    [0,1] input, antialiased position resize), ViT layouts TripoSR's (ImageNet normalisation,
    the transformers-4.35 resize with +0.1); heads assume DINO's head width 64."""
    prefix = find_prefix(list(state))
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    layout = detect_layout(list(sub))
    emb = "" if layout == "dinov2" else "embeddings."
    dim = sub[emb + "cls_token"].shape[-1]
    pos = sub["pos_embed" if layout == "dinov2" else "embeddings.position_embeddings"]
    grid = int(round((pos.shape[1] - 1) ** 0.5))
    patch_key = "patch_embed.proj.weight" if layout == "dinov2" else "embeddings.patch_embeddings.projection.weight"
    block = {"dinov2": r"blocks\.(\d+)\.", "hf-dinov2": r"encoder\.layer\.(\d+)\.",
             "hf-vit4": r"encoder\.layer\.(\d+)\.", "hf-vit5": r"layers\.(\d+)\."}[layout]
    depth = 1 + max(int(m.group(1)) for k in sub if (m := re.match(block, k)))
    dinov2 = layout in ("dinov2", "hf-dinov2")
    reg = sub.get(emb + "register_tokens")
    return EncoderConfig(
        dim=dim, depth=depth, heads=max(1, dim // 64), patch_size=sub[patch_key].shape[-1], pos_grid=grid,
        registers=0 if reg is None else reg.shape[1], layer_scale=dinov2, eps=1e-6 if dinov2 else 1e-12,
        imagenet_norm=not dinov2, pos_resize="dinov2" if dinov2 else "hf4",
    )
