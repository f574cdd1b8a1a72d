"""`encoder_init`: a new model's encoder from DINOv2 weights in Meta's and Hugging Face's layouts
(generated here; the converter is lrm.convert.encoder)."""

import warnings

import pytest
import torch
from safetensors.torch import save_file

from lrm.errors import LRMError
from lrm.model.lrm import LRM
from lrm.train.config import resolve
from lrm.train.encoder_init import init_encoder
from train_helpers import MICRO_MODEL, one_thread  # noqa: F401 (autouse fixture)

E, DEPTH, GRID = 32, 2, 4


def _meta_dinov2() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    state = {"cls_token": r(1, 1, E), "pos_embed": r(1, 1 + GRID * GRID, E), "register_tokens": r(1, 4, E),
             "mask_token": r(1, E), "patch_embed.proj.weight": r(E, 3, 14, 14), "patch_embed.proj.bias": r(E),
             "norm.weight": r(E), "norm.bias": r(E)}
    for i in range(DEPTH):
        b = f"blocks.{i}."
        state.update({b + "norm1.weight": r(E), b + "norm1.bias": r(E), b + "attn.qkv.weight": r(3 * E, E),
                      b + "attn.qkv.bias": r(3 * E), b + "attn.proj.weight": r(E, E), b + "attn.proj.bias": r(E),
                      b + "ls1.gamma": r(E), b + "norm2.weight": r(E), b + "norm2.bias": r(E),
                      b + "mlp.fc1.weight": r(4 * E, E), b + "mlp.fc1.bias": r(4 * E),
                      b + "mlp.fc2.weight": r(E, 4 * E), b + "mlp.fc2.bias": r(E), b + "ls2.gamma": r(E)})
    return state


def _as_hf(meta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same weights in transformers' Dinov2WithRegisters names (q, k, v split)."""
    hf = {"embeddings.cls_token": meta["cls_token"], "embeddings.position_embeddings": meta["pos_embed"],
          "embeddings.register_tokens": meta["register_tokens"], "embeddings.mask_token": meta["mask_token"][None],
          "embeddings.patch_embeddings.projection.weight": meta["patch_embed.proj.weight"],
          "embeddings.patch_embeddings.projection.bias": meta["patch_embed.proj.bias"],
          "layernorm.weight": meta["norm.weight"], "layernorm.bias": meta["norm.bias"]}
    for i in range(DEPTH):
        m, h = f"blocks.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            q, k, v = meta[m + "attn.qkv." + kind].chunk(3)
            hf.update({h + "attention.attention.query." + kind: q, h + "attention.attention.key." + kind: k,
                       h + "attention.attention.value." + kind: v,
                       h + "attention.output.dense." + kind: meta[m + "attn.proj." + kind]})
            for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                hf[h + f"{name}.{kind}"] = meta[m + f"{name}.{kind}"]
        hf[h + "layer_scale1.lambda1"], hf[h + "layer_scale2.lambda1"] = meta[m + "ls1.gamma"], meta[m + "ls2.gamma"]
    return {k: v.clone().contiguous() for k, v in hf.items()}


def _model() -> LRM:
    enc = {**MICRO_MODEL["encoder"], "dim": E, "depth": DEPTH, "patch_size": 14, "pos_grid": GRID, "registers": 4}
    cfg = resolve({"model": {**MICRO_MODEL, "encoder": enc, "inference": {"source_size": 28}}}).model
    return LRM(cfg)


def test_meta_and_hf_layouts_give_the_same_encoder(tmp_path):
    meta = _meta_dinov2()
    torch.save(meta, tmp_path / "dinov2_vits14_reg4_pretrain.pth")
    (tmp_path / "hf").mkdir()
    save_file(_as_hf(meta), str(tmp_path / "hf" / "model.safetensors"))
    a, b = _model(), _model()
    init_encoder(a, str(tmp_path / "dinov2_vits14_reg4_pretrain.pth"))
    init_encoder(b, str(tmp_path / "hf"))
    sa, sb = a.encoder.state_dict(), b.encoder.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(sa["patch_embed.weight"], meta["patch_embed.proj.weight"])
    assert torch.equal(sa["blocks.1.attn.qkv.weight"], meta["blocks.1.attn.qkv.weight"])
    assert torch.equal(sa["blocks.0.attn.out.bias"], meta["blocks.0.attn.proj.bias"])
    assert torch.equal(sa["register_tokens"], meta["register_tokens"])
    x = torch.rand(1, 3, 28, 28)
    with torch.no_grad():  # same weights; outputs to a tolerance (kernels may depend on buffer alignment)
        torch.testing.assert_close(a.encoder(x), b.encoder(x), atol=1e-6, rtol=1e-6)


def test_mismatched_or_missing_weights_are_errors(tmp_path):
    meta = _meta_dinov2()
    del meta["blocks.1.ls2.gamma"]
    torch.save(meta, tmp_path / "broken.pth")
    with pytest.raises(LRMError, match="ls2"):
        init_encoder(_model(), str(tmp_path / "broken.pth"))
    with pytest.raises(LRMError, match="encoder-init nope/nothing"):
        init_encoder(_model(), "nope/nothing")


def test_train_uses_encoder_init(tmp_path):
    from lrm.train.loop import build_model

    torch.save(_meta_dinov2(), tmp_path / "dino.pth")
    enc = {**MICRO_MODEL["encoder"], "dim": E, "depth": DEPTH, "patch_size": 14, "pos_grid": GRID, "registers": 4}
    cfg = resolve({"model": {**MICRO_MODEL, "encoder": enc}, "encoder_init": str(tmp_path / "dino.pth")})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "random encoder" warning
        model = build_model(cfg, None)
    assert torch.equal(model.encoder.cls_token, _meta_dinov2()["cls_token"])
