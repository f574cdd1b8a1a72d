"""Training configuration: typed dataclasses, read from TOML, saved resolved as JSON.

A config file names a model preset and may override any field of it in a `[model]` table
(nested like `LRMConfig`); every other table maps to one dataclass below. Unknown keys are errors.

    preset = "tiny"
    [model.render]
    samples = 16
    [data]
    root = "data/debian"
    ...
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

try:
    import tomllib  # novermin (guarded: tomli below 3.11)
except ImportError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib  # type: ignore[no-redef]

from lrm.configs import from_dict, require, to_dict
from lrm.errors import LRMError
from lrm.model.lrm import LRMConfig

TRAIN_CONFIG_NAME = "train_config.json"
TRACKERS = ("tensorboard", "wandb", "mlflow")  # experiment trackers lrm.train.logger can use


@dataclass
class DataConfig:
    root: str = ""  # dataset folder in the lrm-mv-1 format (lrm.data.format)
    split: str = "train"  # split of the training objects
    val_split: str = "val"  # split of the held-out objects used for validation ("" = none)
    side_views: int = 3  # supervision views per sample besides the input view
    source_view: int = -1  # index of the input view (-1: a random view, as OpenLRM)
    supervise_source: bool = True  # also render and supervise the input view (OpenLRM: yes)
    render_low: int = 64  # smallest full resolution of a supervision view
    render_high: int = 128  # largest full resolution of a supervision view
    region: int = 32  # side of the rendered crop (pixels of the full-resolution view)
    backgrounds: tuple[float, ...] = (0.0, 0.5, 1.0)  # grey levels drawn per supervision view
    source_background: float = 1.0  # grey level behind the input view (OpenLRM: white)
    workers: int = 0  # DataLoader worker processes per rank (0 = load in the main process)
    occupancy_points: int = 0  # inside/outside points per sample from samples.npz (0 = no 3D supervision)
    surface_points: int = 0  # coloured surface points per sample from samples.npz (0 = none)
    surface_jitter: float = 0.0  # std of a normal offset of each surface point along its normal:
    # the colour target then holds in a shell around the surface, where volume renders gather it

    def __post_init__(self) -> None:
        grey = (self.source_background, *self.backgrounds)
        require([
            (self.side_views >= 0, f"data.side_views must be >= 0, got {self.side_views}"),
            (self.source_view >= -1, f"data.source_view must be a view index or -1 (random), got {self.source_view}"),
            (1 <= self.region <= self.render_low <= self.render_high,
             f"data needs 1 <= region <= render_low <= render_high, got {self.region}, {self.render_low}, "
             f"{self.render_high}"),
            (len(self.backgrounds) > 0, "data.backgrounds must hold at least one grey level"),
            (all(math.isfinite(g) and 0 <= g <= 1 for g in grey), f"data grey levels must be in [0, 1], got {grey}"),
            (self.workers >= 0, f"data.workers must be >= 0, got {self.workers}"),
            (self.occupancy_points >= 0 and self.surface_points >= 0, "data point counts must be >= 0"),
            (math.isfinite(self.surface_jitter) and 0 <= self.surface_jitter < 1,
             f"data.surface_jitter must be in [0, 1), got {self.surface_jitter}"),
        ])


@dataclass
class LossConfig:
    mse: float = 1.0  # weight of the pixel MSE
    lpips: float = 1.0  # weight of LPIPS-VGG (0 or absent weights: not computed)
    tv: float = 5e-4  # weight of the total variation of the triplanes
    mask: float = 0.0  # weight of the opacity-vs-alpha MSE (0 = off, as OpenLRM)
    lpips_weights: str = ""  # folder or hub id with VGG16 + LPIPS heads ("" = look in caches)
    occupancy: float = 0.0  # weight of the inside/outside BCE at data.occupancy_points (lrm.train.losses)
    surface_rgb: float = 0.0  # weight of the colour MSE at data.surface_points
    occupancy_scale: float = 1.0  # the occupancy logit is scale·x (x = raw + density_bias): below 1 the
    # loss saturates only at larger |x|, so inside densities grow larger and renders come out opaque
    occupancy_scale_start: int = 0  # optimizer step from which occupancy_scale applies (1.0 before): a
    # new model started at scale 0.2 collapsed to "everything outside" (measured), a trained one does not

    def __post_init__(self) -> None:
        weights = {k: getattr(self, k) for k in ("mse", "lpips", "tv", "mask", "occupancy", "surface_rgb")}
        require([
            (all(math.isfinite(w) and w >= 0 for w in weights.values()),
             f"loss weights must be finite and >= 0, got {weights}"),
            (math.isfinite(self.occupancy_scale) and self.occupancy_scale > 0,
             f"loss.occupancy_scale must be > 0, got {self.occupancy_scale}"),
            (self.occupancy_scale_start >= 0, "loss.occupancy_scale_start must be >= 0"),
        ])


@dataclass
class OptimConfig:
    lr: float = 4e-4  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas
    weight_decay: float = 0.05  # decay of all weights except biases and norm parameters
    warmup: int = 3000  # optimizer steps of linear warm-up from 1e-10 to lr, then cosine to 0
    grad_clip: float = 1.0  # max global gradient norm (0 = no clipping)

    def __post_init__(self) -> None:
        require([
            (math.isfinite(self.lr) and self.lr > 0, f"optim.lr must be a finite number > 0, got {self.lr}"),
            (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), f"optim.betas must be in [0, 1), got "
                                                                             f"{self.betas}"),
            (math.isfinite(self.weight_decay) and self.weight_decay >= 0, "optim.weight_decay must be >= 0"),
            (self.warmup >= 0, f"optim.warmup must be >= 0, got {self.warmup}"),
            (math.isfinite(self.grad_clip) and self.grad_clip >= 0, "optim.grad_clip must be >= 0 (0: off)"),
        ])


@dataclass
class TrainConfig:
    preset: str = "tiny"  # model preset that `model` starts from (lrm.model.presets)
    model: LRMConfig = field(default_factory=LRMConfig)  # resolved model architecture
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 1000  # optimizer steps of the whole run (sets the cosine schedule)
    batch_size: int = 4  # samples per process per optimizer step
    accumulation: int = 1  # micro-batches per optimizer step (each of batch_size samples)
    seed: int = 42  # seeds data order, augmentation, render jitter and initialisation
    mixed_precision: Literal["auto", "no", "bf16"] = "auto"  # auto: bf16 where the hardware has it
    render_samples: int = 0  # stratified samples per ray in training renders (0 = the model's)
    render_importance: int = -1  # importance samples per ray in training renders (-1 = the model's)
    grad_checkpointing: bool = False  # recompute encoder/transformer activations in backward
    checkpoint_every: int = 500  # steps between checkpoints (the last step always saves)
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    val_every: int = 500  # steps between validations (0 = never)
    val_objects: int = 4  # held-out objects in the validation
    val_views: int = 3  # rendered views per validation object
    val_resolution: int = 64  # side of validation renders
    log_every: int = 10  # steps between logged scalars
    encoder_init: str = ""  # DINO/DINOv2 weights for a new model's encoder ("" = random)
    init: str = ""  # model to fine-tune from (anything lrm.hub.load_model accepts)
    run_dir: str = "runs/default"  # output folder: checkpoints, logs, validation images
    log_with: tuple[str, ...] = ("tensorboard",)  # accelerate trackers: tensorboard, wandb, mlflow (() = none)

    def __post_init__(self) -> None:
        counts = {k: getattr(self, k) for k in ("steps", "batch_size", "accumulation", "checkpoint_every",
                                                 "keep_checkpoints", "val_objects", "val_views", "log_every")}
        require([
            (all(v >= 1 for v in counts.values()), f"these must be >= 1: {counts}"),
            (self.val_every >= 0, f"val_every must be >= 0 (0: never), got {self.val_every}"),
            (self.val_resolution >= 8, f"val_resolution must be >= 8, got {self.val_resolution}"),
            (self.render_samples >= 0 and self.render_importance >= -1,
             "render_samples must be >= 0 (0: the model's) and render_importance >= -1 (-1: the model's)"),
            (all(t in TRACKERS for t in self.log_with), f"log_with: unknown tracker in {list(self.log_with)}; "
                                                         f"choose from {', '.join(TRACKERS)}"),
        ])


def _merge(cls: type, base: Any, data: dict[str, Any], where: str) -> Any:
    """A copy of dataclass instance `base` with the fields in `data` replaced (recursively)."""
    if not isinstance(data, dict):
        raise LRMError(f"{where}: expected a table, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise LRMError(f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}")
    merged = to_dict(base)
    for key, value in data.items():
        current = getattr(base, key)
        if dataclasses.is_dataclass(current):
            merged[key] = to_dict(_merge(type(current), current, value, f"{where}.{key}"))
        else:
            merged[key] = value
    return from_dict(cls, merged, where)


def resolve(data: dict[str, Any], where: str = "config") -> TrainConfig:
    """Build a TrainConfig from a parsed file: the preset's model, then the file's overrides."""
    from lrm.model.presets import PRESETS

    preset = data.get("preset", TrainConfig.preset)
    if preset not in PRESETS:
        raise LRMError(f"{where}: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    base = TrainConfig(preset=preset, model=PRESETS[preset]())
    return _merge(TrainConfig, base, data, where)


def load_config(path: str | Path) -> TrainConfig:
    """Read a TOML config (or a resolved JSON one written by a run)."""
    path = Path(path)
    if not path.is_file():
        raise LRMError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            return from_dict(TrainConfig, json.loads(text), f"{path}: config")
        return resolve(tomllib.loads(text), f"{path}: config")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LRMError(f"{path}: cannot parse ({exc})") from None


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as JSON, atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    tmp.replace(path)
