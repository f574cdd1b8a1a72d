"""InstantMesh reconstructor checkpoints (`instant_nerf_{base,large}.ckpt`, PyTorch-Lightning
pickles) -> our config and state dict. See docs/weights.md ("InstantMesh") for the
facts used here.

The model's tensors are `state_dict` entries prefixed `lrm_generator.`; others (the LPIPS
network of the training module, `lpips.*`) are not part of the reconstructor and are left out.
Key mapping (after the prefix; upstream -> ours):
    encoder.model.*  (HF ViT 4.x names + adaLN_modulation.1) -> encoder.*  (lrm.convert.encoder)
    encoder.camera_embedder.{0,2}                   -> camera_embedder.fc{1,2}
    transformer.pos_embed                           -> transformer.tokens
    transformer.layers.{i}.norm{1,2,3}              -> transformer.blocks.{i}.norm{1,2,3}
    transformer.layers.{i}.cross_attn.{q,k,v}_proj_weight -> ....cross_attn.q + .kv (k, v)
    transformer.layers.{i}.self_attn.in_proj_weight -> ....self_attn.qkv
    transformer.layers.{i}.{cross,self}_attn.out_proj -> ....{cross,self}_attn.out
    transformer.layers.{i}.mlp.{0,3}                -> ....fc{1,2}
    transformer.norm / transformer.deconv           -> transformer.norm / upsampler.deconv
    synthesizer.decoder.net.{0,2,4,6}               -> field.mlp.{0,2,4,6}
The FlexiCubes variants (`instant_mesh_*`, four decoder heads `net_sdf`, `net_rgb`, ...) are
refused: they need a FlexiCubes mesher, which lrm does not have.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from functools import partial
from pathlib import Path

import torch

from lrm.convert.encoder import read_encoder
from lrm.convert.reader import StateReader, read_upsampler_and_field
from lrm.errors import CheckpointError, LRMError
from lrm.model.lrm import LRMConfig
from lrm.model.presets import instant_nerf_base, instant_nerf_large

PREFIX = "lrm_generator."
HUB_REPO = "TencentARC/InstantMesh"
# alias -> file in HUB_REPO
HUB_FILES = {"instant-nerf-base": "instant_nerf_base.ckpt", "instant-nerf-large": "instant_nerf_large.ckpt",
             "instant-mesh-base": "instant_mesh_base.ckpt", "instant-mesh-large": "instant_mesh_large.ckpt"}
FLEXICUBES = ("instant-mesh-base", "instant-mesh-large")
FLEXICUBES_MESSAGE = ("the FlexiCubes variants of InstantMesh (instant-mesh-base/-large) are not supported: "
                      "lrm has no FlexiCubes mesher; use instant-nerf-base or instant-nerf-large")


def read_instantmesh(r: StateReader, cfg: LRMConfig) -> dict[str, torch.Tensor]:
    """Take every reconstructor tensor from `r` (scoped past `lrm_generator.`) -> our state dict."""
    t, f = cfg.transformer, cfg.field
    d, dc, cam = t.dim, t.context_dim, cfg.camera_dim
    enc = read_encoder(r.scoped("encoder.model."), cfg.encoder, "hf-vit4")
    out = {"encoder." + k: v for k, v in enc.items()}
    lin, norm = partial(r.linear, out), partial(r.affine, out, n=d)
    lin("camera_embedder.fc1", "encoder.camera_embedder.0", cam, 16)
    lin("camera_embedder.fc2", "encoder.camera_embedder.2", cam, cam)
    out["transformer.tokens"] = r.take("transformer.pos_embed", (1, 3 * t.token_res**2, d))
    for i in range(t.layers):
        ours, theirs = f"transformer.blocks.{i}.", f"transformer.layers.{i}."
        for k in (1, 2, 3):
            norm(ours + f"norm{k}", theirs + f"norm{k}")
        ca = theirs + "cross_attn."
        out[ours + "cross_attn.q.weight"] = r.take(ca + "q_proj_weight", (d, d))
        out[ours + "cross_attn.kv.weight"] = torch.cat([r.take(ca + "k_proj_weight", (d, dc)),
                                                        r.take(ca + "v_proj_weight", (d, dc))])
        lin(ours + "cross_attn.out", ca + "out_proj", d, d, bias=False)
        out[ours + "self_attn.qkv.weight"] = r.take(theirs + "self_attn.in_proj_weight", (3 * d, d))
        lin(ours + "self_attn.out", theirs + "self_attn.out_proj", d, d, bias=False)
        lin(ours + "fc1", theirs + "mlp.0", 4 * d, d)
        lin(ours + "fc2", theirs + "mlp.3", d, 4 * d)
    norm("transformer.norm", "transformer.norm")
    read_upsampler_and_field(r, out, d, f, "transformer.deconv", "synthesizer.decoder.net")
    return out


def reconstructor_state(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The `lrm_generator.` tensors of a Lightning state dict, prefix stripped; a state dict
    already stripped is returned as is."""
    if any(k.startswith(PREFIX) for k in state):
        return {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    if "transformer.pos_embed" in state:
        return dict(state)
    raise CheckpointError(f"{source}: not an InstantMesh checkpoint (no {PREFIX}* keys); a model must be a folder "
                          "(config.json + model.safetensors, or an OpenLRM / TripoSR folder) or an InstantMesh .ckpt")


def config_from_state(state: dict[str, torch.Tensor], source: str, name: str | None = None) -> LRMConfig:
    """The preset whose shapes the (stripped) state has: base (12 blocks, 40 channels) or large
    (16, 80). FlexiCubes checkpoints and unknown sizes raise an LRMError."""
    if any(k.startswith("synthesizer.decoder.net_sdf.") for k in state):
        raise LRMError(f"{source}: {FLEXICUBES_MESSAGE}")
    layers = {int(m.group(1)) for k in state if (m := re.match(r"transformer\.layers\.(\d+)\.", k))}
    deconv = state.get("transformer.deconv.bias")
    shape = (len(layers), None if deconv is None else int(deconv.shape[0]))
    for preset in (instant_nerf_base, instant_nerf_large):
        cfg = preset()
        if shape == (cfg.transformer.layers, cfg.field.channels):
            return dataclasses.replace(cfg, name=name or cfg.name)
    raise LRMError(f"{source}: an InstantMesh checkpoint of unknown size ({shape[0]} transformer blocks, "
                   f"{shape[1]} plane channels; instant-nerf-base has 12 / 40, -large 16 / 80)")


def convert_instantmesh_state(state: dict[str, torch.Tensor], cfg: LRMConfig, source: str = "checkpoint"
                              ) -> dict[str, torch.Tensor]:
    """Strictly convert a (stripped) InstantMesh state dict; errors name the upstream keys."""
    reader = StateReader(state, source)
    out = read_instantmesh(reader, cfg)
    reader.finish()
    return out


def instantmesh_key_table(cfg: LRMConfig) -> dict[str, tuple[int, ...]]:
    """Every upstream key (after `lrm_generator.`) and shape for `cfg` (nothing allocated)."""
    reader = StateReader.recording()
    read_instantmesh(reader, cfg)
    return reader.table


# --- reading the Lightning file without running its code -------------------------------------

class _Inert:
    """Stands in for any object a checkpoint pickles besides tensors and containers (Lightning
    hyper-parameters, callbacks' state): built and filled without running anything."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __call__(self, *args: object, **kwargs: object) -> "_Inert":  # e.g. getattr(...)(...)
        return _Inert()

    def __setstate__(self, state: object) -> None:
        pass

    def __setitem__(self, key: object, value: object) -> None:
        pass

    def append(self, value: object) -> None:
        pass

    def extend(self, values: object) -> None:
        pass


_TORCH_REBUILDERS = {"_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state",
                     "_rebuild_from_type_v2", "Size"}


class _InertUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module in ("torch._utils", "torch._tensor", "torch") and name in _TORCH_REBUILDERS) or (
                module == "torch" and name.endswith("Storage")) or (module, name) == ("collections", "OrderedDict"):
            return super().find_class(module, name)
        return _Inert


class _InertPickle:
    """A `pickle_module` for torch.load: tensors are rebuilt, every other class is inert."""

    Unpickler = _InertUnpickler
    load = staticmethod(lambda f, **kw: _InertUnpickler(f, **kw).load())
    __name__ = "lrm_inert_pickle"


def read_lightning_state(path: Path) -> dict[str, torch.Tensor]:
    """The `state_dict` of a PyTorch-Lightning checkpoint, without running code from the file.

    First `torch.load(weights_only=True)`; if the file also pickles other objects (hyper-parameters
    as OmegaConf or Namespace objects), it is read again with every non-tensor class replaced by
    an inert stand-in, so nothing from the file is imported or called."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_InertPickle)
        except Exception as exc:  # noqa: BLE001 - any failure to parse is a bad file
            raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a Lightning checkpoint with a state_dict of tensors")
    return dict(state)


def load_instantmesh_file(path: Path, name: str | None = None) -> tuple[LRMConfig, dict[str, torch.Tensor]]:
    """A `.ckpt` (or a stripped `.safetensors`/`.pt`) -> (our config, our state dict)."""
    from lrm.convert.reader import read_weights

    raw = read_lightning_state(path) if path.suffix == ".ckpt" else read_weights(path)
    state = reconstructor_state(raw, str(path))
    cfg = config_from_state(state, str(path), name)
    return cfg, convert_instantmesh_state(state, cfg, str(path))
