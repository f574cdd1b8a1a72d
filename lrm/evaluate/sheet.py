"""Contact sheets: one PNG per evaluated object, because people would rather look than read.

    input       | GT ring view a | GT ring view b | ...
    metrics     | predicted a    | predicted b    | ...   (the model's own renderer)
    (mesh)      | mesh a         | mesh b         | ...   (predicted mesh, lrm.mesh.view_render)
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image, ImageDraw, ImageFont

from lrm.preprocess import composite
from lrm.mesh.view_render import rasterize
from lrm.evaluate.report import fmt
from lrm.video import save_png, to_uint8


SHEET_METRICS = [("psnr", "PSNR"), ("ssim", "SSIM"), ("lpips", "LPIPS"), ("chamfer", "CD"),
                 ("fscore@0.1", "F@0.1"), ("volume_iou", "IoU")]  # ASCII: the default font lacks arrows


def _tile(img: np.ndarray, side: int) -> Image.Image:
    """[H, W, 3] float in [0, 1] -> a side×side PIL image."""
    pil = Image.fromarray(to_uint8(img))
    return pil if pil.size == (side, side) else pil.resize((side, side), Image.Resampling.BILINEAR)


def mesh_colours(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """Per-vertex RGB in [0, 1], or None when the mesh has no vertex colours."""
    if mesh.visual.kind != "vertex":
        return None
    return np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0


def pick_views(k: int, n: int) -> list[int]:
    """n ring indices spread evenly over k views."""
    return sorted({int(i) for i in np.floor(np.arange(min(n, k)) * k / min(n, k))})


def write_contact_sheet(path: Path, input_rgba: np.ndarray, gt_views: np.ndarray, pred_views: np.ndarray,
                        mesh: trimesh.Trimesh | None, c2w: np.ndarray, intrinsics: np.ndarray, n_views: int,
                        background: float, entry: dict, ring_ids: list[int] | None = None) -> None:
    """input_rgba: [H, W, 4] uint8; gt_views, pred_views: [K, h, w, 3] in [0, 1]; mesh and
    c2w [K, 4, 4] in the predictor's frame; intrinsics [K, 4]; entry: the object's metrics;
    ring_ids: the ring index of each of the K views (labels; default 0..K-1)."""
    side = int(np.clip(gt_views.shape[1], 128, 256))
    idx = pick_views(len(gt_views), n_views)
    ring_ids = list(range(len(gt_views))) if ring_ids is None else ring_ids
    label_h = 14
    sheet = Image.new("RGB", ((len(idx) + 1) * side, 3 * side + label_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    draw.text((4, 1), f"{entry['id']} (input view {entry['view']})", fill=(0, 0, 0), font=font)

    def put(img: np.ndarray, row: int, col: int, label: str) -> None:
        x, y = col * side, label_h + row * side
        sheet.paste(_tile(img, side), (x, y))
        draw.text((x + 3, y + 2), label, fill=(200, 0, 0), font=font)

    put(composite(input_rgba, background), 0, 0, "input")
    colours = mesh_colours(mesh) if mesh is not None else None
    for col, k in enumerate(idx, start=1):
        put(gt_views[k], 0, col, f"GT ring {ring_ids[k]}")
        put(pred_views[k], 1, col, f"predicted {ring_ids[k]}")
        if mesh is not None:
            rgb, _ = rasterize(mesh.vertices, mesh.faces, colours, c2w[k], intrinsics[k], side, background,
                               shading=0.5, supersample=2)
            put(rgb, 2, col, f"mesh {ring_ids[k]}")
    text = "\n".join(f"{label} {fmt(entry.get(k), k, 'n/a')}" for k, label in SHEET_METRICS)
    text += f"\n{entry['status']}"
    draw.text((6, label_h + side + 6), text, fill=(0, 0, 0), font=font, spacing=3)
    if mesh is None:
        draw.text((6, label_h + 2 * side + 6), "no mesh:\n" + _wrap(entry.get("error") or "", 22),
                  fill=(0, 0, 0), font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(np.asarray(sheet), path)


def _wrap(text: str, width: int, lines: int = 8) -> str:
    """Wrapped, in ASCII (the default bitmap font has no glyphs for ³, ², …)."""
    for uni, asc in (("³", "^3"), ("²", "^2"), ("–", "-"), ("−", "-")):
        text = text.replace(uni, asc)
    text = text.encode("ascii", "replace").decode()
    return "\n".join(textwrap.wrap(text, width)[:lines])
