"""Encoder-only conversion (`lrm.convert.encoder`) from Meta DINOv2, HF Dinov2(-with-registers)
and HF ViT (transformers 4.x / 5.x names), with or without a prefix; strict; exact vs reference.
Widths are 128 = 2 heads of 64, DINO's head width, which detect_encoder_config assumes."""

import pytest
import torch

from lrm.convert.encoder import convert_encoder_state, detect_encoder_config
from lrm.errors import CheckpointError
from lrm.model.encoder import EncoderConfig, ImageEncoder
from tests.reference.encoders import dinov2_forward, vit_forward
from tests.reference.upstream_keys import openlrm_keys, random_state, triposr_keys

DINO_CFG = EncoderConfig(dim=128, depth=2, heads=2, patch_size=14, pos_grid=37, registers=4, layer_scale=True,
                         eps=1e-6, imagenet_norm=False, pos_resize="dinov2")
VIT_CFG = EncoderConfig(dim=128, depth=2, heads=2, patch_size=16, pos_grid=14, registers=0, layer_scale=False,
                        eps=1e-12, imagenet_norm=True, pos_resize="hf4")


def meta_dinov2(prefix="", mask_token=True, seed=0):
    table = openlrm_keys(enc_dim=128, enc_depth=2, mask_token=mask_token)
    sd = random_state({k: v for k, v in table.items() if k.startswith("encoder.model.")}, seed)
    return {prefix + k[len("encoder.model."):]: v for k, v in sd.items()}


def hf_dinov2(meta, prefix=""):
    """Meta's layout renamed to transformers' Dinov2 names (q/k/v split from the packed qkv)."""
    out = {"embeddings.cls_token": meta["cls_token"], "embeddings.mask_token": torch.zeros(1, 1, 128),
           "embeddings.register_tokens": meta["register_tokens"],
           "embeddings.position_embeddings": meta["pos_embed"],
           "embeddings.patch_embeddings.projection.weight": meta["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.projection.bias": meta["patch_embed.proj.bias"],
           "layernorm.weight": meta["norm.weight"], "layernorm.bias": meta["norm.bias"]}
    for i in range(2):
        m, h = f"blocks.{i}.", f"encoder.layer.{i}."
        for n, part in zip(("query", "key", "value"), meta[m + "attn.qkv.weight"].split(128)):
            out[h + f"attention.attention.{n}.weight"] = part
        for n, part in zip(("query", "key", "value"), meta[m + "attn.qkv.bias"].split(128)):
            out[h + f"attention.attention.{n}.bias"] = part
        for ours, theirs in (("attn.proj", "attention.output.dense"), ("norm1", "norm1"), ("norm2", "norm2"),
                             ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")):
            out[h + theirs + ".weight"], out[h + theirs + ".bias"] = meta[m + ours + ".weight"], meta[m + ours + ".bias"]
        out[h + "layer_scale1.lambda1"], out[h + "layer_scale2.lambda1"] = meta[m + "ls1.gamma"], meta[m + "ls2.gamma"]
    return {prefix + k: v for k, v in out.items()}


def hf_vit(names="4.x", prefix="", pooler=True, seed=0):
    table = triposr_keys(vit_dim=128, vit_depth=2, layers=0, names=names, pooler=pooler)
    sd = random_state({k: v for k, v in table.items() if k.startswith("image_tokenizer.model.")}, seed)
    return {prefix + k[len("image_tokenizer.model."):]: v for k, v in sd.items()}


def encode(cfg, state, images):
    enc = ImageEncoder(cfg).eval()
    enc.load_state_dict(state, strict=True)
    with torch.no_grad():
        return enc(images)


@pytest.mark.parametrize("prefix", ["", "model.", "encoder.model."])
def test_meta_dinov2_matches_reference(prefix):
    sd = meta_dinov2(prefix)
    image = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ours = encode(DINO_CFG, convert_encoder_state(sd, DINO_CFG), image)
    ref = dinov2_forward(sd, image, heads=2, prefix=prefix)
    assert (ours - ref).abs().max() < 1e-4
    assert detect_encoder_config(sd) == DINO_CFG


@pytest.mark.parametrize("prefix", ["", "dinov2."])
def test_hf_dinov2_equals_meta_layout(prefix):
    meta = meta_dinov2()
    a = convert_encoder_state(meta, DINO_CFG)
    b = convert_encoder_state(hf_dinov2(meta, prefix), DINO_CFG)
    assert a.keys() == b.keys() == ImageEncoder(DINO_CFG).state_dict().keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert detect_encoder_config(hf_dinov2(meta, prefix)) == DINO_CFG


@pytest.mark.parametrize("names,prefix,pooler", [("4.x", "", True), ("4.x", "vit.", False),
                                                 ("5.x", "image_tokenizer.model.", True)])
def test_hf_vit_matches_reference(names, prefix, pooler):
    sd = hf_vit(names, prefix, pooler)
    image = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(1))
    ours = encode(VIT_CFG, convert_encoder_state(sd, VIT_CFG), image)
    ref = vit_forward(sd, image, 2, prefix=prefix, names=names)
    assert (ours - ref).abs().max() < 1e-4
    assert detect_encoder_config(sd) == VIT_CFG


def test_encoder_conversion_is_strict():
    sd = meta_dinov2("model.")
    with pytest.raises(CheckpointError, match=r"unexpected keys: head\.weight"):
        convert_encoder_state({**sd, "head.weight": torch.zeros(2, 128)}, DINO_CFG)
    bad = dict(sd)
    del bad["model.blocks.1.ls2.gamma"]
    with pytest.raises(CheckpointError, match=r"missing keys: model\.blocks\.1\.ls2\.gamma"):
        convert_encoder_state(bad, DINO_CFG)
    with pytest.raises(CheckpointError, match="shape mismatch: model.pos_embed"):
        convert_encoder_state(sd, EncoderConfig(**{**DINO_CFG.__dict__, "pos_grid": 16}))
    with pytest.raises(CheckpointError, match="no LayerScale or register tokens"):
        convert_encoder_state(hf_vit(), DINO_CFG)
    with pytest.raises(CheckpointError, match="several image encoders"):
        convert_encoder_state({**sd, "other.cls_token": torch.zeros(1, 1, 128)}, DINO_CFG)
    with pytest.raises(CheckpointError, match="no image encoder found"):
        convert_encoder_state({"a": torch.zeros(1)}, DINO_CFG)
