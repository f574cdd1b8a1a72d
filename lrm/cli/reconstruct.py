"""`lrm reconstruct IMAGE... -o OUT_DIR`: images (or folders of images) -> meshes, views, videos.

Per image, OUT_DIR/<name>/ holds input.png (what the model saw), mesh.<format>, optionally
views/view_NNN.png and turntable.mp4. A rerun skips images whose mesh already exists.

Many images: `--workers N` runs N CPU processes; `accelerate launch -m lrm reconstruct DIR ...`
shards the images across GPUs (one process each). See lrm/batch.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lrm.errors import LRMError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".tga"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconstruct", help="reconstruct 3D meshes from images",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders of images")
    p.add_argument("--views-from", default=None, metavar="SOURCE",
                   help="one object from several posed views instead of IMAGEs: a NeRF/instant-ngp "
                        "transforms.json (or its folder), a COLMAP capture folder (images/ + sparse/0; 6 "
                        "frames, normalised as by `lrm data capture`), or zero123pp:SHEET.png (Zero123++ "
                        "v1.2's 3 x 2 sheet); needs a model that takes several views (instant-nerf-base/-large)")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder (created)")
    p.add_argument("--model", default="default",
                   help="bundled 'default', an alias (openlrm-mix-base, triposr, ...), a hub id or a "
                        "local folder (default: default)")
    p.add_argument("--format", choices=["glb", "obj", "ply"], default="glb", help="mesh format (default: glb)")
    p.add_argument("--no-mesh", action="store_true", help="skip mesh extraction (default: extract)")
    p.add_argument("--mesh-resolution", type=int, default=None, metavar="N",
                   help="marching-cubes grid side (default: the model's, 384 OpenLRM / 256 TripoSR)")
    p.add_argument("--mesh-threshold", type=float, default=None, metavar="T",
                   help="density iso-level (default: the model's, 3.0 OpenLRM / 25 TripoSR)")
    p.add_argument("--min-piece", type=float, default=None, metavar="F",
                   help="drop mesh pieces (floaters) whose area is below F times the largest piece's, e.g. 0.02 "
                        "(default: the model's, 0 = keep all)")
    p.add_argument("--preprocess", default="lrm", choices=["lrm", "triposr", "openlrm-cli", "openlrm-app"],
                   help="input preprocessing: lrm's own, or exactly what TripoSR's run.py, OpenLRM's CLI or "
                        "OpenLRM's Gradio app (needs lrm[upstream]) feed their encoder, for comparing with "
                        "their outputs (default: lrm)")
    p.add_argument("--target-faces", type=int, default=None, metavar="N",
                   help="decimate meshes above N faces to about N (quadric error; colours re-read from the "
                        "field); 0 keeps every marching-cubes face (default: 100000)")
    p.add_argument("--texture", action="store_true", help="bake a UV texture instead of vertex colours (default: off)")
    p.add_argument("--vertex-colors", choices=["photo", "field"], default="photo",
                   help="photo: where the input camera sees the mesh squarely, the photo's colours; elsewhere "
                        "the colour field's. field: the colour field's everywhere (as TripoSR/OpenLRM). One view "
                        "only; applies to a --texture too (default: photo)")
    p.add_argument("--texture-resolution", type=int, default=1024, metavar="N",
                   help="texture side in pixels (default: 1024)")
    p.add_argument("--splat", action="store_true",
                   help="also write splat.ply: Gaussian splats of the field (INRIA 3DGS format, for SuperSplat, "
                        "gsplat.js, Open3D) (default: off)")
    p.add_argument("--splat-resolution", type=int, default=128, metavar="N",
                   help="voxel grid side the splats are taken from (default: 128)")
    p.add_argument("--views", type=int, default=0, metavar="N",
                   help="write N novel-view PNGs around the object (default: 0)")
    p.add_argument("--video", action="store_true", help="write a turntable MP4 (GIF without ffmpeg) (default: off)")
    p.add_argument("--video-frames", type=int, default=60, metavar="N", help="turntable frames (default: 60)")
    p.add_argument("--video-size", type=int, default=None, metavar="PX",
                   help="turntable frame side (default: 256, or the model's render size if larger)")
    p.add_argument("--video-source", choices=["mesh", "field"], default="mesh",
                   help="turntable of the coloured mesh (rasterised, fast) or of the field (volume rendered, "
                        "as TripoSR/OpenLRM videos; used anyway with --no-mesh) (default: mesh)")
    p.add_argument("--render-size", type=int, default=None, metavar="PX",
                   help="side of rendered views (default: the model's)")
    p.add_argument("--source-size", type=int, default=None, metavar="PX",
                   help="input side fed to the encoder (default: the model's)")
    p.add_argument("--source-distance", type=float, default=None, metavar="D",
                   help="source camera distance for camera-conditioned models (default: the model's, 2.0)")
    p.add_argument("--background", type=float, default=None, metavar="GREY",
                   help="grey level behind the input object (default: the model's, 1.0 OpenLRM / 0.5 TripoSR)")
    p.add_argument("--foreground-ratio", type=float, default=None, metavar="R",
                   help="object size / image size after recentring (default: the model's)")
    p.add_argument("--no-remove-bg", action="store_true",
                   help="do not remove the background of images without alpha (default: remove with rembg)")
    p.add_argument("--skip-errors", action="store_true",
                   help="in a folder run, skip unreadable images and report them at the end (exit code 2) "
                        "instead of stopping before the first image")
    p.add_argument("--rembg-model", default=None, metavar="NAME",
                   help="rembg model for images without alpha (default: u2net, Apache-2.0; rembg's own "
                        "default bria-rmbg is non-commercial)")
    p.add_argument("--no-recenter", action="store_true", help="use the image framing as is (default: recentre)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--dtype", choices=["fp32", "bf16", "int8", "auto"], default="auto",
                   help="precision of the image -> triplane pass: fp32 is exact; bf16 for GPUs and CPUs with "
                        "native bf16; int8 for other CPUs; auto picks by hardware (default: auto)")
    p.add_argument("--exact", action="store_true",
                   help="reference code path: fp32, no empty-space skipping, dense meshing (default: fast "
                        "path, within 40 dB PSNR / 1e-3 Chamfer of it)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="CPU worker processes for many images, sharing the threads (default: 1)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads in all (default: LRM_THREADS, else the idle physical cores)")
    p.add_argument("--overwrite", action="store_true", help="redo images whose outputs exist (default: skip)")
    p.set_defaults(run=run)


def collect_images(items: list[str]) -> list[Path]:
    """Expand folders (sorted, non-recursive) and check that the files exist (not their contents)."""
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise LRMError(f"{path}: folder contains no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            out.extend(found)
        elif not path.exists():
            raise LRMError(f"{path}: no such file")
        else:
            out.append(path)
    return out


def check_image(path: Path) -> None:
    """Cheap validity check (header + checksums) before any model is loaded."""
    from PIL import Image

    from lrm.preprocess import reading_image

    with reading_image(path), Image.open(path) as img:
        img.verify()
    if img.size[0] == 0 or img.size[1] == 0:
        raise LRMError(f"{path}: image has zero size")


def output_names(images: list[Path]) -> list[str]:
    """Stable, unique, safe folder names: the file stem, suffixed -2, -3... on repeats.

    A stem that is only dots (`...png` has the stem `..`) or holds characters other than
    letters, digits and `._-+@=,` is made safe (each such character becomes `_`), so no name
    leads out of the output folder. A suffixed name never takes another image's own stem
    (`a.png`, `a.jpg`, `a-2.png` -> a, a-3, a-2)."""
    stems = [_safe_stem(img.stem) for img in images]
    taken = set(stems)
    used: set[str] = set()
    names = []
    for stem in stems:
        name, n = stem, 1
        while name in used or (n > 1 and name in taken):  # taken: another image's own stem
            n += 1
            name = f"{stem}-{n}"
        used.add(name)
        names.append(name)
    return names


def _safe_stem(stem: str) -> str:
    import re

    safe = re.sub(r"[^\w.\-+@=,]", "_", stem)
    return "_" * len(safe) if set(safe) <= {"."} and safe else (safe or "image")


DONE_NAME = ".lrm-done.json"  # written last into an image's folder: its outputs are complete


def _wanted(args: argparse.Namespace) -> dict:
    """What a run writes per image (recorded in DONE_NAME; a rerun skips an image only when
    a complete earlier run wrote at least this)."""
    return {"mesh": None if args.no_mesh else f"mesh.{args.format}", "target_faces": args.target_faces,
            "vertex_colors": None if args.no_mesh else args.vertex_colors,
            "views": args.views, "video": args.video_frames if args.video else 0,
            "video_size": args.video_size if args.video else None,
            "video_source": args.video_source if args.video else None,
            # the splat layout's version, grid and colours: files of an older layout are redone
            "splat": f"iso-surface {args.splat_resolution} {args.vertex_colors}" if args.splat else 0}


def is_done(folder: Path, args: argparse.Namespace) -> bool:
    import json

    try:
        done = json.loads((folder / DONE_NAME).read_text())
    except (OSError, ValueError):
        return False
    want = _wanted(args)
    if not isinstance(done, dict):
        return False
    same = lambda *keys: all(done.get(k) == want[k] for k in keys)  # noqa: E731
    return ((want["mesh"] is None or same("mesh", "target_faces", "vertex_colors")) and done.get("views", 0) >= want["views"]
            and (not want["video"] or same("video", "video_size", "video_source")) and (not want["splat"] or same("splat")))


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".lrm-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LRMError(f"{folder}: output folder is not writable ({exc.strerror or exc})") from None


def _validate(args: argparse.Namespace) -> None:
    checks = [
        (args.mesh_resolution is None or 8 <= args.mesh_resolution <= 2048, "--mesh-resolution must be in [8, 2048]"),
        (args.views >= 0, "--views must be >= 0"),
        (8 <= args.splat_resolution <= 1024, "--splat-resolution must be in [8, 1024]"),
        (args.video_frames >= 1, "--video-frames must be >= 1"),
        (args.video_size is None or 8 <= args.video_size <= 4096, "--video-size must be in [8, 4096]"),
        (args.texture_resolution >= 64, "--texture-resolution must be >= 64"),
        (args.target_faces is None or args.target_faces == 0 or args.target_faces >= 100,
         "--target-faces must be 0 (no limit) or >= 100"),
        (args.foreground_ratio is None or 0 < args.foreground_ratio <= 1, "--foreground-ratio must be in (0, 1]"),
        (args.min_piece is None or 0 <= args.min_piece <= 1, "--min-piece must be in [0, 1]"),
        (args.background is None or 0 <= args.background <= 1, "--background must be in [0, 1]"),
        (args.render_size is None or 8 <= args.render_size <= 4096, "--render-size must be in [8, 4096]"),
        (args.source_distance is None or args.source_distance > 0, "--source-distance must be > 0"),
        (args.source_size is None or 8 <= args.source_size <= 4096, "--source-size must be in [8, 4096]"),
        (args.workers >= 1, "--workers must be >= 1"),
        (args.threads is None or args.threads >= 1, "--threads must be >= 1"),
        (not (args.exact and args.dtype not in ("fp32", "auto")), "--exact computes in fp32; drop --dtype"),
        (bool(args.images) != bool(args.views_from), "give IMAGEs or --views-from SOURCE (one of the two)"),
    ]
    for ok, msg in checks:
        if not ok:
            raise LRMError(msg)


def _apply_overrides(rec, args: argparse.Namespace) -> None:
    inf = rec.inference
    for flag, attr in [("source_size", "source_size"), ("render_size", "render_size"),
                       ("source_distance", "source_distance"), ("background", "condition_background"),
                       ("foreground_ratio", "foreground_ratio"), ("mesh_resolution", "mesh_resolution"),
                       ("mesh_threshold", "mesh_threshold"), ("min_piece", "min_piece")]:
        value = getattr(args, flag)
        if value is not None:
            setattr(inf, attr, value)
    if getattr(args, "rembg_model", None):
        rec.rembg_model = args.rembg_model
    rec.preprocess_style = getattr(args, "preprocess", "lrm")
    patch = rec.model.cfg.encoder.patch_size
    if inf.source_size % patch:
        raise LRMError(f"--source-size must be a multiple of the encoder patch size {patch}")


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from tqdm import tqdm

    from lrm.batch import device_for, run_pool, shard_from_env
    from lrm.device import configure_threads

    _validate(args)
    if args.views_from:
        return run_views(args)
    images = collect_images(args.images)
    bad: dict[Path, str] = {}  # image -> why it was refused
    for img in images:  # header checks before any model is loaded
        try:
            check_image(img)
        except LRMError as exc:
            if not args.skip_errors:
                raise
            bad[img] = str(exc)
    # names over all images, so that they stay when a bad one is fixed
    named = [(img, name) for img, name in zip(images, output_names(images)) if img not in bad]
    out_dir = Path(args.output)
    check_writable(out_dir)
    shard = shard_from_env()
    mine = shard.take(named)
    todo = [(img, name) for img, name in mine if args.overwrite or not is_done(out_dir / name, args)]
    if len(todo) < len(mine):
        print(f"skipping {len(mine) - len(todo)} image(s) with existing outputs (--overwrite to redo)",
              file=sys.stderr)
    if not todo:
        return _report_skipped(list(bad.values()))

    threads = configure_threads(args.threads)
    workers = min(args.workers, len(todo))
    make = partial(load_reconstructor, args, device_for(shard, args.device), workers == 1)
    if workers > 1:
        print(f"{workers} workers x {max(1, threads // workers)} thread(s)", file=sys.stderr)
    failures = 0
    bar = tqdm(total=len(todo), desc="reconstruct", unit="img", disable=len(todo) < 2, file=sys.stderr)
    for (img, name), result in run_pool(make, partial(_process, args, out_dir), todo, workers, threads):
        bar.update()
        if isinstance(result, str):
            failures += 1
            tqdm.write(f"lrm: error: {img}: {result}" if str(img) not in result else f"lrm: error: {result}",
                       file=sys.stderr)
            continue
        tqdm.write(f"{name}: {result.line()} -> {out_dir / name}", file=sys.stderr)
    bar.close()
    return max(2 if failures else 0, _report_skipped(list(bad.values())))


def _report_skipped(bad: list[str]) -> int:
    """--skip-errors: the images refused before the run, one line each; exit code 2 if any."""
    for msg in bad:
        print(f"lrm: error: {msg}", file=sys.stderr)
    if bad:
        print(f"lrm: {len(bad)} image(s) skipped (see above); the others are done", file=sys.stderr)
    return 2 if bad else 0


def load_reconstructor(args: argparse.Namespace, device: str, verbose: bool = True):
    from lrm.device import precision_name
    from lrm.pipeline import Reconstructor

    t0 = time.perf_counter()
    rec = Reconstructor(args.model, device=device, dtype="fp32" if args.exact else args.dtype, exact=args.exact)
    _apply_overrides(rec, args)
    if getattr(args, "views_from", None) and not rec.model.cfg.encoder.mod_dim:
        raise LRMError(f"model {rec.model.cfg.name} takes one view; --views-from needs one that takes several "
                       "(instant-nerf-base, instant-nerf-large)")
    if verbose:
        mode = "exact" if args.exact else "fast"
        note = f" [{rec.precision_note}]" if rec.precision_note else ""
        print(f"loaded {rec.model.cfg.name} in {time.perf_counter() - t0:.1f}s on {rec.device} "
              f"({precision_name(rec.compute_dtype)}{note}, {mode}, {torch_threads()} thread(s); "
              f"--dtype and --threads override)", file=sys.stderr)
    return rec


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _process(args: argparse.Namespace, out_dir: Path, rec, item: tuple[Path, str]) -> Written | str:
    """One image -> what it wrote (timings, faces), or the message of the LRMError that stopped it."""
    img, name = item
    try:
        return reconstruct_one(rec, img, out_dir / name, args)
    except LRMError as exc:
        return str(exc)


def run_views(args: argparse.Namespace) -> int:
    """--views-from: one object from several posed views -> OUT_DIR/<name>/."""
    from lrm.device import configure_threads
    from lrm.views import read_views

    views = read_views(args.views_from)
    folder = Path(args.output) / _safe_stem(views.name)
    check_writable(Path(args.output))
    if not args.overwrite and is_done(folder, args):
        print(f"skipping {folder}: its outputs exist (--overwrite to redo)", file=sys.stderr)
        return 0
    configure_threads(args.threads)
    rec = load_reconstructor(args, args.device)
    result = rec.reconstruct_views(views.images, views.cameras16, mesh=not args.no_mesh, texture=args.texture,
                                   texture_resolution=args.texture_resolution, **_faces(args))
    done = write_outputs(rec, result, folder, args)
    print(f"{folder.name} ({len(views.images)} views): {done.line()} -> {folder}", file=sys.stderr)
    return 0


def _faces(args: argparse.Namespace) -> dict:
    """--target-faces for Reconstructor.reconstruct(_views): the API's default unless given."""
    return {} if args.target_faces is None else {"target_faces": args.target_faces}


@dataclass
class Written:
    """What one reconstruction wrote: per-stage seconds, and the mesh's faces and file size."""

    timings: dict[str, float]
    faces: int | None = None
    mesh_bytes: int | None = None

    def line(self) -> str:
        """'preprocess 0.01s | ... | total 1.23s | 12,345 faces, 0.45 MB'"""
        parts = [f"{k} {v:.2f}s" for k, v in self.timings.items()] + [f"total {sum(self.timings.values()):.2f}s"]
        if self.faces is not None:
            parts.append(f"{self.faces:,} faces, {self.mesh_bytes / 1e6:.2f} MB")
        return " | ".join(parts)


def reconstruct_one(rec, image: Path, folder: Path, args: argparse.Namespace) -> Written:
    from lrm.errors import EmptySurfaceError

    framing = {"remove_bg": not args.no_remove_bg, "recenter": not args.no_recenter}
    try:
        result = rec.reconstruct(image, mesh=not args.no_mesh, texture=args.texture,
                                 texture_resolution=args.texture_resolution, **_faces(args),
                                 photo_colors=args.vertex_colors == "photo", **framing)
    except EmptySurfaceError as exc:
        # keep what the model made (what it saw, the field's views and turntable), then fail:
        # without a completion record, so that a rerun tries again
        write_outputs(rec, rec.reconstruct(image, mesh=False, **framing), folder, args, complete=False)
        kept = "input.png" + (", views" if args.views else "") + (", turntable" if args.video else "")
        raise EmptySurfaceError(f"{exc} ({kept} kept in {folder})") from None
    if result.mesh is not None and fills_box(result.mesh.vertices, rec.model.cfg.field.radius):
        write_outputs(rec, result, folder, args, complete=False)  # kept for a look, not marked done
        raise LRMError(f"the surface fills the field's whole box (density above the iso-level at every wall: "
                       f"the background taken for the object?); try background removal or a higher "
                       f"--mesh-threshold (outputs kept in {folder})")
    return write_outputs(rec, result, folder, args)


def fills_box(vertices, radius: float, margin: float = 0.01) -> bool:
    """vertices: [N, 3] in the model frame -> whether the mesh reaches all six walls of the
    field's box [-radius, radius]³ (within `margin` of the radius): an object framed by the
    preprocessing never does; a field dense everywhere (a cluttered background) does."""
    import numpy as np

    v = np.asarray(vertices)
    return bool(len(v) and (v.min(0) <= -radius * (1 - margin)).all() and (v.max(0) >= radius * (1 - margin)).all())


def write_outputs(rec, result, folder: Path, args: argparse.Namespace, complete: bool = True) -> Written:
    """input.png, the mesh, views and video of one reconstruction; the completion record last
    (not when `complete` is False: a rerun redoes the image)."""
    from lrm.video import save_png, write_video

    timings = dict(result.timings)
    done = Written(timings)
    folder.mkdir(parents=True, exist_ok=True)
    save_png(result.image, folder / "input.png")
    if result.mesh is not None:
        t = time.perf_counter()
        path = result.save_mesh(folder / f"mesh.{args.format}")
        timings["export"] = time.perf_counter() - t
        done.faces, done.mesh_bytes = len(result.mesh.faces), path.stat().st_size
    if args.splat:
        from lrm.splat import write_splat_ply

        t = time.perf_counter()
        one_view = getattr(args, "views_from", None) is None  # photo colours from the one input camera
        photo = result.image if args.vertex_colors == "photo" and one_view else None
        splats = rec.splats(result.planes, args.splat_resolution, photo=photo, mesh=result.mesh)
        write_splat_ply(splats, folder / "splat.ply", result.frame)
        timings["splat"] = time.perf_counter() - t
    if args.views:
        t = time.perf_counter()
        c2w, intr = rec.orbit(args.views)
        rgb = rec.render_views(result.planes, c2w, intr, desc="views")["rgb"]
        (folder / "views").mkdir(exist_ok=True)
        for i, view in enumerate(rgb):
            save_png(view, folder / "views" / f"view_{i:03d}.png")
        timings["views"] = time.perf_counter() - t
    if args.video:
        t = time.perf_counter()
        mesh = result.mesh if args.video_source == "mesh" else None
        rgb = rec.turntable(result.planes, args.video_frames, args.video_size, desc="turntable", mesh=mesh)
        write_video(rgb, folder / "turntable.mp4", fps=30)
        timings["video"] = time.perf_counter() - t
    import json

    if complete:
        (folder / DONE_NAME).write_text(json.dumps(_wanted(args)) + "\n")  # last: the outputs are complete
    return done
