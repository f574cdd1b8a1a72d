"""Inference benchmark: one table per stage, OpenLRM-base and TripoSR architectures, exact vs fast.

    python benchmarks/bench_inference.py --fit-base FIT_DIR --fit-triposr FIT_DIR
    python benchmarks/bench_inference.py --archs base --mesh-resolution 256 --quick

Each (architecture, mode) runs in its own process (clean peak RSS) with random weights saved
once as safetensors (load = memory-mapped). Forward-pass stages use the random weights; the
render and mesh stages use a realistic field: planes + decoder fitted to a mesh with `lrm fit`
(random weights give fog or noise). The fast mode's view and mesh use the fitted planes plus
the fast forward's error (its planes minus the exact planes, scaled to the fitted planes'
size), so the PSNR / Chamfer columns measure the whole fast path against the exact one.

Stages: load (model + Reconstructor, int8 quantisation included); image -> triplane; one 256²
view (fast: occupancy grid included); mesh at --mesh-resolution with vertex colours; the whole
reconstruct (preprocess + triplane + mesh + GLB export, load excluded); peak RSS. Times are wall
seconds with the process CPU seconds in brackets (all threads; with --threads 1 the CPU time is
what an idle core would take, the wall time what this possibly busy machine took). Ratios:
achieved GFLOP/s over the machine's fp32 matmul peak measured in the same run (for the field
stages, reference FLOPs: what the exact path computes for the same output). Timings on a shared
machine are noisy: compare within one run (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.environ.get("LRM_BENCH_ROOT", str(Path(__file__).resolve().parents[1])))

ARCHS = {"base": "openlrm-base", "triposr": "triposr"}


# --- machine peaks and FLOP counts -----------------------------------------------------
def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Best GFLOP/s of an n x n x n matmul (int8: torch._int_mm) on this CPU."""
    if dtype == torch.int8:
        a = torch.randint(-100, 100, (n, n), dtype=torch.int8)
        b = torch.randint(-100, 100, (n, n), dtype=torch.int8).t()
        fn = lambda: torch._int_mm(a, b)  # noqa: E731
    else:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        fn = lambda: a @ b  # noqa: E731
    fn()
    best = min(_timed(fn)[1] for _ in range(reps))
    return 2 * n**3 / best / 1e9


def forward_flops(cfg, side: int) -> float:
    """FLOPs (2 x MACs) of image -> triplane: encoder, transformer, upsampler."""
    e, t = cfg.encoder, cfg.transformer
    n = (side // e.patch_size) ** 2 + 1 + e.registers
    enc = e.depth * (2 * n * e.dim * e.dim * 12 + 4 * n * n * e.dim) + 2 * n * 3 * e.patch_size**2 * e.dim
    m, d, c = 3 * t.token_res**2, t.dim, t.context_dim
    ffn = 2 * m * d * (8 * d if t.block == "openlrm" else 12 * d)  # 4d MLP, or GEGLU 8d in + 4d out
    attn = 2 * m * d * 4 * d + 4 * m * m * d + 2 * m * d * 2 * d + 2 * n * c * 2 * d + 4 * m * n * d
    up = 2 * m * d * 4 * cfg.field.channels
    return enc + t.layers * (ffn + attn) + up


def field_flops(cfg) -> float:
    """FLOPs of one reference field query (decoder MLP) per point."""
    f = cfg.field
    return 2 * (3 * f.channels * f.hidden + (f.layers - 2) * f.hidden**2 + 4 * f.hidden)


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


class Stages(dict):
    """stage -> wall seconds, plus stage + "_cpu" -> process CPU seconds (all threads)."""

    def run(self, name: str, fn):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        self[name], self[name + "_cpu"] = time.perf_counter() - t, time.process_time() - c
        return out


# --- one configuration, in a child process ---------------------------------------------
def child(job: dict) -> dict:
    from lrm.device import configure_threads
    from lrm.fitting.fit import load_fit
    from lrm.pipeline import Reconstruction, Reconstructor

    configure_threads(job["threads"])
    exact = job["mode"] == "exact"
    out = Stages()
    rec = out.run("load", lambda: Reconstructor(job["model"], device="cpu", dtype="fp32" if exact else job["dtype"],
                                                exact=exact))
    out["dtype"] = str(rec.compute_dtype).removeprefix("torch.")
    yy, xx = np.mgrid[:512, :512]
    img = np.zeros((512, 512, 4), np.float32)
    img[(yy - 260) ** 2 + (xx - 250) ** 2 < 180**2] = [0.9, 0.6, 0.2, 1.0]
    rgb = out.run("preprocess", lambda: rec.preprocess(img, remove_bg=False))
    if job["repeat"] > 1:
        rec.encode(rgb)  # warm-up: weight pages, allocator
    raw = out.run("encode", lambda: rec.encode(rgb))
    work = Path(job["work"])
    if exact:
        torch.save(raw, work / f"{job['arch']}-planes-exact.pt")
    _, field, planes = load_fit(job["fit"])
    rec.model.field.load_state_dict(field.state_dict())
    ref_path = work / f"{job['arch']}-planes-exact.pt"
    if not exact and ref_path.is_file():  # carry the fast forward's error into the fitted planes
        ref = torch.load(ref_path)
        out["plane_rel_err"] = float((raw - ref).norm() / ref.norm())
        planes = planes + (raw - ref) * (planes.std() / ref.std())
    c2w, intr = rec.orbit(8)
    view = out.run("view256", lambda: rec.render_views(planes, c2w[1:2], intr[1:2], size=256)["rgb"][0])
    np.save(work / f"{job['arch']}-{job['mode']}-view.npy", view)
    try:
        import lrm.mesh.extract  # noqa: F401
    except ImportError:
        lrm_mesh = None
    else:
        lrm_mesh = True
    if lrm_mesh and job["mesh_resolution"]:
        mesh = out.run("mesh", lambda: rec.extract_mesh(planes, resolution=job["mesh_resolution"]))
        out["faces"] = len(mesh.faces)
        result = Reconstruction(planes, rgb, mesh, np.eye(3, dtype=np.float32))
        out.run("export", lambda: result.save_mesh(work / f"{job['arch']}-{job['mode']}.glb"))
        np.savez(work / f"{job['arch']}-{job['mode']}-mesh.npz", v=mesh.vertices, f=mesh.faces)
        for suffix in ("", "_cpu"):
            out["reconstruct" + suffix] = sum(out[k + suffix] for k in ("preprocess", "encode", "mesh", "export"))
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    out["threads"] = torch.get_num_threads()
    return out


def baseline_child(job: dict) -> dict:
    """The starting code (`--baseline REV`, imported from a git worktree of REV): only the APIs it
    had (load_model, LRM.forward / render); its fp32 path, no mesh module."""
    from safetensors.torch import load_file

    from lrm import cameras
    from lrm.hub import load_model

    torch.set_num_threads(job["threads"])
    out = Stages()
    model = out.run("load", lambda: load_model(job["model"]))
    cfg = model.cfg
    x = torch.rand(1, 3, cfg.inference.source_size, cfg.inference.source_size)
    cams = model.source_camera(1) if model.camera_embedder is not None else None
    with torch.inference_mode():
        if job["repeat"] > 1:
            model(x, cams)
        out.run("encode", lambda: model(x, cams))
        fit = load_file(str(Path(job["fit"]) / "fit.safetensors"))
        model.field.load_state_dict({k[6:]: v for k, v in fit.items() if k.startswith("field.")})
        inf = cfg.inference
        c2w = cameras.orbit_cameras(8, inf.view_distance, inf.view_elevation, inf.front_azimuth)[1:2]
        k = cameras.intrinsics(inf.view_focal, 1)
        out.run("view256", lambda: model.render(fit["planes"], c2w[None], k[None], 256))
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    out["dtype"] = "float32"
    return out


def _baseline_tree(rev: str, cache: Path) -> Path:
    """The files of `rev` (git archive, extracted once) to import the starting code from."""
    tree = cache / f"baseline-{rev}"
    if not (tree / "lrm").is_dir():
        repo = Path(__file__).resolve().parents[1]
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(repo), "archive", rev], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


# --- parent: run the children, print the tables ----------------------------------------
def _accuracy(work: Path, arch: str) -> dict:
    import trimesh

    acc = {}
    views = [work / f"{arch}-{m}-view.npy" for m in ("exact", "fast")]
    if all(v.is_file() for v in views):
        a, b = (np.load(v).astype(np.float64) for v in views)
        mse = float(np.mean((a - b) ** 2))
        acc["psnr_db"] = 10 * math.log10(1 / mse) if mse > 0 else math.inf
    meshes = [work / f"{arch}-{m}-mesh.npz" for m in ("exact", "fast")]
    if all(m.is_file() for m in meshes):
        from lrm.fitting.surface_distance import surface_chamfer

        a, b = (np.load(m) for m in meshes)
        acc["chamfer"] = surface_chamfer(trimesh.Trimesh(a["v"], a["f"], process=False),
                                         trimesh.Trimesh(b["v"], b["f"], process=False))
    return acc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="base,triposr", help="comma list of base, triposr (default: both)")
    p.add_argument("--modes", default="exact,fast", help="comma list of exact, fast (default: both)")
    p.add_argument("--fit-base", default="/tmp/lrm-bench/fit-base", help="`lrm fit --preset openlrm-base` output")
    p.add_argument("--fit-triposr", default="/tmp/lrm-bench/fit-triposr", help="`lrm fit --preset triposr` output")
    p.add_argument("--cache", default="/tmp/lrm-bench", help="folder for the random-weight models (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    p.add_argument("--dtype", default="auto", help="fast-mode forward precision (default: auto)")
    p.add_argument("--mesh-resolution", type=int, default=384, help="0 skips meshing (default: 384)")
    p.add_argument("--quick", action="store_true", help="no warm-up forward (default: one warm-up)")
    p.add_argument("--baseline", default=None, metavar="REV",
                   help="also time the code at git revision REV (load, triplane, view) as mode 'before'; "
                        "8e7e663 is main before the speed work")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        job = json.loads(args.child)
        print("RESULT " + json.dumps(baseline_child(job) if job["mode"] == "before" else child(job)))
        return

    from lrm.device import configure_allocator, physical_cores
    from lrm.model.lrm import LRM
    from lrm.model.presets import PRESETS

    configure_allocator()
    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    peaks = {name: matmul_peak(dt) for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16),
                                                    ("int8", torch.int8))}
    print(f"threads {threads}, load average {os.getloadavg()[0]:.1f}; matmul peaks (GFLOP/s): "
          + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())
          + f"; bf16/fp32 {peaks['bf16'] / peaks['fp32']:.2f}, int8/fp32 {peaks['int8'] / peaks['fp32']:.2f}")
    work = Path(args.cache) / f"work-{os.getpid()}"  # views and meshes compared at the end
    work.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, str], dict] = {}
    for arch in args.archs.split(","):
        preset = ARCHS[arch]
        model_dir = Path(args.cache) / f"random-{preset}"
        if not (model_dir / "model.safetensors").is_file():
            torch.manual_seed(0)
            LRM(PRESETS[preset]()).save_pretrained(model_dir)
        fit = args.fit_base if arch == "base" else args.fit_triposr
        for mode in (["before"] if args.baseline else []) + args.modes.split(","):
            job = {"arch": arch, "mode": mode, "model": str(model_dir), "fit": fit, "threads": threads,
                   "dtype": args.dtype, "mesh_resolution": args.mesh_resolution, "work": str(work),
                   "repeat": 1 if args.quick else 2}
            env = dict(os.environ)
            if mode == "before":
                env["LRM_BENCH_ROOT"] = str(_baseline_tree(args.baseline, Path(args.cache)))
            proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True,
                                  text=True, env=env)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode or not lines:
                print(f"{arch}/{mode} failed:\n{proc.stderr[-3000:]}")
                continue
            results[arch, mode] = json.loads(lines[-1][7:])
            print(f"  {arch}/{mode}: done (load average {os.getloadavg()[0]:.1f})", flush=True)
    print_tables(results, peaks, args, work)


def print_tables(results: dict, peaks: dict, args, work: Path) -> None:
    from lrm.model.presets import PRESETS

    fp32 = peaks["fp32"]
    modes = (["before"] if args.baseline else []) + args.modes.split(",")
    for arch in args.archs.split(","):
        cfg = PRESETS[ARCHS[arch]]()
        side = cfg.inference.source_size
        fwd = forward_flops(cfg, side)
        view = 256 * 256 * (cfg.render.samples + cfg.render.importance) * field_flops(cfg)
        mesh = args.mesh_resolution**3 * field_flops(cfg)
        print(f"\n{ARCHS[arch]} (forward {fwd / 1e12:.2f} TFLOP at {side} px; 256² view {view / 1e12:.2f} TFLOP and "
              f"{args.mesh_resolution}³ grid {mesh / 1e12:.2f} TFLOP of reference field queries)")
        refs = [m for m in modes if m != "fast"] if "fast" in modes else []
        print("| stage | " + " | ".join(f"{m} s (cpu s) | {m} ×fp32 peak" for m in modes) + " | "
              + " | ".join(f"fast vs {m}" for m in refs) + " |")
        print("|---|" + "---|---|" * len(modes) + "---|" * len(refs))
        rows = [("load", None), ("encode", fwd), ("view256", view), ("mesh", mesh), ("export", None),
                ("reconstruct", None)]
        for stage, flops in rows:
            cells, times = [], {}
            for mode in modes:
                r = results.get((arch, mode), {})
                t = r.get(stage)
                times[mode] = t
                ratio = f"{flops / t / 1e9 / fp32:.2f}" if (t and flops) else ""
                cpu = r.get(stage + "_cpu")
                cells.append(f"{t:.2f} ({cpu:.2f}) | {ratio}" if t is not None else "– | ")
            speed = [f"{times[m] / times['fast']:.1f}×" if times[m] and times["fast"] else "" for m in refs]
            print(f"| {stage} | " + " | ".join(cells) + " | " + " | ".join(speed) + " |")
        rss = [f"{results.get((arch, m), {}).get('peak_rss_gb', float('nan')):.2f}" for m in modes]
        print("| peak RSS GB | " + " | ".join(f"{x} | " for x in rss) + " |" * len(refs))
        fast = results.get((arch, "fast"), {})
        acc = _accuracy(work, arch)
        print(f"fast mode: forward {fast.get('dtype', '?')}, plane rel. error {fast.get('plane_rel_err', float('nan')):.4f}, "
              f"view PSNR vs exact {acc.get('psnr_db', float('nan')):.1f} dB, mesh Chamfer vs exact "
              f"{acc.get('chamfer', float('nan')):.2e}, faces {results.get((arch, 'exact'), {}).get('faces')} / "
              f"{fast.get('faces')}")


if __name__ == "__main__":
    main()
