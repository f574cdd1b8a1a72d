"""Trainer components: config files, optimizer groups and schedule, losses, LPIPS, encoder init."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from lrm.errors import CheckpointError, LRMError
from lrm.losses import lpips as lp
from lrm.model.lrm import LRM
from lrm.model.presets import tiny
from lrm.train.config import load_config, resolve, save_config
from lrm.train.losses import tv
from lrm.train.optim import WARMUP_START, WarmupCosine, param_groups
from train_helpers import MICRO_MODEL, fake_lpips_files, one_thread  # noqa: F401 (autouse fixture)


# --- config -------------------------------------------------------------------------
def test_config_merges_onto_the_preset_and_round_trips(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('preset = "tiny"\nsteps = 7\n[model.render]\nsamples = 5\n[data]\nregion = 48\n'
                    'backgrounds = [1.0]\n[optim]\nbetas = [0.8, 0.9]\n')
    cfg = load_config(path)
    assert cfg.steps == 7 and cfg.data.region == 48 and cfg.data.backgrounds == (1.0,)
    assert cfg.model.render.samples == 5 and cfg.model.render.importance == tiny().render.importance
    assert cfg.model.encoder == tiny().encoder and cfg.optim.betas == (0.8, 0.9)
    save_config(cfg, tmp_path / "r.json")
    assert load_config(tmp_path / "r.json") == cfg


@pytest.mark.parametrize("text,match", [
    ("stepz = 3", "unknown key.*stepz"),
    ("[data]\nregoin = 3", r"config.data: unknown key.*regoin"),
    ("[model.field]\nchanels = 3", r"config.model.field: unknown key.*chanels"),
    ('preset = "huge"', "unknown preset 'huge'"),
    ("steps = ", "cannot parse"),
    ('steps = "x"', r"config.steps: 'x' is not a valid int"),
    ('mixed_precision = "fp8"', r"config.mixed_precision: 'fp8' is not one of 'auto', 'no', 'bf16'"),
    ("[data]\nbackgrounds = [1, 'w']", r"config.data.backgrounds\[1\]: 'w' is not a valid float"),
    ("[model.encoder]\ndim = 3.5", r"config.model.encoder.dim: 3.5 is not a valid int"),
])
def test_config_errors_name_the_problem(tmp_path, text, match):
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(LRMError, match=match):
        load_config(tmp_path / "config.toml")


def test_shipped_configs_resolve():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))
    assert configs
    for path in configs:
        cfg = load_config(path)
        LRM(cfg.model)  # builds


# --- optimizer ----------------------------------------------------------------------
def test_decay_groups_follow_openlrm():
    model = LRM(resolve({"model": MICRO_MODEL}).model)
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    dn = {names[id(p)] for p in decay["params"]}
    nn_ = {names[id(p)] for p in no_decay["params"]}
    assert dn.isdisjoint(nn_) and len(dn) + len(nn_) == len(names)
    assert {"transformer.tokens", "encoder.pos_embed", "encoder.cls_token", "encoder.blocks.0.ls1",
            "transformer.blocks.0.norm1.mod.weight", "field.mlp.0.weight"} <= dn
    assert {"transformer.blocks.0.norm1.norm.weight", "transformer.blocks.0.norm1.norm.bias",
            "encoder.norm.weight", "field.mlp.0.bias", "transformer.blocks.0.fc1.bias"} <= nn_
    assert all(n.endswith("bias") or ".norm" in n or n.startswith("encoder.norm") for n in nn_)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0


def test_warmup_cosine_by_hand():
    f = WarmupCosine(4e-4, 3000, 13000)
    assert f(0) * 4e-4 == pytest.approx(WARMUP_START)
    assert f(1500) == pytest.approx(0.5, abs=1e-6)
    assert f(3000) == 1.0
    assert f(8000) == pytest.approx(0.5)  # halfway through the cosine
    assert f(3000 + 2500) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert f(13000) == pytest.approx(0.0) and f(20000) == pytest.approx(0.0)


# --- losses ---------------------------------------------------------------------------
def test_tv_by_hand():
    planes = torch.zeros(2, 3, 4, 5, 6)
    planes += torch.arange(6.0)  # a ramp along w: neighbour difference 1, none along h
    assert tv(planes) == pytest.approx(1.0)
    planes = planes * 0 + (torch.arange(5.0) * 2)[:, None]  # along h: difference 2 -> 4
    assert tv(planes) == pytest.approx(4.0)


# --- LPIPS ----------------------------------------------------------------------------
def _reference_lpips(vgg, heads, x, y):
    """LPIPS written out layer by layer from the raw state dicts (taps after these convs)."""
    shift = torch.tensor(lp.SHIFT).view(1, 3, 1, 1)
    scale = torch.tensor(lp.SCALE).view(1, 3, 1, 1)
    convs = sorted({int(k.split(".")[1]) for k in vgg if k.startswith("features.")})
    stages = [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]]
    assert sum(stages, []) == convs
    total = torch.zeros(x.shape[0])
    fx, fy = ((x * 2 - 1) - shift) / scale, ((y * 2 - 1) - shift) / scale
    for s, stage in enumerate(stages):
        if s:
            fx, fy = F.max_pool2d(fx, 2), F.max_pool2d(fy, 2)
        for i in stage:
            w, b = vgg[f"features.{i}.weight"], vgg[f"features.{i}.bias"]
            fx, fy = F.relu(F.conv2d(fx, w, b, padding=1)), F.relu(F.conv2d(fy, w, b, padding=1))
        nx = fx / (fx.norm(dim=1, keepdim=True) + 1e-10)
        ny = fy / (fy.norm(dim=1, keepdim=True) + 1e-10)
        total += F.conv2d((nx - ny) ** 2, heads[f"lin{s}.model.1.weight"]).mean((1, 2, 3))
    return total


def test_lpips_matches_a_layer_by_layer_reference(tmp_path):
    vgg, heads = fake_lpips_files(tmp_path)
    model = lp.load_lpips(str(tmp_path))
    assert model is not None and not any(p.requires_grad for p in model.parameters())
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    got = model(x, y)
    assert torch.allclose(got, _reference_lpips(vgg, heads, x, y), rtol=1e-4, atol=1e-6)
    assert torch.all(got > 0) and torch.allclose(model(x, x), torch.zeros(2))
    assert torch.allclose(model(y, x), got, rtol=1e-5)
    # Gradients reach the images, not the frozen network.
    x.requires_grad_(True)
    model(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_lpips_wrong_files_are_named(tmp_path):
    fake_lpips_files(tmp_path)
    torch.save({"lin0.weight": torch.zeros(1)}, tmp_path / "vgg.pth")
    with pytest.raises(CheckpointError, match="vgg.pth: expected LPIPS heads"):
        lp.load_lpips(str(tmp_path))


def test_lpips_absent_warns_once_and_returns_none(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(lp, "_warned", False)
    monkeypatch.setattr(lp, "_lpips_package_dir", lambda: None)
    with pytest.warns(UserWarning, match="LPIPS disabled: VGG16 .* and LPIPS heads"):
        assert lp.load_lpips(str(tmp_path)) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lp.load_lpips(str(tmp_path)) is None  # no second warning


# --- mixed precision ------------------------------------------------------------------
def test_auto_training_precision_follows_the_probe(monkeypatch):
    """bf16 only where it measured faster than fp32; int8 is never a training precision."""
    from lrm import probe
    from lrm.device import training_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LRM_PROBE", "1")
    shape = (768, 192, 768)
    assert training_precision("no", shape) == ("no", "") and training_precision("bf16", shape)[0] == "bf16"
    for rates, want in [({"fp32": 100.0, "bf16": 77.0, "int8": 400.0}, "no"),  # bf16-capable, measured slower
                        ({"fp32": 100.0, "bf16": 300.0, "int8": 0.0}, "bf16")]:
        monkeypatch.setattr(probe, "probe", lambda shape, r=rates: probe.ProbeResult(r, probe.choose(r)))
        precision, why = training_precision("auto", shape)
        assert precision == want and why.startswith("probed: fp32 100")


def test_occupancy_bce_by_hand_and_scale_schedule():
    """BCE with logits of scale·x: x = 0 costs ln 2 either way; x = ln 3 (sigmoid 3/4) costs
    -ln(3/4) inside and -ln(1/4) outside; the scale applies from occupancy_scale_start on."""
    import math

    from lrm.train.config import LossConfig
    from lrm.train.losses import occupancy_bce, total_loss

    zero = torch.zeros(1, 2)
    assert occupancy_bce(zero, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(math.log(2))
    x = torch.full((1, 2), math.log(3))
    assert occupancy_bce(x, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(
        0.5 * (-math.log(0.75) - math.log(0.25)), rel=1e-6)
    assert occupancy_bce(2 * x, torch.tensor([[1.0, 1.0]]), scale=0.5).item() == pytest.approx(-math.log(0.75), rel=1e-6)
    cfg = LossConfig(mse=0.0, tv=0.0, occupancy=1.0, occupancy_scale=0.5, occupancy_scale_start=10)
    out = {"rgb": torch.zeros(1, 1, 3, 2, 2), "point_logit": 2 * x, "point_rgb": torch.zeros(1, 0, 3)}
    batch = {"target": torch.zeros(1, 1, 3, 2, 2), "occupancy": torch.ones(1, 2)}
    planes = torch.zeros(1, 3, 1, 2, 2)
    before, _ = total_loss(out, batch, planes, cfg, None, step=9)  # scale 1: sigmoid(2 ln 3) = 9/10
    after, _ = total_loss(out, batch, planes, cfg, None, step=10)  # scale 0.5: sigmoid(ln 3) = 3/4
    assert before.item() == pytest.approx(-math.log(0.9), rel=1e-6)
    assert after.item() == pytest.approx(-math.log(0.75), rel=1e-6)
