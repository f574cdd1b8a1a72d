"""Writing rendered frames: PNG views and turntable videos (MP4 via imageio-ffmpeg, GIF fallback)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float images in [0, 1], any shape -> uint8 (clipped, rounded)."""
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """image: [H, W, 3|4] float in [0, 1] or uint8. Written atomically."""
    path = Path(path)
    arr = image if image.dtype == np.uint8 else to_uint8(image)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(arr).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def ffmpeg_available() -> bool:
    try:
        import imageio_ffmpeg

        return Path(imageio_ffmpeg.get_ffmpeg_exe()).exists()
    except Exception:
        return False


def write_video(frames: np.ndarray, path: str | Path, fps: int = 30) -> Path:
    """frames: [N, H, W, 3] float in [0, 1] or uint8. Writes `path` (.mp4) with ffmpeg, or a GIF
    next to it when ffmpeg is unavailable. Returns the path written."""
    path = Path(path)
    arr = frames if frames.dtype == np.uint8 else to_uint8(frames)
    if ffmpeg_available():
        import imageio.v2 as imageio

        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, pixelformat="yuv420p",
                                macro_block_size=2, ffmpeg_log_level="error") as writer:
            for frame in arr:
                writer.append_data(frame)
        os.replace(tmp, path)
        return path
    gif = path.with_suffix(".gif")
    tmp = gif.with_name(f".{gif.name}.tmp")
    images = [Image.fromarray(f) for f in arr]
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                   duration=int(1000 / fps), loop=0)
    os.replace(tmp, gif)
    return gif
