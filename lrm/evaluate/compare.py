"""`lrm evaluate --compare A B`: two reports side by side (means, then per object)."""

from __future__ import annotations

from pathlib import Path

from lrm.errors import LRMError
from lrm.evaluate.report import METRICS, fmt, metric_keys, read_metrics, table, title, unfinished

PER_OBJECT = ["psnr", "ssim", "chamfer", "fscore@0.1", "volume_iou"]  # columns of the per-object table
PROTOCOL = ["split", "views", "align", "points", "thresholds", "iou_resolution", "image_size", "ring_views",
            "background"]


def _better(key: str, a, b) -> str:
    if a is None or b is None or a == b:
        return ""
    higher = next((h for k, _, h in METRICS if k == key), True)
    return "B" if (b > a) == higher else "A"


def compare_reports(dir_a: str | Path, dir_b: str | Path) -> str:
    """-> a markdown document comparing two report folders."""
    a, b = read_metrics(dir_a), read_metrics(dir_b)
    for d, data in ((dir_a, a), (dir_b, b)):
        if (why := unfinished(data)) is not None:
            raise LRMError(f"{d}: an unfinished report ({why}; its run was stopped): rerun its command to "
                           "finish it before comparing")
    keys = metric_keys(a["objects"] + b["objects"])
    lines = [f"# {a['model']['name']} (A) vs {b['model']['name']} (B)\n",
             f"A: `{dir_a}`  \nB: `{dir_b}`\n"]
    pa, pb = a["protocol"], b["protocol"]
    diffs = [f"{k}: {pa.get(k)} vs {pb.get(k)}" for k in PROTOCOL if pa.get(k) != pb.get(k)]
    if a["dataset"]["path"] != b["dataset"]["path"]:
        diffs.insert(0, f"dataset: {a['dataset']['path']} vs {b['dataset']['path']}")
    if diffs:
        lines.append("**Protocols differ** (numbers may not be comparable): " + "; ".join(diffs) + "\n")
    rows = []
    for k in keys:
        ma, mb = a["mean"].get(k), b["mean"].get(k)
        delta = fmt(mb - ma, k) if ma is not None and mb is not None else "–"
        rows.append([title(k), fmt(ma, k), fmt(mb, k), delta, _better(k, ma, mb),
                     f"{a['count'].get(k, 0)} / {b['count'].get(k, 0)}"])
    lines += ["## Means\n", table(["metric", "A", "B", "B − A", "better", "n (A / B)"], rows)]
    ta, tb = a["mean"].get("timings", {}), b["mean"].get("timings", {})
    stages = sorted(set(ta) | set(tb))
    if stages:
        lines += ["## Mean time per stage (s)\n",
                  table(["stage", "A", "B"], [[s, *(f"{t[s]:.3f}" if s in t else "–" for t in (ta, tb))]
                                              for s in stages])]
    by_b = {(e["id"], e["view"]): e for e in b["objects"]}
    common = [(e, by_b[(e["id"], e["view"])]) for e in a["objects"] if (e["id"], e["view"]) in by_b]
    cols = [k for k in PER_OBJECT if k in keys]
    rows = [[ea["id"], str(ea["view"]), *[f"{fmt(ea.get(k), k)} / {fmt(eb.get(k), k)}" for k in cols]]
            for ea, eb in common]
    lines += [f"## Per object (A / B), {len(common)} in common\n",
              table(["object", "view", *[title(k) for k in cols]], rows)]
    only = len(a["objects"]) + len(b["objects"]) - 2 * len(common)
    if only:
        lines.append(f"{only} entries appear in only one report.\n")
    return "\n".join(lines)
