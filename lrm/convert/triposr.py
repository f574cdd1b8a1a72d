"""TripoSR checkpoints (`config.yaml` + `model.ckpt`, a pickled fp32 state dict) -> our config
and state dict. See docs/spec/triposr.md §3, §15.

Key mapping (upstream -> ours):
    image_tokenizer.model.* (HF ViT, 4.x or 5.x names) -> encoder.*  (lrm.convert.encoder;
                                                          the unused pooler is dropped)
    tokenizer.embeddings [3, D, r, r]               -> transformer.tokens [1, 3*r*r, D]
    backbone.norm (GroupNorm) / proj_in / proj_out  -> transformer.norm_in / proj_in / proj_out
    backbone.transformer_blocks.{j}.norm{1,2,3}     -> transformer.blocks.{j}.norm{1,2,3}
    ....attn1.to_{q,k,v} / to_out.0                 -> ....self_attn.qkv / out
    ....attn2.to_q / to_{k,v} / to_out.0            -> ....cross_attn.q / kv / out
    ....ff.net.0.proj / ff.net.2 (GEGLU)            -> ....fc1 / fc2
    post_processor.upsample                         -> upsampler.deconv
    decoder.layers.{0,2,..,2(L-1)}                  -> field.mlp.{same}
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from einops import rearrange

from lrm.convert.encoder import read_encoder
from lrm.convert.reader import StateReader, read_upsampler_and_field
from lrm.errors import LRMError
from lrm.model.encoder import EncoderConfig
from lrm.model.lrm import LRMConfig
from lrm.model.presets import triposr
from lrm.model.transformer import TransformerConfig

# HF DINO v1 ViTs the image tokenizer can name -> (dim, depth, heads, patch); all at 224 px.
DINO_VITS = {
    "facebook/dino-vitb16": (768, 12, 12, 16),
    "facebook/dino-vits16": (384, 12, 6, 16),
    "facebook/dino-vitb8": (768, 12, 12, 8),
    "facebook/dino-vits8": (384, 12, 6, 8),
}
CLASSES = {
    "image_tokenizer_cls": "tsr.models.tokenizers.image.DINOSingleImageTokenizer",
    "tokenizer_cls": "tsr.models.tokenizers.triplane.Triplane1DTokenizer",
    "backbone_cls": "tsr.models.transformer.transformer_1d.Transformer1D",
    "post_processor_cls": "tsr.models.network_utils.TriplaneUpsampleNetwork",
    "decoder_cls": "tsr.models.network_utils.NeRFMLP",
    "renderer_cls": "tsr.models.nerf_renderer.TriplaneNeRFRenderer",
}
# Options whose values we do not model: they must keep upstream's class defaults.
FIXED = {
    "backbone": {"dropout": 0.0, "norm_num_groups": 32, "attention_bias": False, "activation_fn": "geglu",
                 "only_cross_attention": False, "double_self_attention": False, "upcast_attention": False,
                 "norm_type": "layer_norm", "norm_elementwise_affine": True, "gradient_checkpointing": False},
    "decoder": {"bias": True, "weight_init": "kaiming_uniform", "bias_init": None},
    "renderer": {"feature_reduction": "concat", "density_activation": "exp", "color_activation": "sigmoid",
                 "randomized": False},
    "image_tokenizer": {"enable_gradient_checkpointing": False},
}
# Options we read; anything else in the file is an error (we could not honour it).
READ = {
    "": {"cond_image_size", *CLASSES, *FIXED, "tokenizer", "post_processor"},
    "image_tokenizer": {"pretrained_model_name_or_path"},
    "tokenizer": {"plane_size", "num_channels"},
    "backbone": {"in_channels", "num_attention_heads", "attention_head_dim", "num_layers", "cross_attention_dim"},
    "post_processor": {"in_channels", "out_channels"},
    "decoder": {"in_channels", "n_neurons", "n_hidden_layers", "activation"},
    "renderer": {"radius", "density_bias", "num_samples_per_ray"},
}


MAX_YAML_NODES = 10_000


def parse_yaml(text: str, where: str = "config.yaml") -> dict[str, Any]:
    """Safe YAML (no code, no tags) with OmegaConf's `${a.b}` interpolations resolved."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LRMError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise LRMError(f"{where}: expected a mapping at the top level")

    budget = [MAX_YAML_NODES]  # aliases make a DAG: copying it could grow exponentially

    def resolve(value: Any, depth: int = 0) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise LRMError(f"{where}: more than {MAX_YAML_NODES} values after expanding aliases and "
                           "interpolations (TripoSR's has ~60); refusing a YAML alias bomb")
        if isinstance(value, dict):
            return {k: resolve(v, depth) for k, v in value.items()}
        if isinstance(value, str) and value.startswith("${") and value.endswith("}") and depth < 8:
            node: Any = data
            for part in value[2:-1].split("."):
                if not isinstance(node, dict) or part not in node:
                    raise LRMError(f"{where}: cannot resolve interpolation {value}")
                node = node[part]
            return resolve(node, depth + 1)
        return value

    return resolve(data)


def config_from_triposr(y: dict[str, Any], name: str = "triposr", where: str = "config.yaml") -> LRMConfig:
    """Our config from TripoSR's (parsed) config.yaml; values we do not support raise an
    LRMError naming the key. Inference defaults are TripoSR's."""

    def get(section: str, key: str, default: Any = ...) -> Any:
        node = y.get(section, {}) if section else y
        if not isinstance(node, dict) or (key not in node and default is ...):
            raise LRMError(f"{where}: missing {section + '.' if section else ''}{key}")
        return node.get(key, default)

    def fail(key: str, value: Any, why: str) -> LRMError:
        return LRMError(f"{where}: {key} = {value!r} is not supported ({why})")

    for section, known in READ.items():
        node = y.get(section, {}) if section else y
        unknown = sorted(set(node) - known - set(FIXED.get(section, {}))) if isinstance(node, dict) else []
        if unknown:
            prefix = section + "." if section else ""
            raise LRMError(f"{where}: unknown option(s) {', '.join(prefix + k for k in unknown)}")
    for key, cls in CLASSES.items():
        if get("", key) != cls:
            raise fail(key, get("", key), f"expected {cls}")
    for section, fixed in FIXED.items():
        for key, want in fixed.items():
            value = get(section, key, want)
            if value != want:
                raise fail(f"{section}.{key}", value, f"only {want!r} is implemented")
    vit = get("image_tokenizer", "pretrained_model_name_or_path")
    if vit not in DINO_VITS:
        raise fail("image_tokenizer.pretrained_model_name_or_path", vit, f"choose from {', '.join(DINO_VITS)}")
    e_dim, e_depth, e_heads, patch = DINO_VITS[vit]
    d, res = int(get("tokenizer", "num_channels")), int(get("tokenizer", "plane_size"))
    heads, head_dim = int(get("backbone", "num_attention_heads")), int(get("backbone", "attention_head_dim"))
    checks = [("backbone.in_channels", get("backbone", "in_channels"), d, "tokenizer.num_channels"),
              ("backbone heads x head dim", heads * head_dim, d, "tokenizer.num_channels"),
              ("backbone.cross_attention_dim", get("backbone", "cross_attention_dim"), e_dim, f"{vit} width"),
              ("post_processor.in_channels", get("post_processor", "in_channels"), d, "tokenizer.num_channels")]
    channels = int(get("post_processor", "out_channels"))
    checks.append(("decoder.in_channels", get("decoder", "in_channels"), 3 * channels, "3 x out_channels"))
    for key, value, want, what in checks:
        if value != want:
            raise fail(key, value, f"must equal {what} = {want}")
    if d % 32:
        raise fail("tokenizer.num_channels", d, "GroupNorm uses 32 groups")
    act = get("decoder", "activation")
    if act not in ("silu", "relu"):
        raise fail("decoder.activation", act, "choose silu or relu")

    cfg = triposr()
    cfg.name = name
    cfg.encoder = EncoderConfig(dim=e_dim, depth=e_depth, heads=e_heads, patch_size=patch, pos_grid=224 // patch,
                                registers=0, layer_scale=False, eps=1e-12, imagenet_norm=True, pos_resize="hf4")
    cfg.transformer = TransformerConfig(block="triposr", dim=d, layers=int(get("backbone", "num_layers")),
                                        heads=heads, context_dim=e_dim, mod_dim=0, token_res=res)
    f = cfg.field
    f.channels, f.hidden, f.activation = channels, int(get("decoder", "n_neurons")), act
    f.layers = int(get("decoder", "n_hidden_layers")) + 1
    f.density_bias = float(get("renderer", "density_bias"))
    f.radius = cfg.render.radius = float(get("renderer", "radius"))
    cfg.render.samples = int(get("renderer", "num_samples_per_ray"))
    cfg.inference.source_size = int(get("", "cond_image_size"))
    return cfg


def read_triposr(r: StateReader, cfg: LRMConfig, encoder_layout: str = "hf-vit4") -> dict[str, torch.Tensor]:
    """Take every upstream tensor from `r` -> our state dict (`LRM(cfg).state_dict()` keys)."""
    t, f = cfg.transformer, cfg.field
    d, dc = t.dim, t.context_dim
    enc = read_encoder(r.scoped("image_tokenizer.model."), cfg.encoder, encoder_layout)
    out = {"encoder." + k: v for k, v in enc.items()}
    emb = r.take("tokenizer.embeddings", (3, d, t.token_res, t.token_res))
    out["transformer.tokens"] = rearrange(emb, "p d h w -> 1 (p h w) d").contiguous()

    lin, norm = partial(r.linear, out), partial(r.affine, out, n=d)

    norm("transformer.norm_in", "backbone.norm")
    lin("transformer.proj_in", "backbone.proj_in", d, d)
    for j in range(t.layers):
        ours, theirs = f"transformer.blocks.{j}.", f"backbone.transformer_blocks.{j}."
        for k in (1, 2, 3):
            norm(ours + f"norm{k}", theirs + f"norm{k}")
        a1, a2 = theirs + "attn1.", theirs + "attn2."
        out[ours + "self_attn.qkv.weight"] = torch.cat([r.take(a1 + f"to_{n}.weight", (d, d)) for n in "qkv"])
        lin(ours + "self_attn.out", a1 + "to_out.0", d, d)
        out[ours + "cross_attn.q.weight"] = r.take(a2 + "to_q.weight", (d, d))
        out[ours + "cross_attn.kv.weight"] = torch.cat([r.take(a2 + f"to_{n}.weight", (d, dc)) for n in "kv"])
        lin(ours + "cross_attn.out", a2 + "to_out.0", d, d)
        lin(ours + "fc1", theirs + "ff.net.0.proj", 8 * d, d)
        lin(ours + "fc2", theirs + "ff.net.2", d, 4 * d)
    lin("transformer.proj_out", "backbone.proj_out", d, d)
    read_upsampler_and_field(r, out, d, f, "post_processor.upsample", "decoder.layers")
    return out


def convert_triposr_state(state: dict[str, torch.Tensor], cfg: LRMConfig, source: str = "checkpoint"
                          ) -> dict[str, torch.Tensor]:
    """Strictly convert an upstream TripoSR state dict (transformers 4.x or 5.x ViT names)."""
    reader = StateReader(state, source)
    vit5 = any(k.startswith("layers.") for k in reader.scoped("image_tokenizer.model.").keys())
    out = read_triposr(reader, cfg, "hf-vit5" if vit5 else "hf-vit4")
    reader.finish()
    return out


def triposr_key_table(cfg: LRMConfig, encoder_layout: str = "hf-vit4") -> dict[str, tuple[int, ...]]:
    """Every upstream key and shape of a TripoSR checkpoint for `cfg`, including the ViT pooler
    that the published file holds and the model does not use (nothing allocated)."""
    reader = StateReader.recording()
    read_triposr(reader, cfg, encoder_layout)
    return {**reader.table, **{k: v for k, v in reader.optional.items() if ".pooler." in k}}
