"""Report files: metrics.json (per object + means), summary.md (tables), predicted meshes.

Means are taken over the entries that have a value; `count` says how many did, so a model
whose mesh is empty on some objects shows fewer geometry entries, never a zero.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh

from lrm.fileio import write_atomic

FORMAT = "lrm-eval-1"
# (key, column title, higher is better) in display order
METRICS = [
    ("psnr", "PSNR↑", True), ("ssim", "SSIM↑", True), ("lpips", "LPIPS↓", False),
    ("chamfer", "CD↓", False), ("fscore@0.05", "F@0.05↑", True), ("fscore@0.1", "F@0.1↑", True),
    ("fscore@0.2", "F@0.2↑", True), ("fscore@0.5", "F@0.5↑", True), ("volume_iou", "IoU↑", True),
    ("input_iou", "input-view IoU↑", True), ("input_color_error", "input colour err↓", False),
    # the control (--shuffle): the same object scored against the prediction from another object's input
    ("shuffled_psnr", "PSNR, shuffled input", True), ("shuffled_chamfer", "CD, shuffled input", False),
    ("shuffled_fscore@0.1", "F@0.1, shuffled input", True), ("shuffled_volume_iou", "IoU, shuffled input", True),
    ("shuffled_input_iou", "input-view IoU, shuffled input", True),
]




def metric_keys(entries: list[dict]) -> list[str]:
    """Metric keys present in the entries: the known ones in display order, then any others."""
    known = [k for k, _, _ in METRICS]
    seen = {k for e in entries for k, v in e.items() if k in known or k.startswith("fscore@")}
    return [k for k in known if k in seen] + sorted(seen - set(known))


def summarise(entries: list[dict]) -> tuple[dict, dict]:
    """-> (means {metric: mean or None, "timings": {stage: mean}}, counts {metric: n, ...})"""
    mean, count = {}, {}
    for k in metric_keys(entries):
        vals = [e[k] for e in entries if e.get(k) is not None]
        mean[k], count[k] = (float(np.mean(vals)) if vals else None), len(vals)
    stages = sorted({s for e in entries for s in e.get("timings", {})})
    mean["timings"] = {s: float(np.mean([e["timings"][s] for e in entries if s in e.get("timings", {})]))
                       for s in stages}
    count["entries"] = len(entries)
    for status in ("ok", "empty", "no_gt", "failed"):
        count[status] = sum(e["status"] == status for e in entries)
    return mean, count


def write_metrics(out_dir: Path, header: dict, entries: list[dict], planned: int | None = None,
                  complete: bool = True) -> dict:
    """metrics.json, atomically. While a run is going, `complete` is False and `planned` says how
    many (object, view) entries it will hold: a killed run's report is recognisably unfinished."""
    from lrm import __version__

    mean, count = summarise(entries)
    result = {"format": FORMAT, "lrm_version": __version__, **header, "complete": complete,
              "planned": len(entries) if planned is None else planned, "mean": mean, "count": count,
              "objects": entries}
    write_atomic(out_dir / "metrics.json", (json.dumps(result, indent=1) + "\n").encode())
    return result


def read_metrics(report_dir: str | Path) -> dict:
    from lrm.errors import LRMError

    path = Path(report_dir) / "metrics.json"
    if not path.is_file():
        raise LRMError(f"{report_dir}: not an evaluation report (no metrics.json)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LRMError(f"{path}: not a readable report ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LRMError(f"{path}: unknown report format {data.get('format') if isinstance(data, dict) else None!r} "
                       f"(expected {FORMAT})")
    return data


def unfinished(data: dict) -> str | None:
    """-> why a report is not finished ("12 of 66 entries"), or None when it is. Reports written
    before the `complete` key existed were only ever written whole at the end: finished."""
    if data.get("complete", True):
        return None
    return f"{len(data.get('objects', []))} of {data.get('planned', '?')} entries"


def fmt(value, key: str = "", missing: str = "–") -> str:
    key = key.removeprefix("shuffled_")
    if value is None:
        return missing
    if key == "psnr":
        return f"{value:.2f}"
    return f"{value:.4f}" if key == "chamfer" else f"{value:.3f}"


def title(key: str) -> str:
    return next((t for k, t, _ in METRICS if k == key), key)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def write_summary(out_dir: Path, result: dict) -> str:
    entries, mean, count = result["objects"], result["mean"], result["count"]
    keys = metric_keys(entries)
    proto = result["protocol"]
    lines = [
        f"# Evaluation: {result['model']['name']} on {Path(result['dataset']['path']).name} "
        f"({result['dataset']['split']})\n",
        f"`{result['command']}`\n" if result.get("command") else "",
        f"{count['entries']} entries: {count['ok']} ok, {count['empty']} empty mesh, "
        f"{count['no_gt']} without ground-truth mesh, {count['failed']} failed. "
        f"Novel views: {proto['ring_views'] or 'all'} ring views at "
        f"{str(proto['image_size']) + ' px' if proto['image_size'] else 'the ring resolution'}; LPIPS "
        f"{'on' if result['lpips_available'] else 'absent (no local weights)'}. Geometry: alignment "
        f"{proto['align']}, {proto['points']} surface points, volume IoU at {proto['iou_resolution']} voxels.\n",
        "## Means\n",
        table([title(k) for k in keys], [[fmt(mean[k], k) for k in keys], [f"n={count[k]}" for k in keys]]),
        *_control(mean),
        "## Per object\n",
        table(["object", "view", *[title(k) for k in keys], "status"],
              [[e["id"], str(e["view"]), *[fmt(e.get(k), k) for k in keys], e["status"]] for e in entries]),
        "## Mean time per stage (s)\n",
        table(list(mean["timings"]), [[f"{v:.3f}" for v in mean["timings"].values()]]) if mean["timings"] else "",
    ]
    errors = [f"- {e['id']} (view {e['view']}): {e['error']}" for e in entries if e.get("error")]
    if errors:
        lines += ["## Notes\n", "\n".join(errors) + "\n"]
    text = "\n".join(s for s in lines if s)
    write_atomic(out_dir / "summary.md", text.encode())
    return text


def _control(mean: dict) -> list[str]:
    """The --shuffle control as a section: own input vs another object's input."""
    keys = [k.removeprefix("shuffled_") for k, _, _ in METRICS
            if k.startswith("shuffled_") and mean.get(k) is not None and mean.get(k.removeprefix("shuffled_")) is not None]
    if not keys:
        return []
    rows = [[title(k), fmt(mean[k], k), fmt(mean["shuffled_" + k], k), fmt(mean[k] - mean["shuffled_" + k], k)]
            for k in keys]
    return ["## Does the output depend on the input? (--shuffle)\n",
            "Each object scored against the prediction from its own input view, and against the prediction "
            "from the input view of the object half the list away (a cyclic shift by N // 2). A model that "
            "ignores its input scores the same in both columns.\n",
            table(["metric", "own input", "shuffled input", "own − shuffled"], rows)]


def write_mesh(mesh: trimesh.Trimesh, path: Path) -> None:
    """PLY with vertex colours, written atomically."""
    write_atomic(path, mesh.export(file_type="ply"))
