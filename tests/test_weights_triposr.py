"""TripoSR weights: config.yaml, strict conversion (transformers 4.x and 5.x ViT names) and
exactness against the slow reference (tests/reference/triposr.py) on random state dicts."""

from pathlib import Path

import pytest
import torch

from lrm import cameras
from lrm.convert.triposr import config_from_triposr, convert_triposr_state, parse_yaml, triposr_key_table
from lrm.errors import CheckpointError, LRMError
from lrm.hub import build_empty, strict_load
from lrm.model.encoder import EncoderConfig
from lrm.model.presets import triposr
from lrm.model.transformer import TransformerConfig
from tests.reference import triposr as ref
from tests.reference.upstream_keys import n_params, random_state, read_tsv, triposr_keys

YAML = (Path(__file__).parent / "fixtures" / "triposr_config.yaml").read_text()


def reduced_cfg():
    """A small TripoSR: ViT of width 64 with 2 layers (14x14 table, patch 16, input 512 -> 32x32),
    2 backbone blocks of width 64, 8x8 tokens, 8 channels; decoder as published (10 layers)."""
    cfg = triposr()
    cfg.encoder = EncoderConfig(dim=64, depth=2, heads=2, patch_size=16, pos_grid=14, registers=0,
                                layer_scale=False, eps=1e-12, imagenet_norm=True, pos_resize="hf4")
    cfg.transformer = TransformerConfig(block="triposr", dim=64, layers=2, heads=2, context_dim=64, mod_dim=0,
                                        token_res=8)
    cfg.field.channels = 8
    return cfg


def reduced_table(names="4.x", pooler=True):
    return triposr_keys(vit_dim=64, vit_depth=2, dim=64, layers=2, res=8, channels=8, names=names, pooler=pooler)


def load(cfg, sd):
    model = build_empty(cfg)
    strict_load(model, convert_triposr_state(dict(sd), cfg), "test")
    return model.eval()


# --- config.yaml and full-size key tables ------------------------------------------------------

def test_config_yaml_gives_the_preset():
    cfg = config_from_triposr(parse_yaml(YAML))
    assert cfg == triposr()
    assert (cfg.inference.source_size, cfg.inference.condition_background, cfg.inference.mesh_resolution,
            cfg.inference.mesh_threshold, cfg.license) == (512, 0.5, 256, 25.0, "MIT")


@pytest.mark.parametrize("names", ["4.x", "5.x"])
def test_full_size_key_table_matches_spec(names):
    cfg = config_from_triposr(parse_yaml(YAML))
    table = triposr_key_table(cfg, "hf-vit4" if names == "4.x" else "hf-vit5")
    expected = triposr_keys(names=names)
    if names == "4.x":
        assert expected == read_tsv("triposr_keys.tsv")  # the pattern tables agree with §15.3
    assert table == expected
    assert (len(table), n_params(table)) == (549, 419_275_628)


@pytest.mark.parametrize("names", ["4.x", "5.x"])
def test_full_size_strict_load_on_meta(names):
    cfg = config_from_triposr(parse_yaml(YAML))
    sd = {k: torch.empty(s, device="meta") for k, s in triposr_keys(names=names).items()}
    model = build_empty(cfg)
    strict_load(model, convert_triposr_state(sd, cfg), "meta")
    assert sum(p.numel() for p in model.parameters()) == 419_275_628 - 590_592  # minus the unused pooler


@pytest.mark.parametrize("edit,message", [
    (("backbone:\n", "backbone:\n  norm_num_groups: 16\n"), "backbone.norm_num_groups = 16"),
    (("density_activation: exp", "density_activation: trunc_exp"), "renderer.density_activation = 'trunc_exp'"),
    (("feature_reduction: concat", "feature_reduction: mean"), "renderer.feature_reduction = 'mean'"),
    (("facebook/dino-vitb16", "facebook/dinov2-base"), "pretrained_model_name_or_path"),
    (("out_channels: 40", "out_channels: 41"), "decoder.in_channels = 120"),
    (("cross_attention_dim: 768", "cross_attention_dim: 512"), "cross_attention_dim = 512"),
    (("num_samples_per_ray: 128", "num_samples_per_ray: 128\n  foo: 1"), "unknown option.*renderer.foo"),
    (("NeRFMLP", "OtherMLP"), "decoder_cls"),
    (("${tokenizer.num_channels}", "${tokenizer.nope}"), "cannot resolve"),
])
def test_config_yaml_rejects_unsupported_values(edit, message):
    with pytest.raises(LRMError, match=message):
        config_from_triposr(parse_yaml(YAML.replace(*edit, 1)))


def test_yaml_is_parsed_safely():
    with pytest.raises(LRMError, match="not valid YAML"):
        parse_yaml("a: !!python/object/apply:os.system ['true']")


# --- strictness ------------------------------------------------------------------------------

def test_reduced_tables_match_reference_layout():
    cfg = reduced_cfg()
    assert triposr_key_table(cfg) == reduced_table("4.x")
    assert triposr_key_table(cfg, "hf-vit5") == reduced_table("5.x")


def test_missing_renamed_and_extra_keys_are_named():
    cfg = reduced_cfg()
    sd = random_state(reduced_table())
    bad = dict(sd)
    del bad["backbone.transformer_blocks.1.attn2.to_v.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys: backbone\.transformer_blocks\.1\.attn2\.to_v\.weight$"):
        convert_triposr_state(bad, cfg)
    bad = dict(sd)
    bad["decoder.layers.1.weight"] = bad.pop("decoder.layers.2.weight")
    with pytest.raises(CheckpointError) as err:
        convert_triposr_state(bad, cfg)
    assert "missing keys: decoder.layers.2.weight" in str(err.value)
    assert "unexpected keys: decoder.layers.1.weight" in str(err.value)
    # the pooler is optional (unused); everything else must be there
    convert_triposr_state(random_state(reduced_table(pooler=False)), cfg)
    # mixing 4.x and 5.x names is not accepted
    bad = dict(sd)
    bad["image_tokenizer.model.layers.0.mlp.fc1.weight"] = bad.pop(
        "image_tokenizer.model.encoder.layer.0.intermediate.dense.weight")
    with pytest.raises(CheckpointError, match="missing keys"):
        convert_triposr_state(bad, cfg)


# --- exactness -------------------------------------------------------------------------------

@pytest.mark.parametrize("names", ["4.x", "5.x"])
def test_scene_codes_queries_and_renders_match_reference(names):
    cfg = reduced_cfg()
    sd = random_state(reduced_table(names), seed=11)
    model = load(cfg, sd)
    image = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        codes = model(image)
        ref_codes = ref.forward(sd, image, vit_heads=2, heads=2, names=names)
        assert codes.shape == ref_codes.shape == (1, 3, 8, 16, 16)
        assert codes.abs().max() > 0.1
        assert (codes - ref_codes).abs().max() < 1e-4

        xyz = torch.rand(1, 400, 3, generator=torch.Generator().manual_seed(13)) * 2 - 1
        sigma, rgb = model.query(codes, xyz)
        ref_sigma, ref_rgb = ref.query(sd, ref_codes[0], xyz[0])
        assert (sigma[0] - ref_sigma).abs().max() < 1e-4 * max(1.0, ref_sigma.abs().max())
        assert (rgb[0] - ref_rgb).abs().max() < 1e-4

        # TripoSR's camera model (§11): fovy 40°; distance 3 (1.9 upstream) so that some rays miss the box
        c2w = cameras.orbit_cameras(1, 3.0, 15.0, 30.0)
        res = 16
        out = model.render(codes, c2w[None], cameras.intrinsics(cameras.fov_to_focal(40.0))[None], res)
        o, d = ref.camera_rays(c2w[0], 40.0, res, res)
        ref_rgb = ref.render(sd, ref_codes[0], o, d).T.reshape(3, res, res)
    assert (ref_rgb < 0.999).any() and (ref_rgb == 1).any()  # some rays hit, some miss the box
    assert (out["rgb"][0, 0] - ref_rgb).abs().max() < 1e-4


def test_hf4_position_rule_differs_from_hf5():
    # The published weights assume transformers 4.35's +0.1 resize; 5.x's size= rule gives other tokens.
    cfg = reduced_cfg()
    sd = random_state(reduced_table(), seed=14)
    model = load(cfg, sd)
    image = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(15))
    with torch.no_grad():
        ours = model.encoder(image)
    hf4 = ref.vit_forward(sd, image, 2)
    hf5 = ref.vit_forward(sd, image, 2, rule="hf5")
    assert (ours - hf4).abs().max() < 1e-4
    assert (ours - hf5).abs().max() > 1e-2


def test_yaml_alias_bomb_is_refused_quickly():
    """800 bytes of nested anchors would expand to 4^24 values; refused in well under a second."""
    import time

    from lrm.convert.triposr import parse_yaml
    from lrm.errors import LRMError

    lines = ["a0: &a0 {x: 1, y: 2}"]
    lines += [f"a{i}: &a{i} {{p: *a{i - 1}, q: *a{i - 1}, r: *a{i - 1}, s: '${{a0.x}}'}}" for i in range(1, 25)]
    t0 = time.perf_counter()
    with pytest.raises(LRMError, match="alias bomb"):
        parse_yaml("\n".join(lines))
    assert time.perf_counter() - t0 < 2.0
    assert parse_yaml("\n".join(lines[:4]))["a3"]["p"]["s"] == 1  # modest aliasing still resolves
