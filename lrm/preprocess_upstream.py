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
- "openlrm-app": OpenLRM's Gradio app (section 13.2), with OpenCV's own INTER_AREA resizes
  (optional extra `upstream`): the upload as RGBA uint8; longest side scaled to 1024, each side
  int(side · 1024 / longest) (small images are enlarged too); rembg (U²-Net) on the array in
  OpenCV's BGRA channel order, as the app hands it over; recentre: the bounding box of alpha > 0
  with the end row and column *excluded*, resized to int(h · s) × int(w · s) with
  s = int(512 · 0.8) / longer side = 409 / longer side, pasted at ((512 − h') // 2, (512 − w') // 2)
  on a transparent black 512² canvas (without recentring, a plain 512² resize); the saved PNG is
  then read by the "openlrm-cli" path. The app cannot run without rembg (its OpenCV colour
  conversion refuses four channels); with `remove_bg=False` the image's own alpha is used.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lrm.errors import LRMError
from lrm.preprocess import REMBG_MODEL, ImageInput, has_transparency, load_image, rembg_cutout, remove_background

STYLES = ("lrm", "triposr", "openlrm-cli", "openlrm-app")  # "lrm": lrm.preprocess.prepare
APP_LOAD_SIDE = 1024  # OpenLRM app: longest side after loading (twice the canvas)
APP_CANVAS = 512  # side of the square PNG the app saves
APP_BORDER = 0.2  # the box's longer side becomes int(512 · (1 − 0.2)) = 409 px


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


def _area_resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """OpenCV's INTER_AREA resize (what OpenLRM's app uses). img: [H, W, 4] uint8 -> [height, width, 4]"""
    try:
        import cv2
    except ImportError:
        raise LRMError("--preprocess openlrm-app needs OpenCV, whose INTER_AREA resizes OpenLRM's app uses: "
                       "pip install 'lrm[upstream]'") from None
    if width < 1 or height < 1:
        raise LRMError(f"OpenLRM's app preprocessing would resize the image to {width} x {height} px "
                       "(the object or the image is too thin); use the default --preprocess lrm")
    return cv2.resize(np.ascontiguousarray(img), (width, height), interpolation=cv2.INTER_AREA)


def openlrm_app_image(rgba8: np.ndarray, remove_bg: bool = True, recenter: bool = True,
                      rembg_model: str = REMBG_MODEL) -> np.ndarray:
    """The PNG OpenLRM's Gradio app saves before inference (see above).
    rgba8: [H, W, 4] uint8 -> [512, 512, 4] uint8"""
    h, w = rgba8.shape[:2]
    scale = APP_LOAD_SIDE / max(h, w)
    img = _area_resize(rgba8, int(w * scale), int(h * scale))
    if remove_bg:
        try:
            import rembg  # noqa: F401 (rembg_session's own message assumes an image without alpha)
        except ImportError:
            raise LRMError("OpenLRM's app always removes the background with rembg: pip install 'lrm[rembg]', "
                           "or pass --no-remove-bg to keep the image's own alpha") from None
        # the app passes OpenCV's BGRA array, so rembg sees red and blue swapped
        cut = rembg_cutout(np.ascontiguousarray(img[..., [2, 1, 0, 3]]), rembg_model)
        img = np.asarray(cut, dtype=np.uint8)[..., [2, 1, 0, 3]]
    if not recenter:
        return _area_resize(img, APP_CANVAS, APP_CANVAS)
    ys, xs = np.nonzero(img[..., 3] > 0)
    if len(ys) == 0:
        raise LRMError("the image has no foreground (alpha is empty); check the input or pass --no-remove-bg")
    top, left = int(ys.min()), int(xs.min())
    box_h, box_w = int(ys.max()) - top, int(xs.max()) - left  # end-exclusive, as upstream
    if min(box_h, box_w) == 0:
        raise LRMError("the foreground is one pixel wide or tall; OpenLRM's app crop leaves nothing of it")
    fit = int(APP_CANVAS * (1 - APP_BORDER)) / max(box_h, box_w)
    out_h, out_w = int(box_h * fit), int(box_w * fit)
    patch = _area_resize(img[top:top + box_h, left:left + box_w], out_w, out_h)
    canvas = np.zeros((APP_CANVAS, APP_CANVAS, 4), np.uint8)
    y0, x0 = (APP_CANVAS - out_h) // 2, (APP_CANVAS - out_w) // 2
    canvas[y0:y0 + out_h, x0:x0 + out_w] = patch
    return canvas


def prepare_upstream(image: ImageInput, style: str, size: int, ratio: float = 0.85, remove_bg: bool = True,
                     rembg_model: str = REMBG_MODEL, recenter: bool = True) -> np.ndarray:
    """image -> the encoder input rgb [size, size, 3] float32 in [0, 1] of `style` (see above);
    `recenter` is the OpenLRM app's checkbox (the other styles have none)."""
    rgba = load_image(image)
    if style == "openlrm-app":
        rgba = openlrm_app_image(_u8(rgba), remove_bg, recenter, rembg_model).astype(np.float32) / 255.0
    if style in ("openlrm-cli", "openlrm-app"):
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
