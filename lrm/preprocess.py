"""Input images -> the square, background-composited image the encoder sees.

1. `load_image`: any Pillow-readable file (EXIF orientation applied; grey, palette, CMYK,
   16-bit and RGBA handled) -> RGBA float32 [H, W, 4] in [0, 1].
2. Foreground mask: the alpha channel when it has transparency; otherwise `rembg` (optional
   extra, downloads its weights on first use; one session per process, model `u2net`
   (Apache-2.0) unless another is chosen) unless background removal is disabled, in which
   case the whole image is the foreground.
3. `recenter`: crop to the mask's bounding box (alpha > 0.1, inclusive), pad to a square, pad
   again so the object's longer side is `ratio` of the image side, composite on the model's
   background grey, resize (bicubic, antialiased) to the model's source size.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from lrm.errors import LRMError

ImageInput = str | Path | Image.Image | np.ndarray
ALPHA_CUTOFF = 0.1  # alpha above this counts as foreground for the bounding box


def _pil_to_rgba(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> RGBA float32 [H, W, 4] in [0, 1]."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float32)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F" and arr.max() <= 1.0:
            peak = 1.0
        grey = np.clip(arr / peak, 0, 1)
        return np.dstack([grey, grey, grey, np.ones_like(grey)])
    if img.mode == "CMYK":
        img = img.convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    arr = np.asarray(img.convert("RGBA" if has_alpha else "RGB")).astype(np.float32) / 255.0
    if arr.shape[-1] == 3:
        arr = np.dstack([arr, np.ones(arr.shape[:2], np.float32)])
    return arr


def load_image(image: ImageInput) -> np.ndarray:
    """Load an image -> RGBA float32 [H, W, 4] in [0, 1]. Raises LRMError on bad input."""
    if isinstance(image, np.ndarray):
        arr = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
        if arr.ndim == 2:
            arr = np.dstack([arr] * 3)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise LRMError(f"expected an image array [H, W, 3|4], got shape {image.shape}")
        if arr.shape[-1] == 3:
            arr = np.dstack([arr, np.ones(arr.shape[:2], np.float32)])
        out = arr
    elif isinstance(image, Image.Image):
        out = _pil_to_rgba(ImageOps.exif_transpose(image))
    else:
        path = Path(image)
        if not path.exists():
            raise LRMError(f"{path}: no such file")
        if path.is_dir():
            raise LRMError(f"{path}: is a folder, not an image")
        with reading_image(path), Image.open(path) as img:
            img.load()
            out = _pil_to_rgba(ImageOps.exif_transpose(img))
    if out.shape[0] == 0 or out.shape[1] == 0:
        raise LRMError(f"{image if not isinstance(image, np.ndarray) else 'image'}: image has zero size")
    return np.ascontiguousarray(out, dtype=np.float32)


@contextmanager
def reading_image(path: Path) -> Iterator[None]:
    """Around Pillow's reading of `path`: images over 89 MP (decompression bombs) and unreadable
    files become one-line LRMErrors naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # > 89 MP: refused
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LRMError(f"{path}: refusing a decompression bomb ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise LRMError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None


def has_transparency(rgba: np.ndarray) -> bool:
    """rgba: [H, W, 4] -> whether the alpha channel marks any background."""
    return bool((rgba[..., 3] < 0.999).any())


REMBG_MODEL = "u2net"  # U²-Net, Apache-2.0; rembg's own default changed to a non-commercial model
# Models whose weights forbid commercial use (their licence is printed once when first used).
REMBG_NONCOMMERCIAL = {"bria-rmbg": "CC-BY-NC-4.0 (BRIA RMBG-2.0)"}
_rembg_sessions: dict[str, object] = {}


def rembg_session(model: str = REMBG_MODEL):
    """One rembg session per model and process (loading one costs seconds and up to 1 GB)."""
    if model not in _rembg_sessions:
        try:
            import rembg
        except ImportError:
            raise LRMError(
                "this image has no transparency and background removal needs the optional 'rembg' "
                "package: pip install 'lrm[rembg]', or pass --no-remove-bg, or give an RGBA image"
            ) from None
        if model in REMBG_NONCOMMERCIAL:
            import sys

            print(f"lrm: note: rembg model {model!r} is licensed {REMBG_NONCOMMERCIAL[model]}: not for "
                  f"commercial use (the default {REMBG_MODEL!r} is Apache-2.0)", file=sys.stderr)
        try:
            _rembg_sessions[model] = rembg.new_session(model)
        except Exception as exc:  # unknown name, or the weights cannot be downloaded
            raise LRMError(f"rembg could not load model {model!r} ({type(exc).__name__}: {exc}); "
                           "pass --no-remove-bg or give an RGBA image") from None
    return _rembg_sessions[model]


def rembg_cutout(data, model: str = REMBG_MODEL):
    """rembg.remove(data) with this process's session for `model` (data: a PIL image or a uint8
    array, returned in kind); a failure is a one-line LRMError."""
    session = rembg_session(model)
    import rembg

    try:
        return rembg.remove(data, session=session)
    except Exception as exc:
        raise LRMError(f"rembg could not remove the background ({type(exc).__name__}: {exc}); "
                       "pass --no-remove-bg or give an RGBA image") from None


def remove_background(rgba: np.ndarray, model: str = REMBG_MODEL) -> np.ndarray:
    """Estimate alpha with rembg (optional extra), one session per model and process.
    rgba: [H, W, 4] -> [H, W, 4]"""
    cut = rembg_cutout(Image.fromarray((rgba[..., :3] * 255 + 0.5).astype(np.uint8), "RGB"), model)
    alpha = np.asarray(cut.convert("RGBA")).astype(np.float32)[..., 3] / 255.0
    return np.dstack([rgba[..., :3], alpha])


def recenter(rgba: np.ndarray, ratio: float) -> np.ndarray:
    """Crop to the foreground, pad to a square whose side is bbox side / ratio, object centred.

    rgba: [H, W, 4] -> [s, s, 4] (transparent padding)
    """
    if not 0 < ratio <= 1:
        raise LRMError(f"foreground ratio must be in (0, 1], got {ratio}")
    ys, xs = np.nonzero(rgba[..., 3] > ALPHA_CUTOFF)
    if len(ys) == 0:
        raise LRMError("the image has no foreground (its alpha channel is fully transparent)")
    crop = rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape[:2]
    side = max(int(max(h, w) / ratio), 1)
    out = np.zeros((side, side, 4), np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = crop
    return out


def pad_square(rgba: np.ndarray) -> np.ndarray:
    """Pad to a square, centred, with transparent pixels. rgba: [H, W, 4] -> [s, s, 4]"""
    h, w = rgba.shape[:2]
    s = max(h, w)
    out = np.zeros((s, s, 4), np.float32)
    out[(s - h) // 2 : (s - h) // 2 + h, (s - w) // 2 : (s - w) // 2 + w] = rgba
    return out


def composite(rgba: np.ndarray, background: float | np.ndarray) -> np.ndarray:
    """rgba: [..., 4], float in [0, 1] or uint8 -> rgb [..., 3] (float) over a grey background
    (a number, or grey levels broadcastable to [..., 1])."""
    x = rgba.astype(np.float32) / 255.0 if rgba.dtype == np.uint8 else rgba
    a = x[..., 3:4]
    return x[..., :3] * a + background * (1 - a)


def resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Bicubic, antialiased resize to size x size, clamped to [0, 1]. rgb: [H, W, 3] -> [size, size, 3]"""
    if rgb.shape[:2] == (size, size):
        return rgb
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    t = F.interpolate(t, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return t[0].permute(1, 2, 0).clamp(0, 1).numpy()


def prepare(
    image: ImageInput,
    size: int,
    background: float,
    ratio: float,
    remove_bg: bool = True,
    do_recenter: bool = True,
    rembg_model: str = REMBG_MODEL,
) -> tuple[np.ndarray, np.ndarray]:
    """Full preprocessing. -> (model input rgb [size, size, 3] float32, the square rgba used [s, s, 4])"""
    rgba = load_image(image)
    removed = not has_transparency(rgba) and remove_bg
    if removed:
        rgba = remove_background(rgba, rembg_model)
        if not (rgba[..., 3] > ALPHA_CUTOFF).any():
            raise LRMError("background removal found no object in the image; pass --no-remove-bg to use the "
                           "whole image")
    if do_recenter and has_transparency(rgba):
        rgba = recenter(rgba, ratio)
    else:
        rgba = pad_square(rgba)
    return resize(composite(rgba, background), size).astype(np.float32), rgba
