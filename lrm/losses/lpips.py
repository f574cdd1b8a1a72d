"""LPIPS with a VGG16 backbone (Zhang et al. 2018), in plain torch (no torchvision).

    d(x, y) = sum_l mean_hw( w_l · (f̂_l(x) - f̂_l(y))² ),  f̂ = f / (|f|_channels + 1e-10)

f_l are VGG16 activations after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3; inputs in [0, 1]
are mapped to [-1, 1] and then standardised by LPIPS's scaling layer. `VGG16Features.features`
uses the layer indices of torchvision's `vgg16().features`, so its state dict loads from
torchvision's ImageNet file (`vgg16-397923af.pth`; `classifier.*` keys are not used). The
per-layer weights w_l load from the `lpips` package's `weights/v0.1/vgg.pth`
(`lin{l}.model.1.weight`, [1, C, 1, 1]).

Neither file can be downloaded here: `find_weights` looks in a given folder (or hub repo), then
in the torch hub cache and in an installed `lpips` package; `load_lpips` returns None when the
weights are absent, after one warning.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from lrm.errors import CheckpointError

VGG_FILES = ("vgg16-397923af.pth", "vgg16.pth", "vgg16.safetensors")
HEAD_FILES = ("vgg.pth", "lpips_vgg.pth", "lpips_vgg.safetensors")
TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2 .. relu5_3 in vgg16().features
CHANNELS = (64, 128, 256, 512, 512)
_VGG_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)  # LPIPS scaling layer, for inputs in [-1, 1]
SCALE = (0.458, 0.448, 0.450)
_warned = False


class VGG16Features(nn.Module):
    """torchvision's vgg16().features[:30] (up to relu5_3), same indices and key names."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for item in _VGG_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(item), 3, padding=1), nn.ReLU()]
                cin = int(item)
        self.features = nn.Sequential(*layers)
        assert len(self.features) == TAPS[-1] + 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: [N, 3, H, W] standardised -> the five tapped activations [N, C_l, H_l, W_l]"""
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                taps.append(x)
        return taps


class LPIPS(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.vgg = VGG16Features()
        self.heads = nn.ParameterList(nn.Parameter(torch.zeros(1, c, 1, 1)) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPS":
        return super().train(False)  # frozen: always in eval mode

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: [N, 3, H, W] RGB in [0, 1] -> distance [N]"""
        assert x.shape == y.shape and x.shape[1] == 3, (x.shape, y.shape)
        fx = self.vgg(((2 * x - 1) - self.shift) / self.scale)
        fy = self.vgg(((2 * y - 1) - self.shift) / self.scale)
        total = x.new_zeros(x.shape[0], dtype=torch.float32)
        for a, b, w in zip(fx, fy, self.heads):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + ((a - b).pow(2) * w).sum(1).mean((1, 2)).float()
        return total


def _read(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_weights(model: LPIPS, vgg_file: str | Path, head_file: str | Path) -> LPIPS:
    """Load torchvision VGG16 and lpips head files strictly (classifier.* keys are skipped)."""
    vgg = {k: v for k, v in _read(Path(vgg_file)).items() if not k.startswith("classifier.")}
    missing = set(model.vgg.state_dict()) - set(vgg)
    unexpected = set(vgg) - set(model.vgg.state_dict())
    if missing or unexpected:
        raise CheckpointError(f"{vgg_file}: not a torchvision VGG16 state dict (missing "
                              f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    model.vgg.load_state_dict(vgg, strict=True)
    heads = _read(Path(head_file))
    names = [f"lin{i}.model.1.weight" for i in range(len(CHANNELS))]
    if sorted(heads) != sorted(names):
        raise CheckpointError(f"{head_file}: expected LPIPS heads {names}, got {sorted(heads)}")
    for p, name in zip(model.heads, names):
        if heads[name].shape != p.shape:
            raise CheckpointError(f"{head_file}: {name} has shape {tuple(heads[name].shape)}, expected {tuple(p.shape)}")
        p.data.copy_(heads[name])
    return model


def _first(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _lpips_package_dir() -> Path | None:
    """weights/v0.1 of an installed `lpips` package, found without importing it."""
    spec = importlib.util.find_spec("lpips")
    return Path(spec.origin).parent / "weights" / "v0.1" if spec is not None and spec.origin else None


def find_weights(spec: str = "") -> tuple[Path | None, Path | None, list[str]]:
    """Locate (vgg file, head file) from `spec` (a folder or a hub repo id) or the caches.
    Returns the files (None where absent) and the places looked in."""
    folders: list[Path] = []
    if spec:
        if Path(spec).expanduser().is_dir():
            folders.append(Path(spec).expanduser())
        else:
            try:
                from huggingface_hub import snapshot_download

                folders.append(Path(snapshot_download(spec, allow_patterns=["*.pth", "*.safetensors"])))
            except Exception as exc:  # offline, unknown repo, ...
                folders.append(Path(f"<hub {spec}: {type(exc).__name__}>"))
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    folders.append(torch_home / "hub" / "checkpoints")
    package = _lpips_package_dir()
    if package is not None:
        folders.append(package)
    vgg = next((f for d in folders if (f := _first(d, VGG_FILES))), None)
    head = next((f for d in folders if (f := _first(d, HEAD_FILES))), None)
    return vgg, head, [str(d) for d in folders]


def load_lpips(spec: str = "", device: str | torch.device = "cpu") -> LPIPS | None:
    """LPIPS-VGG with pretrained weights, or None (with one warning) when they are absent."""
    global _warned
    vgg, head, places = find_weights(spec)
    if vgg is None or head is None:
        if not _warned:
            what = " and ".join(n for n, f in (("VGG16 (vgg16-397923af.pth)", vgg),
                                               ("LPIPS heads (vgg.pth)", head)) if f is None)
            warnings.warn(f"LPIPS disabled: {what} not found in {', '.join(places)}; "
                          "pass a folder holding both to use it", stacklevel=2)
            _warned = True
        return None
    return load_weights(LPIPS(), vgg, head).to(device)
