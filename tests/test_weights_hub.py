"""Loading published weights by name: the real huggingface_hub download path against a
pre-populated local hub cache (offline), local upstream folders, `lrm convert`, pickle safety,
the licence notice and the error messages."""

import argparse
import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import lrm.hub as hub
from lrm.cli import convert as convert_cli
from lrm.convert.openlrm import config_from_openlrm, convert_openlrm_state
from lrm.errors import CheckpointError, LRMError
from tests.reference.upstream_keys import openlrm_keys, random_state, triposr_keys

REPO = Path(__file__).resolve().parents[1]
REV = "8c12811" + "0" * 33  # any 40-hex commit
# Tiny dims through the real config files (the encoder is set by its name: DINOv2 ViT-S/14, DINO ViT-S/16).
OPENLRM_JSON = {"camera_embed_dim": 32, "rendering_samples_per_ray": 16, "transformer_dim": 64,
                "transformer_layers": 1, "transformer_heads": 2, "triplane_low_res": 4, "triplane_high_res": 8,
                "triplane_dim": 4, "encoder_type": "dinov2", "encoder_model_name": "dinov2_vits14_reg",
                "encoder_feat_dim": 384, "encoder_freeze": False}
TRIPOSR_YAML = """cond_image_size: 512
image_tokenizer_cls: tsr.models.tokenizers.image.DINOSingleImageTokenizer
image_tokenizer:
  pretrained_model_name_or_path: "facebook/dino-vits16"
tokenizer_cls: tsr.models.tokenizers.triplane.Triplane1DTokenizer
tokenizer: {plane_size: 4, num_channels: 64}
backbone_cls: tsr.models.transformer.transformer_1d.Transformer1D
backbone:
  in_channels: ${tokenizer.num_channels}
  num_attention_heads: 2
  attention_head_dim: 32
  num_layers: 1
  cross_attention_dim: 384
post_processor_cls: tsr.models.network_utils.TriplaneUpsampleNetwork
post_processor: {in_channels: 64, out_channels: 4}
decoder_cls: tsr.models.network_utils.NeRFMLP
decoder: {in_channels: 12, n_neurons: 16, n_hidden_layers: 2, activation: silu}
renderer_cls: tsr.models.nerf_renderer.TriplaneNeRFRenderer
renderer: {radius: 0.87, feature_reduction: concat, density_activation: exp, density_bias: -1.0,
           num_samples_per_ray: 32}
"""


@pytest.fixture(scope="module")
def openlrm_state():
    return random_state(openlrm_keys(enc_dim=384, dim=64, layers=1, cam=32, tokens=48, channels=4), seed=21)


@pytest.fixture(scope="module")
def triposr_state():
    return random_state(triposr_keys(vit_dim=384, dim=64, layers=1, res=4, channels=4, hidden=16,
                                     decoder_layers=3), seed=22)


def write_openlrm(folder: Path, state, weights="model.safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(OPENLRM_JSON))
    save_file(state, str(folder / weights)) if weights.endswith(".safetensors") else torch.save(state, folder / weights)
    return folder


def write_triposr(folder: Path, state) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(TRIPOSR_YAML)
    torch.save(state, folder / "model.ckpt")
    return folder


def hub_snapshot(cache: Path, repo_id: str) -> Path:
    """The hub cache layout: models--owner--name/{refs/main, snapshots/<rev>/...}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REV)
    return repo / "snapshots" / REV


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def same_weights(model, state):
    own = model.state_dict()
    return own.keys() == state.keys() and all(torch.equal(own[k], state[k].to(own[k].dtype)) for k in own)


def test_aliases():
    assert hub.ALIASES["openlrm-mix-base"] == hub.ALIASES["openlrm-mix-base-1.1"] == "zxhezexin/openlrm-mix-base-1.1"
    assert hub.ALIASES["triposr"] == "stabilityai/TripoSR"
    assert sorted(set(hub.ALIASES.values())) == sorted(hub.OPENLRM_IDS + ["stabilityai/TripoSR"])
    assert len(hub.OPENLRM_IDS) == 6


def test_openlrm_from_hub_cache(offline_cache, openlrm_state):
    write_openlrm(hub_snapshot(offline_cache, "zxhezexin/openlrm-mix-base-1.1"), openlrm_state)
    expected = convert_openlrm_state(dict(openlrm_state), config_from_openlrm(OPENLRM_JSON))
    for name in ("openlrm-mix-base", "zxhezexin/openlrm-mix-base-1.1", "OpenLRM-Mix-Base-1.1"):
        model = hub.load_model(name)
        assert model.cfg.name == "openlrm-mix-base-1.1" and model.cfg.license == "CC-BY-NC-4.0"
        assert model.cfg.transformer.dim == 64 and model.cfg.render.samples == 8
        assert same_weights(model, expected)


def test_openlrm_pytorch_model_bin_fallback(offline_cache, openlrm_state):
    write_openlrm(hub_snapshot(offline_cache, "zxhezexin/openlrm-obj-small-1.1"), openlrm_state, "pytorch_model.bin")
    model = hub.load_model("openlrm-obj-small")
    assert model.cfg.name == "openlrm-obj-small-1.1"


def test_triposr_from_hub_cache(offline_cache, triposr_state):
    write_triposr(hub_snapshot(offline_cache, "stabilityai/TripoSR"), triposr_state)
    model = hub.load_model("triposr")
    assert (model.cfg.name, model.cfg.license, model.cfg.inference.condition_background) == ("triposr", "MIT", 0.5)
    assert model.cfg.encoder.dim == 384 and model.cfg.field.layers == 3


def test_offline_without_cache_is_one_clear_line(offline_cache):
    with pytest.raises(LRMError) as err:
        hub.load_model("openlrm-mix-large")
    msg = str(err.value)
    assert "\n" not in msg
    assert "zxhezexin/openlrm-mix-large-1.1 is not in the Hugging Face cache" in msg
    assert "HF_HUB_OFFLINE=1" in msg and str(offline_cache) in msg and "folder" in msg
    with pytest.raises(LRMError, match="stabilityai/TripoSR is not in the Hugging Face cache"):
        hub.load_model("triposr")


def test_local_upstream_folders(tmp_path, openlrm_state, triposr_state):
    model = hub.load_model(str(write_openlrm(tmp_path / "olrm", openlrm_state, "pytorch_model.bin")))
    assert model.cfg.name == "openlrm-custom"
    model = hub.load_model(str(write_triposr(tmp_path / "tsr", triposr_state)))
    assert model.cfg.name == "triposr"
    (tmp_path / "empty").mkdir()
    with pytest.raises(LRMError, match="no config.json or config.yaml"):
        hub.load_model(str(tmp_path / "empty"))
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text(json.dumps(OPENLRM_JSON))
    with pytest.raises(LRMError, match=r"no OpenLRM weights \(model.safetensors or pytorch_model.bin\)"):
        hub.load_model(str(tmp_path / "noweights"))
    with pytest.raises(LRMError, match="must be a folder"):
        hub.load_model(str(tmp_path / "tsr" / "model.ckpt"))
    with pytest.raises(LRMError, match="unknown model 'nonsense'"):
        hub.load_model("nonsense")


def test_strict_error_names_the_upstream_key(tmp_path, openlrm_state):
    state = dict(openlrm_state)
    state["transformer.layers.0.norm2.mlp.1.bias_renamed"] = state.pop("transformer.layers.0.norm2.mlp.1.bias")
    folder = write_openlrm(tmp_path / "bad", state)
    with pytest.raises(CheckpointError) as err:
        hub.load_model(str(folder))
    assert str(err.value) == (f"{folder / 'model.safetensors'}: missing keys: transformer.layers.0.norm2.mlp.1.bias; "
                              "unexpected keys: transformer.layers.0.norm2.mlp.1.bias_renamed")


def test_pickles_cannot_run_code(tmp_path, triposr_state):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))

    folder = write_triposr(tmp_path / "evil", triposr_state)
    torch.save({**triposr_state, "decoder.layers.0.bias": Payload()}, folder / "model.ckpt")
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        hub.load_model(str(folder))
    assert not marker.exists()
    torch.save([torch.zeros(1)], folder / "model.ckpt")
    with pytest.raises(CheckpointError, match="expected a flat state dict"):
        hub.load_model(str(folder))


def test_licence_is_printed_once(tmp_path, openlrm_state, triposr_state, capsys, monkeypatch):
    monkeypatch.setattr(hub, "_license_shown", set())
    folder = write_openlrm(tmp_path / "olrm", openlrm_state)
    hub.load_model(str(folder))
    hub.load_model(str(folder))
    hub.load_model(str(write_triposr(tmp_path / "tsr", triposr_state)))
    err = capsys.readouterr().err
    assert err.count("CC-BY-NC-4.0") == 1 and "non-commercial" in err and "MIT" not in err


def run_convert(*argv):
    parser = argparse.ArgumentParser()
    convert_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["convert", *argv])
    return args.run(args)


def test_convert_round_trip(tmp_path, triposr_state):
    src = write_triposr(tmp_path / "tsr", triposr_state)
    dst = tmp_path / "ours"
    assert run_convert(str(src), str(dst)) == 0
    assert sorted(p.name for p in dst.iterdir()) == ["README.md", "config.json", "model.safetensors"]  # + model card
    a, b = hub.load_model(str(src)), hub.load_model(str(dst))
    assert a.cfg == b.cfg and same_weights(b, a.state_dict())
    with pytest.raises(LRMError, match="exists; pass --force"):
        run_convert(str(src), str(dst))
    assert run_convert(str(src), str(dst), "--force", "--dtype", "float16") == 0
    assert hub.load_model(str(dst)).encoder.cls_token.dtype == torch.float32  # loaded as float32 by default
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_cli_convert_from_hub_cache_with_env_vars(tmp_path, openlrm_state):
    # The real environment path: HF_HUB_CACHE + HF_HUB_OFFLINE=1 read by huggingface_hub at import.
    cache = tmp_path / "hub"
    write_openlrm(hub_snapshot(cache, "zxhezexin/openlrm-mix-base-1.1"), openlrm_state)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    if find_spec("lrm.cli.reconstruct") is not None:  # the full CLI is present
        cmd = [sys.executable, "-m", "lrm", "convert", "openlrm-mix-base", str(tmp_path / "out")]
    else:
        cmd = [sys.executable, "-c", "import sys; from tests.test_weights_hub import run_convert; "
               "sys.exit(run_convert(*sys.argv[1:]))", "openlrm-mix-base", str(tmp_path / "out")]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("CC-BY-NC-4.0") == 2  # the notice once, then the summary line
    model = hub.load_model(str(tmp_path / "out"))
    assert model.cfg.name == "openlrm-mix-base-1.1"


def test_unreachable_hub_fails_fast_with_the_cache_still_used(tmp_path, monkeypatch, openlrm_state):
    """HF_HUB_OFFLINE unset and no route to the hub: one quick connection attempt, then the cache
    only; a cached model still loads, an uncached one is the one-line error in seconds."""
    import socket
    import time

    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    attempts = []

    def no_route(address, timeout=None, *args, **kw):
        attempts.append(address)
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_route)
    t0 = time.perf_counter()
    with pytest.raises(LRMError, match="the hub could not be reached"):
        hub.load_model("zxhezexin/openlrm-mix-large-1.1")
    assert time.perf_counter() - t0 < 5.0 and attempts[0][0] == "huggingface.co"
    write_openlrm(hub_snapshot(cache, "zxhezexin/openlrm-mix-base-1.1"), openlrm_state)
    expected = convert_openlrm_state(dict(openlrm_state), config_from_openlrm(OPENLRM_JSON))
    assert same_weights(hub.load_model("zxhezexin/openlrm-mix-base-1.1"), expected)
