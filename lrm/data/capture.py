"""Real captures (MVImgNet-style): video frames + COLMAP poses -> "lrm-mv-1" objects.

A capture folder holds `images/` (the frames), a COLMAP model in `sparse/0/` (or `sparse/`) as
text (cameras.txt, images.txt) or binary (cameras.bin, images.bin) files, and optionally `masks/`
(foreground masks named like the frames, any extension; they become the alpha channel).

Camera normalisation (the LRM paper's treatment of MVImgNet; OpenLRM never released it):
1. COLMAP world-to-camera (OpenCV axes) -> camera-to-world in OpenGL axes (y up, looking -z);
2. the object centre = the point nearest to all optical axes (least squares; the cameras of an
   object-centric video look at it), moved to the origin;
3. the scale that puts the input camera (frame 0) at distance `distance` (2.0, the model's
   source distance);
4. a rotation about the origin, `lrm.cameras.normalize_poses`, that makes the input camera the
   canonical source camera (0, -d, 0) looking along +y, so the input view becomes canonical.
Frames are centre-cropped to squares and resized; intrinsics follow the crop and are normalised.
Lens distortion parameters are ignored (MVImgNet's SIMPLE_RADIAL distortion is small).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from lrm.cameras import normalize_poses
from lrm.data.format import ObjectViews
from lrm.data.mesh import quaternion_pose
from lrm.errors import LRMError

# COLMAP camera models: id -> (name, number of parameters); fx, fy, cx, cy come first.
MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
          4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
          8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12)}
_BY_NAME = {name: mid for mid, (name, _) in MODELS.items()}


@dataclass
class Frame:
    name: str  # image file name inside images/
    w2c: np.ndarray  # [4, 4] COLMAP world-to-camera, OpenCV axes
    size: tuple[int, int]  # (width, height) in pixels
    k: tuple[float, float, float, float]  # fx, fy, cx, cy in pixels


def _pinhole(model: str, params: list[float]) -> tuple[float, float, float, float]:
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "FOV", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"):
        return params[0], params[0], params[1], params[2]
    return params[0], params[1], params[2], params[3]


def read_colmap(model_dir: str | Path) -> list[Frame]:
    """Frames of a COLMAP model (text or binary), sorted by image name."""
    d = Path(model_dir)
    if (d / "cameras.bin").is_file() and (d / "images.bin").is_file():
        cams, imgs = _cameras_bin(d / "cameras.bin"), _images_bin(d / "images.bin")
    elif (d / "cameras.txt").is_file() and (d / "images.txt").is_file():
        cams, imgs = _cameras_txt(d / "cameras.txt"), _images_txt(d / "images.txt")
    else:
        raise LRMError(f"{d}: no COLMAP model (cameras/images .bin or .txt)")
    frames = []
    for name, q, t, cam_id in imgs:
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if not name or name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise LRMError(f"{d}: image name {name!r} leads outside images/ (names are relative to it)")
        if cam_id not in cams:
            raise LRMError(f"{d}: image {name!r} refers to camera {cam_id}, which is not in the model")
        model, width, height, params = cams[cam_id]
        frames.append(Frame(name, quaternion_pose(t, *q), (width, height), _pinhole(model, params)))
    return sorted(frames, key=lambda f: f.name)


def _cameras_txt(path: Path) -> dict:
    cams = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            cid, model, w, h, *params = line.split()
            cams[int(cid)] = (model, int(w), int(h), [float(p) for p in params])
    return cams


def _images_txt(path: Path) -> list:
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    out = []
    for line in lines[0::2]:  # every image takes two lines; the second lists its 2D points
        if line.strip():
            iid, qw, qx, qy, qz, tx, ty, tz, cid, name = line.split(maxsplit=9)
            out.append((name.strip(), [float(v) for v in (qw, qx, qy, qz)], [float(v) for v in (tx, ty, tz)], int(cid)))
    return out


def _cameras_bin(path: Path) -> dict:
    data, cams = path.read_bytes(), {}
    (n,), off = struct.unpack_from("<Q", data, 0), 8
    for _ in range(n):
        cid, mid, w, h = struct.unpack_from("<iiQQ", data, off)
        off += 24
        name, count = MODELS[mid]
        cams[cid] = (name, w, h, list(struct.unpack_from(f"<{count}d", data, off)))
        off += 8 * count
    return cams


def _images_bin(path: Path) -> list:
    data, out = path.read_bytes(), []
    (n,), off = struct.unpack_from("<Q", data, 0), 8
    for _ in range(n):
        _, qw, qx, qy, qz, tx, ty, tz, cid = struct.unpack_from("<i7di", data, off)
        off += 64
        end = data.index(b"\0", off)
        name = data[off:end].decode()
        (n_points,) = struct.unpack_from("<Q", data, end + 1)
        off = end + 1 + 8 + 24 * n_points
        out.append((name, [qw, qx, qy, qz], [tx, ty, tz], cid))
    return out


def axes_centre(c2w: np.ndarray) -> np.ndarray:
    """The point nearest (least squares) to the optical axes of cameras c2w [N, 4, 4] (OpenGL)."""
    a, b = np.zeros((3, 3)), np.zeros(3)
    for m in c2w:
        d = -m[:3, 2] / np.linalg.norm(m[:3, 2])
        p = np.eye(3) - np.outer(d, d)
        a += p
        b += p @ m[:3, 3]
    if np.linalg.cond(a) > 1e6:  # (nearly) parallel axes: no convergence point
        return c2w[:, :3, 3].mean(0)
    return np.linalg.solve(a, b)


def normalize_capture(w2c: np.ndarray, distance: float = 2.0) -> np.ndarray:
    """COLMAP w2c [N, 4, 4] (OpenCV) -> normalised OpenGL c2w [N, 4, 4]; frame 0 becomes canonical."""
    c2w = np.linalg.inv(w2c) @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV -> OpenGL camera axes
    if not np.isfinite(c2w).all():
        raise LRMError("capture poses must be finite numbers")
    c2w[:, :3, 3] -= axes_centre(c2w)
    radius = np.linalg.norm(c2w[:, :3, 3], axis=1)
    if radius[0] <= 1e-6 * max(1.0, float(radius.max())):
        # identical poses, or cameras turning on one spot: no object in front of them to centre
        raise LRMError("the capture's cameras do not look at an object from several places (all frames "
                       "share one camera position); record frames while moving around the object")
    c2w[:, :3, 3] *= distance / radius[0]
    return normalize_poses(torch.from_numpy(c2w), distance).numpy()


def _square(img: Image.Image, k: tuple[float, float, float, float], res: int) -> tuple[Image.Image, np.ndarray]:
    """Centre-crop to a square, resize to res; -> image and normalised intrinsics [4]."""
    w, h = img.size
    side = min(w, h)
    x0, y0 = (w - side) // 2, (h - side) // 2
    fx, fy, cx, cy = k
    crop = img.crop((x0, y0, x0 + side, y0 + side)).resize((res, res), Image.BICUBIC)
    return crop, np.array([fx / side, fy / side, (cx - x0) / side, (cy - y0) / side], np.float32)


def load_capture(folder: str | Path, resolution: int = 256, views: int = 32,
                 distance: float = 2.0, object_id: str | None = None) -> ObjectViews:
    """One capture folder -> ObjectViews (views evenly spaced over the frames, frame 0 first)."""
    folder = Path(folder)
    model = next((d for d in (folder / "sparse" / "0", folder / "sparse") if d.is_dir()), None)
    if model is None:
        raise LRMError(f"{folder}: no sparse/0 (COLMAP model) folder")
    frames = read_colmap(model)
    if len(frames) < 2:
        raise LRMError(f"{folder}: a capture needs at least 2 registered frames")
    pick = np.unique(np.linspace(0, len(frames) - 1, min(views, len(frames))).round().astype(int))
    frames = [frames[i] for i in pick]
    c2w = normalize_capture(np.stack([f.w2c for f in frames]), distance).astype(np.float32)
    rgba, intr = [], []
    masks = {p.stem: p for p in (folder / "masks").glob("*")} if (folder / "masks").is_dir() else {}
    for f in frames:
        img = Image.open(folder / "images" / f.name).convert("RGB")
        if img.size != f.size:  # frames stored at another size than COLMAP saw: scale the intrinsics
            s = (img.size[0] / f.size[0], img.size[1] / f.size[1])
            f.k = (f.k[0] * s[0], f.k[1] * s[1], f.k[2] * s[0], f.k[3] * s[1])
        mask = masks.get(Path(f.name).stem)
        alpha = Image.open(mask).convert("L").resize(img.size) if mask else Image.new("L", img.size, 255)
        img.putalpha(alpha)
        square, k = _square(img, f.k, resolution)
        rgba.append(np.asarray(square))
        intr.append(k)
    meta = {"source": "capture", "path": folder.name, "frames": [f.name for f in frames],
            "masked": bool(masks), "distance": distance, "resolution": resolution,
            "distances": [round(float(d), 4) for d in np.linalg.norm(c2w[:, :3, 3], axis=1)]}
    return ObjectViews(object_id or folder.name, np.stack(rgba), c2w, np.stack(intr), meta=meta)
