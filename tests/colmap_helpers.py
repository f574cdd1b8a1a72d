"""COLMAP text models written by tests (lrm data capture, lrm reconstruct --views-from)."""

from pathlib import Path

import numpy as np


def rotation(seed: int) -> np.ndarray:
    """A random proper rotation [3, 3]."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def quaternion(m: np.ndarray) -> list[float]:
    """Rotation matrix -> (w, x, y, z)."""
    w = np.sqrt(max(0.0, 1 + np.trace(m))) / 2
    return [w, (m[2, 1] - m[1, 2]) / (4 * w), (m[0, 2] - m[2, 0]) / (4 * w), (m[1, 0] - m[0, 1]) / (4 * w)]


def write_colmap_text(model: Path, c2w: np.ndarray, names: list[str], width: int, height: int,
                      f: float, cx: float, cy: float) -> np.ndarray:
    """cameras.txt (one PINHOLE camera) + images.txt for OpenGL cameras c2w [N, 4, 4]; -> the
    COLMAP world-to-camera matrices [N, 4, 4] (OpenCV axes) that were written."""
    model.mkdir(parents=True, exist_ok=True)
    w2c = np.linalg.inv(c2w @ np.diag([1.0, -1.0, -1.0, 1.0]))  # OpenGL -> OpenCV, then invert
    lines = []
    for i, name in enumerate(names):
        q, t = quaternion(w2c[i, :3, :3]), w2c[i, :3, 3]
        lines += [f"{i + 1} {' '.join(map(str, q))} {' '.join(map(str, t))} 1 {name}", ""]  # no 2D points
    (model / "cameras.txt").write_text(f"# cameras\n1 PINHOLE {width} {height} {f} {f} {cx} {cy}\n")
    (model / "images.txt").write_text("# images\n" + "\n".join(lines) + "\n")
    return w2c
