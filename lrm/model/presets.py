"""Model presets as plain constructors. Values for the published families follow
docs/spec (OpenLRM v1.1 config.json and TripoSR config.yaml)."""

from __future__ import annotations

import math

from lrm.cameras import fov_to_focal
from lrm.model.encoder import EncoderConfig
from lrm.model.field import FieldConfig
from lrm.model.lrm import InferenceConfig, LRMConfig
from lrm.model.transformer import TransformerConfig
from lrm.model.triplane import OPENLRM_AXES, TRIPOSR_AXES
from lrm.render.renderer import RenderConfig

OPENLRM_LICENSE = "CC-BY-NC-4.0"
OPENLRM_ELEVATION = math.degrees(math.asin(0.8 / 2.0))  # turntable at height 0.8, radius 2.0


def _dinov2(dim: int, heads: int) -> EncoderConfig:
    return EncoderConfig(dim=dim, depth=12, heads=heads, patch_size=14, pos_grid=37, registers=4,
                         layer_scale=True, eps=1e-6, imagenet_norm=False, pos_resize="dinov2")


def _openlrm(name: str, enc: EncoderConfig, dim: int, layers: int, heads: int, channels: int,
             samples: int, source: int, render: int) -> LRMConfig:
    return LRMConfig(
        name=name,
        camera_dim=1024,
        encoder=enc,
        transformer=TransformerConfig(block="openlrm", dim=dim, layers=layers, heads=heads,
                                      context_dim=enc.dim, mod_dim=1024, token_res=32),
        field=FieldConfig(channels=channels, hidden=64, layers=4, activation="relu", density="softplus",
                          density_bias=-1.0, color_margin=0.001, radius=1.0, axes=OPENLRM_AXES),
        render=RenderConfig(bounds="box", radius=1.0, samples=samples // 2, importance=samples // 2,
                            spacing="endpoints", quadrature="interval", mask_outside=True),
        inference=InferenceConfig(source_size=source, source_distance=2.0, source_focal=0.75,
                                  foreground_ratio=0.8, condition_background=1.0, render_size=render,
                                  render_background=1.0, view_distance=2.0,
                                  view_elevation=OPENLRM_ELEVATION, view_focal=0.75, front_azimuth=-90.0,
                                  mesh_resolution=384, mesh_threshold=3.0),
        license=OPENLRM_LICENSE,
    )


def openlrm_small() -> LRMConfig:
    return _openlrm("openlrm-small", _dinov2(384, 6), 512, 12, 8, 32, 96, 224, 192)


def openlrm_base() -> LRMConfig:
    return _openlrm("openlrm-base", _dinov2(768, 12), 768, 12, 12, 48, 96, 336, 288)


def openlrm_large() -> LRMConfig:
    return _openlrm("openlrm-large", _dinov2(768, 12), 1024, 16, 16, 80, 128, 448, 384)


def triposr() -> LRMConfig:
    return LRMConfig(
        name="triposr",
        camera_dim=0,
        encoder=EncoderConfig(dim=768, depth=12, heads=12, patch_size=16, pos_grid=14, registers=0,
                              layer_scale=False, eps=1e-12, imagenet_norm=True, pos_resize="hf4"),
        transformer=TransformerConfig(block="triposr", dim=1024, layers=16, heads=16, context_dim=768,
                                      mod_dim=0, token_res=32),
        field=FieldConfig(channels=40, hidden=64, layers=10, activation="silu", density="exp",
                          density_bias=-1.0, color_margin=0.0, radius=0.87, axes=TRIPOSR_AXES),
        render=RenderConfig(bounds="box", radius=0.87, shrink=1e-3, clamp_near=True, min_extent=0.01,
                            samples=128, spacing="midpoints", importance=0, quadrature="point",
                            mask_outside=False),
        inference=InferenceConfig(source_size=512, source_distance=0.0, source_focal=0.0,
                                  foreground_ratio=0.85, condition_background=0.5, render_size=256,
                                  render_background=1.0, view_distance=1.9, view_elevation=0.0,
                                  view_focal=fov_to_focal(40.0), front_azimuth=0.0,
                                  mesh_resolution=256, mesh_threshold=25.0),
        license="MIT",
    )


INSTANT_FOCAL = fov_to_focal(30.0)  # Zero123++ v1.2 rig: FOV 30 degrees (1.8660254)


def _instant_nerf(name: str, layers: int, channels: int, samples: int) -> LRMConfig:
    """InstantMesh's NeRF reconstructors (docs/weights.md, "InstantMesh"): DINO ViT-B/16 modulated
    per view by its camera, tokens of all views concatenated, OpenLRM's field and renderer."""
    enc = EncoderConfig(dim=768, depth=12, heads=12, patch_size=16, pos_grid=14, registers=0, layer_scale=False,
                        eps=1e-12, imagenet_norm=False, half_norm=True, mod_dim=768, pos_resize="hf4")
    return LRMConfig(
        name=name,
        camera_dim=768,
        encoder=enc,
        transformer=TransformerConfig(block="instantmesh", dim=1024, layers=layers, heads=16, context_dim=768,
                                      mod_dim=0, token_res=32),
        field=FieldConfig(channels=channels, hidden=64, layers=4, activation="relu", density="softplus",
                          density_bias=-1.0, color_margin=0.001, radius=1.0, axes=OPENLRM_AXES),
        render=RenderConfig(bounds="box", radius=1.0, samples=samples // 2, importance=samples // 2,
                            spacing="endpoints", quadrature="interval", mask_outside=True),
        inference=InferenceConfig(source_size=320, source_distance=4.0, source_focal=INSTANT_FOCAL,
                                  foreground_ratio=0.85, condition_background=1.0, render_size=384,
                                  render_background=1.0, view_distance=4.5, view_elevation=20.0,
                                  view_focal=INSTANT_FOCAL, front_azimuth=-90.0, mesh_resolution=256,
                                  mesh_threshold=10.0),
        license="Apache-2.0",
    )


def instant_nerf_base() -> LRMConfig:
    return _instant_nerf("instant-nerf-base", 12, 40, 96)


def instant_nerf_large() -> LRMConfig:
    return _instant_nerf("instant-nerf-large", 16, 80, 128)


def tiny() -> LRMConfig:
    """A few-MB model with OpenLRM's conventions: tests and the bundled default model."""
    enc = EncoderConfig(dim=128, depth=4, heads=4, patch_size=8, pos_grid=16, registers=0,
                        layer_scale=True, eps=1e-6, imagenet_norm=False, pos_resize="dinov2")
    cfg = _openlrm("tiny", enc, 192, 4, 4, 32, 64, 128, 128)
    cfg.camera_dim = 128
    cfg.transformer = TransformerConfig(block="openlrm", dim=192, layers=4, heads=4, context_dim=128,
                                        mod_dim=128, token_res=16)
    cfg.inference.mesh_resolution = 192
    cfg.inference.foreground_ratio = 0.6  # median object size in view 0 of the lrm-data renders
    cfg.license = "Apache-2.0"
    return cfg


PRESETS = {
    "openlrm-small": openlrm_small,
    "openlrm-base": openlrm_base,
    "openlrm-large": openlrm_large,
    "triposr": triposr,
    "instant-nerf-base": instant_nerf_base,
    "instant-nerf-large": instant_nerf_large,
    "tiny": tiny,
}
