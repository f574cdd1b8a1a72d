"""OpenLRM v1.1 weights: strict conversion and exactness against the slow reference
(tests/reference/openlrm.py) on random state dicts in the exact upstream key layout.

Reduced sizes keep it fast where the behaviour is size-independent (fewer/narrower layers,
8x8 token grids); the full-size key tables are checked against the spec without allocating."""

import math

import pytest
import torch

from lrm import cameras
from lrm.convert.openlrm import config_from_openlrm, convert_openlrm_state, openlrm_key_table
from lrm.errors import CheckpointError, LRMError
from lrm.hub import build_empty, strict_load
from lrm.model.encoder import EncoderConfig
from lrm.model.presets import openlrm_base, openlrm_large, openlrm_small
from lrm.model.transformer import TransformerConfig
from tests.reference import openlrm as ref
from tests.reference.upstream_keys import OPENLRM_SIZES, n_params, openlrm_keys, random_state, read_tsv

CONFIG_JSON = {  # openlrm-v1.1.md §2.2, base
    "camera_embed_dim": 1024, "rendering_samples_per_ray": 96, "transformer_dim": 768, "transformer_layers": 12,
    "transformer_heads": 12, "triplane_low_res": 32, "triplane_high_res": 64, "triplane_dim": 48,
    "encoder_type": "dinov2", "encoder_model_name": "dinov2_vitb14_reg", "encoder_feat_dim": 768,
    "encoder_freeze": False,
}
SIZES_JSON = {
    "small": {**CONFIG_JSON, "transformer_dim": 512, "transformer_heads": 8, "triplane_dim": 32,
              "encoder_model_name": "dinov2_vits14_reg", "encoder_feat_dim": 384},
    "base": CONFIG_JSON,
    "large": {**CONFIG_JSON, "rendering_samples_per_ray": 128, "transformer_dim": 1024, "transformer_layers": 16,
              "transformer_heads": 16, "triplane_dim": 80},
}
PARAMS = {"small": 111_390_948, "base": 260_201_972, "large": 452_138_004}  # §2.3
TENSORS = {"small": 456, "base": 432, "large": 544}


def reduced_cfg(packed: bool):
    """A small OpenLRM: 2 DINOv2 blocks of width 64 (37x37 table, 4 registers), 2 transformer
    layers, 8x8 tokens. packed: transformer width == encoder width (base's in_proj layout)."""
    cfg = openlrm_base()
    cfg.camera_dim = 32
    cfg.encoder = EncoderConfig(dim=64, depth=2, heads=2, patch_size=14, pos_grid=37, registers=4,
                                layer_scale=True, eps=1e-6, imagenet_norm=False, pos_resize="dinov2")
    cfg.transformer = TransformerConfig(block="openlrm", dim=64 if packed else 96, layers=2, heads=2,
                                        context_dim=64, mod_dim=32, token_res=8)
    cfg.field.channels = 8
    cfg.render.samples = cfg.render.importance = 12
    return cfg


def reduced_table(cfg):
    t = cfg.transformer
    return openlrm_keys(enc_dim=64, enc_depth=2, dim=t.dim, layers=2, cam=32, tokens=3 * 64, channels=8)


def load(cfg, sd):
    model = build_empty(cfg)
    strict_load(model, convert_openlrm_state(dict(sd), cfg), "test")
    return model.eval()


# --- config.json and full-size key tables ------------------------------------------------------

@pytest.mark.parametrize("size", ["small", "base", "large"])
def test_config_json_gives_the_preset(size):
    cfg = config_from_openlrm(SIZES_JSON[size], name=f"openlrm-mix-{size}-1.1")
    preset = {"small": openlrm_small, "base": openlrm_base, "large": openlrm_large}[size]()
    preset.name = f"openlrm-mix-{size}-1.1"
    assert cfg == preset
    assert cfg.license == "CC-BY-NC-4.0"
    assert (cfg.inference.source_size, cfg.inference.render_size) == {
        "small": (224, 192), "base": (336, 288), "large": (448, 384)}[size]


@pytest.mark.parametrize("size", ["small", "base", "large"])
def test_full_size_key_table_matches_spec(size):
    cfg = config_from_openlrm(SIZES_JSON[size])
    table = openlrm_key_table(cfg)
    expected = read_tsv("openlrm_base_keys.tsv") if size == "base" else openlrm_keys(**OPENLRM_SIZES[size])
    if size == "base":
        assert expected == openlrm_keys(**OPENLRM_SIZES["base"])  # the pattern tables agree with §15.2
    assert table == expected
    assert (len(table), n_params(table)) == (TENSORS[size], PARAMS[size])
    packed = any("cross_attn.in_proj_weight" in k for k in table)
    assert packed == (size == "base")


@pytest.mark.parametrize("size", ["small", "base", "large"])
def test_full_size_strict_load_on_meta(size):
    # Every parameter of the full-size model is filled from the upstream keys (shapes checked),
    # without allocating the weights: the converter runs on meta tensors.
    cfg = config_from_openlrm(SIZES_JSON[size])
    sd = {k: torch.empty(s, device="meta") for k, s in openlrm_key_table(cfg).items()}
    model = build_empty(cfg)
    strict_load(model, convert_openlrm_state(sd, cfg), "meta")
    assert sum(p.numel() for p in model.parameters()) == PARAMS[size]


@pytest.mark.parametrize("change,message", [
    ({"encoder_type": "dino"}, "encoder_type 'dino' is not supported"),
    ({"encoder_model_name": "dinov2_vitg14_reg"}, "encoder_model_name 'dinov2_vitg14_reg'"),
    ({"encoder_feat_dim": 384}, "encoder_feat_dim 384 does not match"),
    ({"triplane_high_res": 128}, "triplane_high_res 128"),
    ({"rendering_samples_per_ray": 95}, "rendering_samples_per_ray 95"),
    ({"transformer_heads": 7}, "not divisible"),
    ({"foo": 1}, "unknown foo"),
])
def test_config_json_rejects_unsupported_values(change, message):
    with pytest.raises(LRMError, match=message):
        config_from_openlrm({**CONFIG_JSON, **change})
    with pytest.raises(LRMError, match="missing transformer_dim"):
        config_from_openlrm({k: v for k, v in CONFIG_JSON.items() if k != "transformer_dim"})


# --- strictness ------------------------------------------------------------------------------

@pytest.mark.parametrize("packed", [True, False])
def test_reduced_table_matches_reference_layout(packed):
    cfg = reduced_cfg(packed)
    assert openlrm_key_table(cfg) == reduced_table(cfg)


def test_missing_renamed_misshaped_and_extra_keys_are_named():
    cfg = reduced_cfg(packed=False)
    sd = random_state(reduced_table(cfg))
    bad = dict(sd)
    del bad["transformer.layers.1.cross_attn.k_proj_weight"]
    with pytest.raises(CheckpointError, match=r"missing keys: transformer\.layers\.1\.cross_attn\.k_proj_weight$"):
        convert_openlrm_state(bad, cfg)
    bad = dict(sd)
    bad["encoder.model.blocks.0.ls1.weight"] = bad.pop("encoder.model.blocks.0.ls1.gamma")
    with pytest.raises(CheckpointError) as err:
        convert_openlrm_state(bad, cfg)
    assert "missing keys: encoder.model.blocks.0.ls1.gamma" in str(err.value)
    assert "unexpected keys: encoder.model.blocks.0.ls1.weight" in str(err.value)
    bad = dict(sd)
    bad["upsampler.bias"] = torch.zeros(9)
    with pytest.raises(CheckpointError, match=r"shape mismatch: upsampler\.bias \(9,\) \(expected \(8,\)\)"):
        convert_openlrm_state(bad, cfg)
    bad = {**sd, "encoder.model.mask_token": torch.zeros(1, 64)}  # Meta's unused mask token: dropped
    convert_openlrm_state(bad, cfg)
    with pytest.raises(CheckpointError, match="unexpected keys: extra"):
        convert_openlrm_state({**sd, "extra": torch.zeros(1)}, cfg)


def test_packed_layout_is_required_when_widths_match():
    # base-like widths (encoder == transformer) must use in_proj_weight, as nn.MultiheadAttention saves it
    cfg = reduced_cfg(packed=True)
    sd = random_state(reduced_table(cfg))
    w = sd.pop("transformer.layers.0.cross_attn.in_proj_weight")
    for name, part in zip("qkv", w.split(64)):
        sd[f"transformer.layers.0.cross_attn.{name}_proj_weight"] = part
    with pytest.raises(CheckpointError, match="missing keys: transformer.layers.0.cross_attn.in_proj_weight"):
        convert_openlrm_state(sd, cfg)


# --- exactness -------------------------------------------------------------------------------

def _image(size=224, seed=0):
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("packed", [True, False])
def test_triplanes_and_queries_match_reference(packed):
    cfg = reduced_cfg(packed)
    sd = random_state(reduced_table(cfg), seed=1)
    model = load(cfg, sd)
    image = _image()
    cam16 = model.source_camera(1, distance=2.3)
    with torch.no_grad():
        planes = model(image, cam16)
        ref_planes = ref.forward_planes(sd, image, cam16, heads=2, enc_heads=2)
        assert planes.shape == ref_planes.shape == (1, 3, 8, 16, 16)
        assert planes.abs().max() > 0.1
        assert (planes - ref_planes).abs().max() < 1e-4
        xyz = torch.rand(1, 500, 3, generator=torch.Generator().manual_seed(2)) * 2.2 - 1.1
        sigma, rgb = model.query(planes, xyz)
        ref_sigma, ref_rgb = ref.query(sd, ref_planes[0], xyz[0])
    assert (sigma[0] - ref_sigma).abs().max() < 1e-4
    assert (rgb[0] - ref_rgb).abs().max() < 1e-4


def test_encoder_at_all_three_source_sizes():
    # 224 / 336 / 448 px -> 16 / 24 / 32 patch grids, each an antialiased downsampling of 37x37
    cfg = reduced_cfg(packed=True)
    sd = random_state(reduced_table(cfg), seed=3)
    model = load(cfg, sd)
    for size in (224, 336, 448):
        image = _image(size, seed=size)
        with torch.no_grad():
            ours = model.encoder(image)
        theirs = ref.dinov2_forward(sd, image, heads=2)
        assert ours.shape == (1, 1 + (size // 14) ** 2, 64)
        assert (ours - theirs).abs().max() < 1e-4, size


def _views():
    """Two 25-number cameras (§5.3): a turntable view and the canonical source view."""
    c2w = torch.cat([cameras.orbit_cameras(1, 2.0, 20.0, -60.0), cameras.canonical_c2w(2.0)[None]])
    intr = cameras.intrinsics(0.75, 2)
    k = torch.tensor([0.75, 0.0, 0.5, 0.0, 0.75, 0.5, 0.0, 0.0, 1.0]).expand(2, 9)
    return c2w[None], intr[None], torch.cat([c2w.reshape(2, 16), k], 1)[None]


@pytest.mark.parametrize("seeded", [False, True])
def test_renders_match_reference(seeded):
    cfg = reduced_cfg(packed=False)
    sd = random_state(reduced_table(cfg), seed=4)
    model = load(cfg, sd)
    res, s_c, s_f = 12, cfg.render.samples, cfg.render.importance
    c2w, intr, cams25 = _views()
    with torch.no_grad():
        planes = model(_image(), None)
        if seeded:  # upstream's draw order and shapes (§11.10): coarse jitter, then importance u
            out = model.render(planes, c2w, intr, res, generator=torch.Generator().manual_seed(7))
            g = torch.Generator().manual_seed(7)
            jitter = torch.rand(2, res * res, s_c, 1, generator=g)
            u = torch.rand(2 * res * res, s_f, generator=g)
        else:  # our deterministic mode: jitter fixed at its mean 0.5, u = (k + 0.5)/S_f
            out = model.render(planes, c2w, intr, res)
            jitter = torch.full((2, res * res, s_c, 1), 0.5)
            u = ((torch.arange(s_f) + 0.5) / s_f).expand(2 * res * res, s_f).contiguous()
        rgb, depth, opacity = ref.render(sd, planes, cams25, res, torch.ones(1, 2), jitter, u)
    assert out["rgb"].shape == rgb.shape == (1, 2, 3, res, res)
    assert 0.05 < opacity.mean() < 0.95 and (opacity == 0).any()  # some rays miss the box
    assert (out["rgb"] - rgb).abs().max() < 1e-4
    assert (out["opacity"] - opacity).abs().max() < 1e-4
    seen = opacity > 1e-3  # empty rays: upstream clamps NaN depths, we report 0 (documented)
    assert (out["depth"][seen] - depth[seen]).abs().max() < 1e-4


def test_reference_renderer_sanity():
    # Empty field -> background everywhere; the reference itself is not vacuous.
    cfg = reduced_cfg(packed=False)
    sd = random_state(reduced_table(cfg), seed=5)
    sd["synthesizer.decoder.net.6.bias"] = torch.tensor([-200.0, 0.0, 0.0, 0.0])
    sd["synthesizer.decoder.net.6.weight"] = torch.zeros(4, 64)
    planes = torch.zeros(1, 3, 8, 16, 16)
    _, _, cams25 = _views()
    res = 6
    rgb, _, opacity = ref.render(sd, planes, cams25, res, torch.full((1, 2), 0.25), torch.zeros(2, 36, 12, 1),
                                 torch.full((72, 12), 0.5))
    assert torch.allclose(rgb, torch.full_like(rgb, 0.25)) and opacity.abs().max() < 1e-30
    assert math.isclose(float(ref.query(sd, planes[0], torch.zeros(1, 3))[0]), math.log1p(math.exp(-201)), abs_tol=1e-30)


def test_deterministic_samples_sit_half_a_step_inside():
    # Deterministic stratified samples use the jitter's mean (0.5), so no sample lies exactly on a
    # box face, where the in-box test would be decided by float rounding.
    from lrm.render.sampling import stratified

    t = stratified(torch.tensor([1.0]), torch.tensor([3.0]), 5)
    assert t.tolist() == [[1.25, 1.75, 2.25, 2.75, 3.25]]


def test_wrong_family_checkpoint_is_reported_not_loaded():
    from tests.reference.upstream_keys import triposr_keys

    sd = random_state(triposr_keys(vit_dim=64, vit_depth=1, dim=64, layers=1, res=4, channels=4))
    with pytest.raises(CheckpointError) as err:
        convert_openlrm_state(sd, reduced_cfg(packed=True))
    msg = str(err.value)
    assert msg.startswith("checkpoint: missing keys: pos_embed, encoder.model.cls_token") and "more)" in msg
    assert "unexpected keys: image_tokenizer.model.embeddings.cls_token" in msg
