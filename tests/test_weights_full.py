"""Full-size random checkpoints in the published layouts (1-2 GB each): strict load, and the
image -> triplane forward of OpenLRM-base and TripoSR against the slow reference.

Slow (run with `-m slow`). `LRM_TEST_DEVICE=cuda` runs our model on a GPU (TF32 off); the
reference always runs on the CPU."""

import os

import pytest
import torch

from lrm.convert.openlrm import config_from_openlrm, convert_openlrm_state
from lrm.convert.triposr import config_from_triposr, convert_triposr_state, parse_yaml
from lrm.hub import build_empty, strict_load
from tests.reference import openlrm as ref_openlrm
from tests.reference import triposr as ref_triposr
from tests.reference.upstream_keys import OPENLRM_SIZES, openlrm_keys, random_state, triposr_keys
from tests.test_weights_openlrm import SIZES_JSON
from tests.test_weights_triposr import YAML

pytestmark = pytest.mark.slow
DEVICE = os.environ.get("LRM_TEST_DEVICE", "cpu")


def _load(cfg, state, convert):
    model = build_empty(cfg)
    strict_load(model, convert(dict(state), cfg), "full-size")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return model.to(DEVICE).eval()


@pytest.mark.parametrize("size", ["small", "base", "large"])
def test_openlrm_full_size_strict_load(size):
    cfg = config_from_openlrm(SIZES_JSON[size])
    state = random_state(openlrm_keys(**OPENLRM_SIZES[size]), seed=31)
    model = _load(cfg, state, convert_openlrm_state)
    own = model.state_dict()
    assert torch.equal(own["transformer.tokens"].cpu(), state["pos_embed"])
    q = own["transformer.blocks.3.cross_attn.q.weight"].cpu()
    if size == "base":
        assert torch.equal(q, state["transformer.layers.3.cross_attn.in_proj_weight"][:768])
    else:
        assert torch.equal(q, state["transformer.layers.3.cross_attn.q_proj_weight"])


@pytest.mark.parametrize("names", ["4.x", "5.x"])
def test_triposr_full_size_strict_load(names):
    cfg = config_from_triposr(parse_yaml(YAML))
    state = random_state(triposr_keys(names=names), seed=32)
    model = _load(cfg, state, convert_triposr_state)
    tokens = model.state_dict()["transformer.tokens"].cpu()
    emb = state["tokenizer.embeddings"]  # [3, 1024, 32, 32]: token t = p*1024 + h*32 + w
    assert torch.equal(tokens[0, 2 * 1024 + 5 * 32 + 7], emb[2, :, 5, 7])


def test_openlrm_base_full_size_exactness():
    cfg = config_from_openlrm(SIZES_JSON["base"])
    state = random_state(openlrm_keys(**OPENLRM_SIZES["base"]), seed=33)
    model = _load(cfg, state, convert_openlrm_state)
    image = torch.rand(1, 3, 336, 336, generator=torch.Generator().manual_seed(34))
    cam16 = model.source_camera(1).cpu()
    xyz = torch.rand(1, 2000, 3, generator=torch.Generator().manual_seed(35)) * 2 - 1
    with torch.no_grad():
        planes = model(image.to(DEVICE), cam16.to(DEVICE))
        sigma, rgb = model.query(planes, xyz.to(DEVICE))
        ref_planes = ref_openlrm.forward_planes(state, image, cam16, heads=12, enc_heads=12)
        ref_sigma, ref_rgb = ref_openlrm.query(state, ref_planes[0], xyz[0])
    assert planes.shape == (1, 3, 48, 64, 64)
    assert (planes.cpu() - ref_planes).abs().max() < 1e-4
    assert (sigma[0].cpu() - ref_sigma).abs().max() < 1e-4
    assert (rgb[0].cpu() - ref_rgb).abs().max() < 1e-4


def test_triposr_full_size_exactness():
    cfg = config_from_triposr(parse_yaml(YAML))
    state = random_state(triposr_keys(), seed=36)
    model = _load(cfg, state, convert_triposr_state)
    image = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(37))
    xyz = torch.rand(1, 2000, 3, generator=torch.Generator().manual_seed(38)) * 1.74 - 0.87
    with torch.no_grad():
        codes = model(image.to(DEVICE))
        sigma, rgb = model.query(codes, xyz.to(DEVICE))
        ref_codes = ref_triposr.forward(state, image, vit_heads=12, heads=16)
        ref_sigma, ref_rgb = ref_triposr.query(state, ref_codes[0], xyz[0])
    assert codes.shape == (1, 3, 40, 64, 64)
    assert (codes.cpu() - ref_codes).abs().max() < 1e-4
    assert (sigma[0].cpu() - ref_sigma).abs().max() < 1e-4 * max(1.0, float(ref_sigma.abs().max()))
    assert (rgb[0].cpu() - ref_rgb).abs().max() < 1e-4
