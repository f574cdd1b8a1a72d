"""Several posed photos of one object, for models that take several views (InstantMesh).

`read_views(source)` accepts
- a NeRF / instant-ngp `transforms.json` (or a folder holding one): `frames[*].file_path`
  (relative to the file; `.png` is added when the path has no suffix, as in the NeRF synthetic
  scenes) and `frames[*].transform_matrix` (4x4 camera-to-world, OpenGL axes), with the focal
  length from `fl_x`/`fl_y`/`cx`/`cy` and `w`/`h` (per frame or top level) or `camera_angle_x`;
- `zero123pp:SHEET.png`: the 3 x 2 sheet of 320-px tiles Zero123++ v1.2 generates, with the
  six fixed cameras of its rig (lrm.cameras.zero123pp_cameras);
- a COLMAP capture folder: `images/` + a text or binary model in `sparse/0/` (or `sparse/`) and
  optional `masks/`, read and normalised as `lrm data capture` does (lrm.data.capture): the point
  the optical axes meet moves to the origin, frame 0 is put at the rig's radius (4, as Zero123++'s)
  and rotated to the canonical front camera, frames are centre-cropped to squares. COLMAP's
  world has no known scale or up, so this is the one normalisation such poses get. At most
  COLMAP_VIEWS frames are used, evenly spaced over the name-sorted frames, the first included.

Views must be square (the model's input is; padding would change the intrinsics) and the world
is the one the poses are given in: the object should sit inside the model's box ([-1, 1]³, Z up
for InstantMesh, cameras at about radius 4 with a 30-50 degree field of view). Poses from
transforms.json are used as given: no recentring, no rescaling.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lrm import cameras
from lrm.errors import LRMError

ZERO123PP_PREFIX = "zero123pp:"
COLMAP_VIEWS = 6  # frames taken from a COLMAP capture (InstantMesh was trained on 6 views)
COLMAP_RADIUS = 4.0  # distance of a capture's frame 0 from the origin: the Zero123++ rig's radius
COLMAP_SIZE = 320  # square side the frames are cropped and resized to (a Zero123++ tile)


@dataclass
class PosedViews:
    name: str  # a name for the output folder
    images: list[np.ndarray]  # V images [S, S, 4] RGBA float32 in [0, 1], square
    cameras16: torch.Tensor  # [V, 16]: 3x4 c2w row-major (OpenGL axes), fx, fy, cx, cy normalised


def read_views(source: str) -> PosedViews:
    if source.startswith(ZERO123PP_PREFIX):
        return _zero123pp(Path(source[len(ZERO123PP_PREFIX):]))
    path = Path(source)
    if path.is_dir() and not (path / "transforms.json").exists() and (path / "sparse").is_dir():
        return _colmap(path)
    if path.is_dir():
        path = path / "transforms.json"
    if not path.is_file():
        raise LRMError(f"{source}: no such transforms.json, nor a COLMAP capture folder (images/ + sparse/); "
                       "or use zero123pp:SHEET.png")
    return _transforms(path)


def _load(path: Path) -> np.ndarray:
    from lrm.preprocess import load_image

    return load_image(path)


def _zero123pp(sheet: Path) -> PosedViews:
    if not sheet.is_file():
        raise LRMError(f"{sheet}: no such file")
    img = _load(sheet)
    h, w = img.shape[:2]
    if h * 2 != w * 3 or w % 2:
        raise LRMError(f"{sheet}: a Zero123++ sheet is 3 rows x 2 columns of square tiles (e.g. 640 x 960), "
                       f"got {w} x {h}")
    t = w // 2
    tiles = [np.ascontiguousarray(img[r * t:(r + 1) * t, c * t:(c + 1) * t]) for r in range(3) for c in range(2)]
    return PosedViews(sheet.stem, tiles, cameras.zero123pp_cameras())


def _colmap(folder: Path) -> PosedViews:
    import struct

    from PIL import Image

    from lrm.data.capture import load_capture

    try:
        cap = load_capture(folder, resolution=COLMAP_SIZE, views=COLMAP_VIEWS, distance=COLMAP_RADIUS)
    except (OSError, ValueError, KeyError, IndexError, struct.error, Image.DecompressionBombError) as exc:
        raise LRMError(f"{folder}: not a readable COLMAP capture ({type(exc).__name__}: {exc})") from None
    images = [img.astype(np.float32) / 255 for img in cap.rgba]
    cams = cameras.camera_vector(torch.from_numpy(cap.c2w), torch.from_numpy(cap.intrinsics))
    return PosedViews(folder.resolve().name or "views", images, cams)


def _number(node: dict, key: str, where: str) -> float | None:
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise LRMError(f"{where}: {key} must be a positive number, got {value!r}")
    return float(value)


def _intrinsics(frame: dict, top: dict, width: int, height: int, where: str) -> list[float]:
    """Normalised (fx, fy, cx, cy) of one frame."""
    get = lambda key: _number(frame, key, where) if key in frame else _number(top, key, where)  # noqa: E731
    w, h = get("w") or width, get("h") or height
    if (w, h) != (width, height):
        raise LRMError(f"{where}: the pose says {w:g} x {h:g} pixels, the image is {width} x {height}")
    fx, fy = get("fl_x"), get("fl_y")
    if fx is None:
        angle = get("camera_angle_x")
        if angle is None:
            raise LRMError(f"{where}: no focal length (fl_x, or camera_angle_x)")
        fx = 0.5 * width / math.tan(angle / 2)
    fy = fy or fx
    cx, cy = get("cx") or width / 2, get("cy") or height / 2
    return [fx / width, fy / height, cx / width, cy / height]


def _transforms(path: Path) -> PosedViews:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LRMError(f"{path}: not a readable JSON file ({exc})") from None
    frames = data.get("frames") if isinstance(data, dict) else None
    if not isinstance(frames, list) or not frames:
        raise LRMError(f"{path}: expected a JSON object with a non-empty list 'frames'")
    root = path.parent.resolve()
    images, cams = [], []
    for i, frame in enumerate(frames):
        where = f"{path}: frames[{i}]"
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise LRMError(f"{where}: needs a file_path")
        file = (root / frame["file_path"]).resolve()
        if not file.suffix:
            file = file.with_suffix(".png")
        if not file.is_relative_to(root):
            raise LRMError(f"{where}: file_path {frame['file_path']!r} leads out of {root}")
        if not file.is_file():
            raise LRMError(f"{where}: no such image {file}")
        try:
            c2w = torch.tensor(frame.get("transform_matrix"), dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise LRMError(f"{where}: transform_matrix must be a 4 x 4 matrix of numbers") from None
        if c2w.shape != (4, 4) or not torch.isfinite(c2w).all():
            raise LRMError(f"{where}: transform_matrix must be a finite 4 x 4 matrix")
        rot = c2w[:3, :3]
        if (rot.T @ rot - torch.eye(3, dtype=torch.float64)).abs().max() > 1e-3:
            raise LRMError(f"{where}: transform_matrix must be a rigid camera-to-world pose (its 3 x 3 part "
                           "is not a rotation; scale the scene instead of the cameras)")
        img = _load(file)
        h, w = img.shape[:2]
        if h != w:
            raise LRMError(f"{file}: views must be square, got {w} x {h} (crop them and adjust cx, cy)")
        images.append(img)
        cams.append(cameras.camera_vector(c2w.float(), torch.tensor(_intrinsics(frame, data, w, h, where))))
    return PosedViews(path.parent.name or "views", images, torch.stack(cams))
