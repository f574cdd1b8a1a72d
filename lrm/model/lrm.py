"""The Large Reconstruction Model, assembled in one place.

    image --encoder--> image tokens ----------------------.
    camera (16) --embedder--> modulation --.               v
    learned triplane tokens --transformer(cross-attend, modulate)--> tokens
        --upsampler--> planes [B, 3, C, h, w] --field(x)--> density, colour --renderer--> images

The config (a dataclass) is saved as `config.json` beside `model.safetensors`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lrm import cameras
from lrm.configs import from_dict, require, save_json, to_dict
from lrm.errors import LRMError
from lrm.model.camera import CameraEmbedder
from lrm.model.encoder import EncoderConfig, ImageEncoder
from lrm.model.field import Field, FieldConfig
from lrm.model.lift import ImageLift, LiftConfig
from lrm.model.transformer import TransformerConfig, TriplaneTransformer
from lrm.model.triplane import Upsampler
from lrm.render.rays import camera_rays
from lrm.render.renderer import Occupied, Query, RenderConfig, render_rays
from lrm.render.skipping import render_rays_skipping

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class InferenceConfig:
    source_size: int = 336  # side of the square image fed to the encoder
    source_distance: float = 2.0  # distance of the source camera (camera-conditioned models)
    source_focal: float = 0.75  # normalised focal length of the source camera
    foreground_ratio: float = 0.85  # object bbox side / image side after recentring
    condition_background: float = 1.0  # grey level composited behind the input object
    render_size: int = 288  # side of rendered views
    render_background: float = 1.0  # grey level behind rendered views
    view_distance: float = 2.0  # camera distance of turntable / novel views
    view_elevation: float = 23.578  # elevation of turntable views, degrees
    view_focal: float = 0.75  # normalised focal length of novel views
    front_azimuth: float = -90.0  # azimuth of the input camera, degrees (sets the output frame)
    mesh_resolution: int = 384  # marching-cubes grid side over the field's box
    mesh_threshold: float = 3.0  # iso-level on the activated density
    min_piece: float = 0.0  # drop mesh pieces smaller (area) than this fraction of the largest (lrm.mesh.components)

    def __post_init__(self) -> None:
        require([(self.source_size > 0 and self.render_size > 0, "inference source_size and render_size must be > 0"),
                 (self.source_distance >= 0 and self.view_distance > 0, "inference camera distances must be > 0"),
                 (self.source_focal >= 0 and self.view_focal > 0, "inference focal lengths must be > 0"),
                 (0 < self.foreground_ratio <= 1, f"inference foreground_ratio must be in (0, 1], got {self.foreground_ratio}"),
                 (self.mesh_resolution >= 2, f"inference mesh_resolution must be >= 2, got {self.mesh_resolution}"),
                 (0 <= self.min_piece <= 1, f"inference min_piece must be in [0, 1], got {self.min_piece}"),
                 (all(math.isfinite(getattr(self, f.name)) for f in dataclasses.fields(self)
                      if isinstance(getattr(self, f.name), float)), "inference settings must be finite numbers"),
                 (0 <= self.condition_background <= 1 and 0 <= self.render_background <= 1,
                  "inference backgrounds must be grey levels in [0, 1]")])


@dataclass
class LRMConfig:
    name: str = "custom"  # preset or model name, informational
    camera_dim: int = 1024  # camera-embedding width; 0 = no camera conditioning (TripoSR)
    encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
    transformer: TransformerConfig = dataclasses.field(default_factory=TransformerConfig)
    field: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    render: RenderConfig = dataclasses.field(default_factory=RenderConfig)
    inference: InferenceConfig = dataclasses.field(default_factory=InferenceConfig)
    lift: LiftConfig = dataclasses.field(default_factory=LiftConfig)  # image features along rays (lrm.model.lift)
    license: str = ""  # licence of the weights, printed once when loaded if non-commercial

    def __post_init__(self) -> None:
        require([(not self.lift.samples or self.inference.source_distance > 0,
                  "a lift needs a source camera: inference source_distance must be > 0")])


class LRM(nn.Module):
    def __init__(self, cfg: LRMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = ImageEncoder(cfg.encoder)
        self.camera_embedder = CameraEmbedder(cfg.camera_dim) if cfg.camera_dim else None
        self.transformer = TriplaneTransformer(cfg.transformer)
        self.upsampler = Upsampler(cfg.transformer.dim, cfg.field.channels)
        self.field = Field(cfg.field)
        self.lift = (ImageLift(cfg.lift, cfg.encoder.dim, cfg.field.channels, cfg.field.axes, cfg.field.radius)
                     if cfg.lift.samples else None)

    # --- image -> triplane -------------------------------------------------------------
    def forward(self, images: torch.Tensor, cameras16: torch.Tensor | None = None) -> torch.Tensor:
        """images: [B, 3, S, S] or [B, V, 3, S, S] in [0, 1]; cameras16: [B, 16] or [B, V, 16]
        source cameras (None: the canonical one) -> planes [B, 3, C, h, w]

        Several views (InstantMesh's form) need an encoder modulated per view (`encoder.mod_dim`):
        each view is encoded with its own camera and the token sets are concatenated view-major
        before the triplane transformer cross-attends to them. A lift averages its V readings."""
        single = images.ndim == 4
        if single:
            images = images[:, None]
            cameras16 = None if cameras16 is None else cameras16.reshape(images.shape[0], 1, 16)
        b, v = images.shape[:2]
        if v > 1 and not self.cfg.encoder.mod_dim:
            raise LRMError(f"model {self.cfg.name} takes one view, got {v}: several views need an encoder "
                           "modulated per view (InstantMesh's instant-nerf-*)")
        if cameras16 is None and (self.camera_embedder is not None or self.lift is not None):
            cameras16 = self.source_camera(b).to(images.device)[:, None].expand(b, v, 16)
        flat = images.reshape(b * v, *images.shape[2:])
        cams = None if cameras16 is None else cameras16.reshape(b * v, 16)
        emb = None if self.camera_embedder is None else self.camera_embedder(cams.to(self.camera_embedder.fc1.weight.dtype))
        feats = self.encoder(flat, emb if self.cfg.encoder.mod_dim else None)  # [B*V, L, E]
        context = feats.reshape(b, v * feats.shape[1], feats.shape[2])
        mod = None if emb is None or self.cfg.encoder.mod_dim else emb  # OpenLRM: modulates the transformer
        tokens = self.transformer(context, mod)
        planes = self.upsampler(tokens, self.cfg.transformer.token_res)
        if self.lift is not None:
            lifted = self.lift(flat, feats, cams, planes.shape[-1])  # [B*V, 3, C, h, w]
            planes = planes + lifted.reshape(b, v, *lifted.shape[1:]).mean(1)
        return planes

    def source_camera(self, batch: int, distance: float | None = None) -> torch.Tensor:
        """The canonical 16-number source camera, repeated: [B, 16]"""
        inf = self.cfg.inference
        d = inf.source_distance if distance is None else distance
        vec = cameras.camera_vector(cameras.canonical_c2w(d), cameras.intrinsics(inf.source_focal)[0])
        return vec.expand(batch, 16).clone()

    # --- triplane -> field ------------------------------------------------------------
    def query(self, planes: torch.Tensor, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """planes: [B, 3, C, h, w]; xyz: [B, N, 3] world -> density [B, N] (activated), rgb [B, N, 3]"""
        raw, rgb = self.field(planes, xyz)
        return self.field.density(raw), rgb

    # --- triplane -> images -----------------------------------------------------------
    def render(
        self,
        planes: torch.Tensor,
        c2w: torch.Tensor,
        intrinsics: torch.Tensor,
        resolution: int | torch.Tensor,
        region: int | None = None,
        anchor: torch.Tensor | None = None,
        background: float | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        query: Query | None = None,
        occupied: Occupied | None = None,
    ) -> dict[str, torch.Tensor]:
        """Render V views per triplane.

        planes: [B, 3, C, h, w]; c2w: [B, V, 4, 4]; intrinsics: [B, V, 4] normalised;
        resolution: full image side, int or [B, V]; region: side of the rendered crop (default
        the full image); anchor: [B, V, 2] crop top-left (row, col); background: grey level,
        [B, V] grey levels or [B, V, 3] colours (default the model's render background);
        query: field evaluator replacing `self.field` on these planes (e.g. the inference-only
        `lrm.model.fastfield.FoldedField`); occupied: empty-space test (`lrm.render.occupancy`)
        -> {"rgb": [B, V, 3, r, r], "depth": [B, V, 1, r, r], "opacity": [B, V, 1, r, r]}
        """
        b, v = c2w.shape[:2]
        res = torch.as_tensor(resolution, device=c2w.device).expand(b, v).reshape(-1)
        side = int(region if region is not None else int(res[0]))
        origins, dirs = camera_rays(
            c2w.reshape(b * v, 4, 4), intrinsics.reshape(b * v, 4), res, side,
            None if anchor is None else anchor.reshape(b * v, 2),
        )
        rays = side * side
        bg = self.cfg.inference.render_background if background is None else background
        bg = torch.as_tensor(bg, dtype=torch.float32, device=c2w.device)
        if bg.ndim == 2:  # [B, V] grey levels
            bg = bg[..., None].expand(b, v, 3)
        bg = bg.expand(b, v, 3)[:, :, None, :].expand(b, v, rays, 3).reshape(b, v * rays, 3)
        args = (query if query is not None else (lambda xyz: self.field(planes, xyz)), self.field.density,
                origins.reshape(b, v * rays, 3), dirs.reshape(b, v * rays, 3), bg, self.cfg.render)
        if occupied is None:
            out = render_rays(*args, generator)
        else:
            out = render_rays_skipping(*args, occupied, generator)
        rgb = out["rgb"].reshape(b, v, side, side, 3).permute(0, 1, 4, 2, 3)
        depth = out["depth"].reshape(b, v, 1, side, side)
        opacity = out["opacity"].reshape(b, v, 1, side, side)
        return {"rgb": rgb, "depth": depth, "opacity": opacity}

    # --- persistence -----------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write `config.json` + `model.safetensors` (optionally cast to `dtype`, e.g. fp16), and a
        model card `README.md` with the licence unless the folder has one."""
        from lrm.model.card import write_card
        from lrm.tensorfile import save_tensors

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_json(self.cfg, directory / CONFIG_NAME)
        state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
                 for k, v in self.state_dict().items()}
        save_tensors(state, directory / WEIGHTS_NAME, {"format": "pt", "lrm_config": str(to_dict(self.cfg))})
        write_card(directory, self.cfg)

    @staticmethod
    def config_from_dict(data: dict) -> LRMConfig:
        return from_dict(LRMConfig, data)
