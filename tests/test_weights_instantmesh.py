"""InstantMesh NeRF reconstructors: key tables against the spec, strict loading of Lightning
checkpoints written in the upstream layout, exactness against the slow reference
(tests/reference/instantmesh.py) for one and several views, and clear refusals."""

import argparse
import dataclasses
from collections import OrderedDict

import pytest
import torch

from lrm import cameras
from lrm.convert.instantmesh import instantmesh_key_table
from lrm.errors import CheckpointError, LRMError
from lrm.hub import load_model
from lrm.model.encoder import EncoderConfig
from lrm.model.lrm import LRM
from lrm.model.presets import instant_nerf_base, instant_nerf_large, openlrm_small
from lrm.model.transformer import TransformerConfig
from tests.reference import instantmesh as ref
from tests.reference.upstream_keys import instantmesh_keys, n_params, random_state

# a reduced InstantMesh: ViT of width 64 (2 heads, 2 layers, patch 16, 14x14 table), 2 blocks of
# width 64, 4x4 tokens per plane, 8 channels; encoder input 64 px -> 4x4 patches (table resized)
SMALL = dict(vit_dim=64, vit_depth=2, dim=64, layers=2, res=4, channels=8)


def small_cfg():
    cfg = instant_nerf_base()
    cfg.camera_dim = 64
    cfg.encoder = dataclasses.replace(cfg.encoder, dim=64, depth=2, heads=2, mod_dim=64)
    cfg.transformer = TransformerConfig(block="instantmesh", dim=64, layers=2, heads=2, context_dim=64, mod_dim=0,
                                        token_res=4)
    cfg.field.channels = 8
    cfg.inference.source_size = 64
    return cfg


def write_ckpt(path, state, extra=True):
    """A PyTorch-Lightning checkpoint as the trainer writes it: the model under `lrm_generator.`,
    the training module's LPIPS network beside it, and non-tensor entries."""
    sd = OrderedDict((f"lrm_generator.{k}", v) for k, v in state.items())
    sd["lpips.net.slice1.0.weight"] = torch.zeros(4, 3, 3, 3)  # not part of the reconstructor
    ckpt = {"state_dict": sd, "epoch": 3, "global_step": 1000, "pytorch-lightning_version": "2.1.2"}
    if extra:  # hyper-parameters as an object: torch.load(weights_only=True) refuses the file
        ckpt["hyper_parameters"] = argparse.Namespace(lrm_path=None, input_size=320)
    torch.save(ckpt, path)
    return path


def rig(views):  # also lrm.cameras.zero123pp_cameras, checked against it below
    """The first `views` cameras of the Zero123++ v1.2 rig (instantmesh.md §6.2): [V, 16]."""
    az = torch.tensor([30.0, 90, 150, 210, 270, 330])[:views]
    el = [20.0, -10, 20, -10, 20, -10][:views]
    pos = torch.cat([cameras.orbit_positions(az[i:i + 1], el[i], 4.0) for i in range(views)])
    k = cameras.intrinsics(cameras.fov_to_focal(30.0), views)
    return cameras.camera_vector(cameras.look_at(pos), k)


def test_full_size_key_tables_and_parameter_counts_match_the_spec():
    """§2.3: 431 / 495 tensors, 313,249,004 / 378,477,332 parameters (base / large)."""
    for cfg, layers, channels, count, params in ((instant_nerf_base(), 12, 40, 431, 313_249_004),
                                                 (instant_nerf_large(), 16, 80, 495, 378_477_332)):
        table = instantmesh_key_table(cfg)
        assert table == instantmesh_keys(layers=layers, channels=channels)
        assert len(table) == count and n_params(table) == params
        with torch.device("meta"):
            assert sum(p.numel() for p in LRM(cfg).parameters()) == params


def test_zero123pp_rig_matches_the_spec():
    """§6.2's derived extrinsics of views k0 and k3, and the focal 1.8660254."""
    cams = rig(6)
    k0 = [-0.5, -0.29620, 0.81380, 3.25519, 0.86603, -0.17101, 0.46985, 1.87939, 0, 0.93969, 0.34202, 1.36808]
    k3 = [0.5, -0.15038, -0.85287, -3.41147, -0.86603, -0.08682, -0.49240, -1.96962, 0, 0.98481, -0.17365, -0.69459]
    torch.testing.assert_close(cams[0, :12], torch.tensor(k0), atol=1e-5, rtol=0)
    torch.testing.assert_close(cams[3, :12], torch.tensor(k3), atol=1e-5, rtol=0)
    assert cams[0, 12].item() == pytest.approx(1.8660254)
    torch.testing.assert_close(cameras.zero123pp_cameras(), cams)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    state = random_state(instantmesh_keys(**SMALL), seed=3)
    path = write_ckpt(tmp_path_factory.mktemp("im") / "instant_nerf_small.ckpt", state)
    return state, path


def _load_small(path, monkeypatch):
    # the file is a reduced model: config_from_state only knows the two published sizes
    import lrm.convert.instantmesh as im

    monkeypatch.setattr(im, "config_from_state", lambda state, source, name=None: small_cfg())
    return load_model(str(path)).eval()


@pytest.mark.parametrize("views", [1, 3, 6])
def test_planes_and_field_match_the_reference(small, monkeypatch, views):
    """Strict load from the Lightning file (LPIPS keys and a pickled Namespace beside the model),
    then planes for `views` posed views and the field at random points agree with the slow
    reference to float32 round-off."""
    state, path = small
    model = _load_small(path, monkeypatch)
    g = torch.Generator().manual_seed(views)
    images = torch.rand(2, views, 3, 64, 64, generator=g)
    cams = rig(views)[None].expand(2, views, 16).clone()
    cams[1] += 0.01 * torch.randn(views, 16, generator=g)  # the second object: other cameras
    with torch.no_grad():
        planes = model(images, cams)
        want = ref.forward_planes(state, images, cams, heads=2, enc_heads=2)
        torch.testing.assert_close(planes, want, atol=1e-5, rtol=0)  # measured: 3e-6 of values up to 5
        xyz = torch.rand(1, 500, 3, generator=g) * 2 - 1
        density, rgb = model.query(planes[:1], xyz)
        want_density, want_rgb = ref.query(state, want[0], xyz[0])
        torch.testing.assert_close(density[0], want_density, atol=1e-5, rtol=0)
        torch.testing.assert_close(rgb[0], want_rgb, atol=1e-5, rtol=0)
    if views > 1:  # the cameras matter, per view: moving one view's camera changes the planes
        moved = cams.clone()
        moved[:, -1, 3] += 0.5
        with torch.no_grad():
            assert (model(images, moved) - planes).abs().max() > 1e-3


def test_view_order_does_not_matter(small, monkeypatch):
    """Cross-attention has no position on the image tokens: permuting the views (with their
    cameras) changes the planes by float round-off only (instantmesh.md §6.3)."""
    _, path = small
    model = _load_small(path, monkeypatch)
    images, cams = torch.rand(1, 4, 3, 64, 64), rig(4)[None]
    order = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        torch.testing.assert_close(model(images[:, order], cams[:, order]), model(images, cams), atol=1e-5, rtol=1e-5)


def test_strictness_and_refusals(small, monkeypatch, tmp_path):
    state, path = small
    broken = dict(state)
    del broken["transformer.layers.1.mlp.0.bias"]
    _ = _load_small(path, monkeypatch)  # the patched config stays for this test
    with pytest.raises(CheckpointError, match=r"missing keys: transformer\.layers\.1\.mlp\.0\.bias"):
        load_model(str(write_ckpt(tmp_path / "missing.ckpt", broken)))
    flexi = {**state, "synthesizer.decoder.net_sdf.0.weight": torch.zeros(64, 24)}
    monkeypatch.undo()
    with pytest.raises(LRMError, match="FlexiCubes"):
        load_model(str(write_ckpt(tmp_path / "flexi.ckpt", flexi)))
    with pytest.raises(LRMError, match="FlexiCubes"):
        load_model("instant-mesh-large")
    with pytest.raises(LRMError, match="unknown size"):  # the reduced file without the test's patch
        load_model(str(path))
    with pytest.raises(LRMError, match="choose instant-nerf-base or instant-nerf-large"):
        load_model("TencentARC/InstantMesh")


def test_a_pickled_object_in_the_checkpoint_never_runs(tmp_path):
    """Lightning files pickle objects beside the tensors; reading them must not import or call
    anything from the file: a payload that would create a file on unpickling stays inert."""
    import pathlib

    from lrm.convert.instantmesh import read_lightning_state

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    torch.save({"state_dict": {"lrm_generator.x": torch.ones(2)}, "hyper_parameters": Payload()},
               tmp_path / "evil.ckpt")
    state = read_lightning_state(tmp_path / "evil.ckpt")
    assert not marker.exists()
    assert list(state) == ["lrm_generator.x"] and state["lrm_generator.x"].tolist() == [1.0, 1.0]


def test_single_view_models_refuse_several_views():
    torch.manual_seed(0)
    from lrm.model.presets import tiny

    with pytest.raises(LRMError, match="takes one view"):
        LRM(tiny())(torch.rand(1, 2, 3, 128, 128))
    assert openlrm_small().encoder.mod_dim == 0 and EncoderConfig().mod_dim == 0  # the other families unchanged
