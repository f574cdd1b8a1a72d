"""Upstream-exact input preprocessing, on request (`lrm reconstruct --preprocess STYLE`).

lrm's own preprocessing (lrm.preprocess.prepare) is what works best for our models; these
styles reproduce what each upstream's inference script feeds its encoder, for comparisons with
reference outputs (docs/weights.md, "Preprocessing" lists the differences). From the facts in
docs/spec (TripoSR run.py section 12, OpenLRM v1.1 section 13.2):

- "triposr": rembg unless the image already has some alpha < 255 (and unless disabled; then
  the image is taken as RGB, its alpha dropped without compositing, nothing recentred);
  resize_foreground(ratio): crop to the bounding box of alpha > 0 with the end row and column
  *excluded* (upstream's off-by-one), pad centred to a square (leading pad floored), pad again to
  int(side / ratio); composite on grey 0.5 and truncate to uint8; then /255 and a bilinear,
  antialiased resize (align_corners False) to the source size.
- "openlrm-cli": no background removal, no recentring; RGBA is composited on white in float,
  then resized to the source size with bicubic interpolation, align_corners True, no
  antialiasing (non-square images are stretched), and clamped to [0, 1].
OpenLRM's Gradio app (OpenCV INTER_AREA resizes) is not reproduced.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lrm.errors import LRMError
from lrm.preprocess import REMBG_MODEL, ImageInput, has_transparency, load_image, remove_background

STYLES = ("lrm", "triposr", "openlrm-cli")  # "lrm": lrm.preprocess.prepare


def _u8(x: np.ndarray) -> np.ndarray:
    """float in [0, 1] that came from uint8 -> the same uint8 values"""
    return np.round(x * 255.0).astype(np.uint8)


def _resize(rgb: np.ndarray, size: int, mode: str, align_corners: bool, antialias: bool) -> np.ndarray:
    """rgb: [H, W, 3] float -> [size, size, 3] float32"""
    t = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    t = F.interpolate(t, size=(size, size), mode=mode, align_corners=align_corners, antialias=antialias)
    return t[0].permute(1, 2, 0).numpy()


def triposr_foreground(rgba: np.ndarray, ratio: float) -> np.ndarray:
    """TripoSR's resize_foreground. rgba: [H, W, 4] uint8 -> [s, s, 4] uint8"""
    ys, xs = np.nonzero(rgba[..., 3] > 0)
    if len(ys) == 0:
        raise LRMError("the image has no foreground (alpha is empty); check the input or pass --no-remove-bg")
    fg = rgba[ys.min():ys.max(), xs.min():xs.max()]  # end-exclusive, as upstream
    if fg.size == 0:
        raise LRMError("the foreground is one pixel wide or tall; TripoSR's crop leaves nothing of it")

    def pad_to(img: np.ndarray, side: int) -> np.ndarray:
        h, w = img.shape[:2]
        top, left = (side - h) // 2, (side - w) // 2
        return np.pad(img, ((top, side - h - top), (left, side - w - left), (0, 0)))

    square = pad_to(fg, max(fg.shape[:2]))
    return pad_to(square, int(square.shape[0] / ratio))


def prepare_upstream(image: ImageInput, style: str, size: int, ratio: float = 0.85, remove_bg: bool = True,
                     rembg_model: str = REMBG_MODEL) -> np.ndarray:
    """image -> the encoder input rgb [size, size, 3] float32 in [0, 1] of `style` (see above)."""
    rgba = load_image(image)
    if style == "openlrm-cli":
        rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
        return np.clip(_resize(rgb, size, "bicubic", True, False), 0.0, 1.0)
    if style != "triposr":
        raise LRMError(f"unknown preprocessing {style!r}; one of {', '.join(STYLES)}")
    if not remove_bg:
        return _resize(rgba[..., :3], size, "bilinear", False, True)
    if not has_transparency(rgba):
        rgba = remove_background(rgba, rembg_model)
    x = triposr_foreground(_u8(rgba), ratio).astype(np.float32) / 255.0
    grey = (x[..., :3] * x[..., 3:] + (1 - x[..., 3:]) * 0.5) * 255.0
    return _resize(grey.astype(np.uint8).astype(np.float32) / 255.0, size, "bilinear", False, True)
