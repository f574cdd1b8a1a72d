"""A local web demo (Gradio): upload a photo, get a mesh viewer, GLB/OBJ/splat downloads and a turntable.

`lrm demo [--model NAME] [--port 7860]`. The work is done by `DemoSession.predict`, which uses
the same `Reconstructor` as the CLI and is tested without Gradio; `build_ui` only wires widgets.
"""

from __future__ import annotations

import io
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from lrm.errors import LRMError
from lrm.pipeline import Reconstructor


@dataclass
class DemoResult:
    preview: np.ndarray  # [S, S, 3] float, what the model saw
    glb: Path  # mesh for the 3D viewer (viewer frame)
    obj: Path  # the same mesh as OBJ, zipped with its .mtl and texture .png when textured (mesh.obj.zip)
    ply: Path  # the same mesh as binary PLY with vertex colours (sampled from the texture when textured)
    splat: Path | None  # Gaussian splats (INRIA .ply), None when the field has no opaque voxel
    video: Path | None  # turntable (mp4, or gif without ffmpeg)
    message: str  # per-stage timings, or the reason a stage failed


@dataclass
class Step:
    """Where a running demo job is: shown in the page's progress bar."""
    text: str
    fraction: float  # of the whole job, in [0, 1]


FRAMES_PER_STEP = 5  # turntable frames between two Steps (a leaving user's job stops within them)


class DemoSession:
    def __init__(self, rec: Reconstructor, workdir: str | Path | None = None, video_size: int | None = None) -> None:
        self.rec = rec
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="lrm-demo-"))
        self.counter = 0  # jobs started
        self.frames_rendered = 0  # turntable frames rendered, over all jobs
        self.video_size = video_size  # turntable side (None: Reconstructor.turntable's default, >= 256)

    def predict(
        self,
        image: np.ndarray,
        remove_bg: bool = True,
        foreground_ratio: float | None = None,
        mesh_resolution: int | None = None,
        texture: bool = False,
        video_frames: int = 30,
    ) -> DemoResult:
        """image: [H, W, 3|4] uint8 -> outputs written under a fresh folder of `workdir`."""
        return _finish(self.predict_steps(image, remove_bg, foreground_ratio, mesh_resolution, texture, video_frames))

    def predict_steps(
        self,
        image: np.ndarray,
        remove_bg: bool = True,
        foreground_ratio: float | None = None,
        mesh_resolution: int | None = None,
        texture: bool = False,
        video_frames: int = 30,
    ) -> Iterator[Step | DemoResult]:
        """`predict` as a generator: a `Step` before each stage and every few turntable frames,
        then the DemoResult. Closing it between steps stops the work there (lrm.demo's UI does
        when the user leaves or cancels, so no abandoned job keeps the worker busy)."""
        if image is None:
            raise LRMError("upload an image first")
        from PIL import Image

        if image.shape[0] * image.shape[1] > Image.MAX_IMAGE_PIXELS:  # Pillow's bomb limit, as for files
            raise LRMError(f"refusing a {image.shape[1]} x {image.shape[0]} image "
                           f"(over {Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP)")
        out = self._fresh()
        if foreground_ratio is not None:
            self.rec.inference.foreground_ratio = foreground_ratio
        yield Step("reconstructing", 0.0)
        result = self.rec.reconstruct(image, remove_bg=remove_bg, mesh_resolution=mesh_resolution,
                                      texture=texture, photo_colors=True)
        yield from self._output_steps(result, out, video_frames, photo_colors=True)

    @property
    def takes_views(self) -> bool:
        """Whether the model takes several posed views (InstantMesh's per-view modulation)."""
        return bool(self.rec.model.cfg.encoder.mod_dim)

    def predict_views(
        self,
        files: list[str | Path] | None,
        mesh_resolution: int | None = None,
        texture: bool = False,
        video_frames: int = 30,
    ) -> DemoResult:
        """`predict_views_steps` run to the end."""
        return _finish(self.predict_views_steps(files, mesh_resolution, texture, video_frames))

    def predict_views_steps(
        self,
        files: list[str | Path] | None,
        mesh_resolution: int | None = None,
        texture: bool = False,
        video_frames: int = 30,
    ) -> Iterator[Step | DemoResult]:
        """Uploaded files -> outputs of one object seen from several posed views: one image is a
        Zero123++ v1.2 sheet; else a transforms.json with its images, or COLMAP's cameras.txt +
        images.txt (or .bin) with the frames (lrm.views)."""
        from lrm.views import ZERO123PP_PREFIX, read_views

        if not self.takes_views:
            raise LRMError(f"model {self.rec.model.cfg.name} takes one view; start the demo with "
                           "--model instant-nerf-base or instant-nerf-large for several")
        paths = [Path(f) for f in files or []]
        if not paths:
            raise LRMError("upload a Zero123++ sheet, or a transforms.json (or COLMAP cameras/images files) "
                           "with its images")
        names = {p.name for p in paths}
        if len(names) != len(paths):
            raise LRMError("two uploaded files have the same name")
        colmap = {"cameras.txt", "images.txt"} <= names or {"cameras.bin", "images.bin"} <= names
        if len(paths) > 1 and not colmap and "transforms.json" not in names:
            raise LRMError("several files need a transforms.json, or COLMAP's cameras.txt + images.txt, "
                           "among them")
        out = self._fresh()  # after the checks: a refused upload leaves no folder behind
        if len(paths) == 1:
            views = read_views(ZERO123PP_PREFIX + str(paths[0]))
        else:
            scene = out / "views"
            for p in paths:
                model_file = colmap and p.name in ("cameras.txt", "images.txt", "cameras.bin", "images.bin",
                                                   "points3D.txt", "points3D.bin")
                dest = scene / ("sparse/0" if model_file else "images" if colmap else "") / p.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(p.read_bytes())
            views = read_views(str(scene))
        yield Step(f"reconstructing from {len(views.images)} views", 0.0)
        result = self.rec.reconstruct_views(views.images, views.cameras16, mesh_resolution=mesh_resolution,
                                            texture=texture)
        for step in self._output_steps(result, out, video_frames, photo_colors=False):
            if isinstance(step, DemoResult):
                step.message = f"{len(views.images)} views | {step.message}"
            yield step

    def _fresh(self) -> Path:
        self.counter += 1
        out = self.workdir / f"{self.counter:04d}"
        out.mkdir(parents=True, exist_ok=True)
        return out

    def _output_steps(self, result, out: Path, video_frames: int,
                      photo_colors: bool) -> Iterator[Step | DemoResult]:
        """GLB, zipped OBJ, PLY, splats and turntable of one reconstruction, into `out`; a Step
        before each stage and every FRAMES_PER_STEP turntable frames, then the DemoResult.
        photo_colors: the splats take the photo's colours, as the mesh did (one view: its image
        was taken by the canonical input camera)."""
        from lrm.mesh.export import export_mesh_files
        from lrm.splat import write_splat_ply
        from lrm.video import write_video

        yield Step("writing the mesh files", 0.4)
        glb = result.save_mesh(out / "mesh.glb")
        obj = _zipped(export_mesh_files(result.mesh, out / "mesh.obj", result.frame))
        ply = result.save_mesh(out / "mesh.ply")
        video = None
        timings = dict(result.timings)
        yield Step("Gaussian splats", 0.5)
        t = time.perf_counter()
        try:
            splats = self.rec.splats(result.planes, 96, photo=result.image if photo_colors else None,
                                     mesh=result.mesh)
            splat = write_splat_ply(splats, out / "splat.ply", result.frame)
            timings["splat"] = time.perf_counter() - t
        except LRMError:  # nothing opaque enough to splat: the mesh and video still come
            splat = None
        if video_frames > 0:
            t = time.perf_counter()
            frames = []
            for frame in self.rec.turntable_frames(result.planes, video_frames, self.video_size, mesh=result.mesh):
                if len(frames) % FRAMES_PER_STEP == 0:
                    yield Step(f"turntable frame {len(frames) + 1}/{video_frames}",
                               0.6 + 0.4 * len(frames) / video_frames)
                frames.append(frame)
                self.frames_rendered += 1
            video = write_video(np.stack(frames), out / "turntable.mp4", fps=min(30, video_frames))
            timings["video"] = time.perf_counter() - t
        message = " | ".join(f"{k} {v:.2f}s" for k, v in timings.items())
        yield DemoResult(result.image, glb, obj, ply, splat, video, message)


def _finish(steps: Iterator[Step | DemoResult]) -> DemoResult:
    """Run a demo generator to its result."""
    for step in steps:
        if isinstance(step, DemoResult):
            return step
    raise AssertionError("a demo generator ended without a result")


def _zipped(files: list[Path]) -> Path:
    """files: a written mesh and the files it refers to (a textured OBJ is three: .obj -> .mtl ->
    texture) -> `<first>.zip` holding them all, so one download carries them. Deflate also shrinks
    OBJ text ~3x."""
    import zipfile

    from lrm.fileio import write_atomic

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, arcname=f.name)
    out = files[0].with_name(files[0].name + ".zip")
    write_atomic(out, buf.getvalue())
    return out


def build_ui(session: DemoSession):
    """Gradio Blocks around `session.predict` (gradio imported lazily: the `demo` extra)."""
    try:
        import gradio as gr
    except ImportError:
        raise LRMError("the demo needs Gradio: pip install 'lrm[demo]'") from None

    def shown(r: DemoResult):
        files = [str(r.glb), str(r.obj), str(r.ply)] + ([str(r.splat)] if r.splat else [])
        return r.preview, str(r.glb), files, str(r.video) if r.video else None, r.message

    def relay(steps: Iterator[Step | DemoResult], progress, page: bool):
        """A generator handler: Gradio stops iterating it when its user leaves or cancels, and
        closing `steps` there stops the work (no zombie job holding the one worker).

        API clients (page=False) get the five outputs. The page (page=True) gets the timings box
        and the DemoResult in a gr.State, which a plain follow-up event (`show`) puts into the
        outputs: a Model3D filled by a generator event shows no viewer in Gradio 6."""
        try:
            for step in steps:
                if isinstance(step, DemoResult):
                    yield (step.message, step) if page else shown(step)
                else:
                    progress(step.fraction, desc=step.text)
                    yield (step.text, None) if page else (gr.skip(),) * 4 + (step.text,)
        except LRMError as exc:
            raise gr.Error(str(exc)) from None
        finally:
            steps.close()

    def one(image, remove_bg, ratio, resolution, texture, frames):
        return session.predict_steps(image, remove_bg, ratio, int(resolution), texture, int(frames))

    def several(uploads, resolution, texture, frames):
        paths = [u if isinstance(u, str) else getattr(u, "name", u) for u in uploads or []]
        return session.predict_views_steps(paths, int(resolution), texture, int(frames))

    def run(image, remove_bg, ratio, resolution, texture, frames, progress=gr.Progress()):
        yield from relay(one(image, remove_bg, ratio, resolution, texture, frames), progress, page=False)

    def run_page(image, remove_bg, ratio, resolution, texture, frames, progress=gr.Progress()):
        yield from relay(one(image, remove_bg, ratio, resolution, texture, frames), progress, page=True)

    def run_views(uploads, resolution, texture, frames, progress=gr.Progress()):
        yield from relay(several(uploads, resolution, texture, frames), progress, page=False)

    def run_views_page(uploads, resolution, texture, frames, progress=gr.Progress()):
        yield from relay(several(uploads, resolution, texture, frames), progress, page=True)

    def show(result: DemoResult | None):
        return shown(result) if result is not None else (gr.skip(),) * 5

    from lrm.device import precision_name

    inf, rec = session.rec.inference, session.rec
    note = f" ({rec.precision_note})" if rec.precision_note else ""
    with gr.Blocks(title="lrm: one image to 3D") as ui:
        gr.Markdown(f"# lrm — one image to 3D\nModel: `{rec.model.cfg.name}` on {rec.device}, precision "
                    f"{precision_name(rec.compute_dtype)}{note}. Use an RGBA image, or let rembg remove "
                    "the background (needs `lrm[rembg]`). Jobs run one at a time; the queue shows your place, "
                    "and a job whose page is closed stops.")
        with gr.Row():
            with gr.Column():
                with gr.Tab("one photo"):
                    image = gr.Image(label="input", type="numpy", image_mode="RGBA")
                    remove_bg = gr.Checkbox(value=True, label="remove background (needs lrm[rembg])")
                    ratio = gr.Slider(0.5, 1.0, value=inf.foreground_ratio, step=0.05, label="foreground ratio")
                    button = gr.Button("reconstruct", variant="primary")
                if session.takes_views:
                    with gr.Tab("several views"):
                        gr.Markdown("A Zero123++ v1.2 sheet (3 x 2 tiles), or a `transforms.json` with its "
                                    "images, or COLMAP's `cameras.txt` + `images.txt` with the frames.")
                        uploads = gr.File(label="views and poses", file_count="multiple")
                        views_button = gr.Button("reconstruct from views", variant="primary")
                # the range holds the model's own default (a slider refuses a value outside it)
                resolution = gr.Slider(min(64, inf.mesh_resolution), max(512, inf.mesh_resolution),
                                       value=inf.mesh_resolution, step=32, label="mesh resolution")
                texture = gr.Checkbox(value=False, label="bake a UV texture")
                frames = gr.Slider(0, 120, value=30, step=1, label="turntable frames (0 = none)")
            with gr.Column():
                preview = gr.Image(label="what the model saw", interactive=False)
                viewer = gr.Model3D(label="mesh")
                files = gr.File(label="download", file_count="multiple")
                video = gr.Video(label="turntable")
                message = gr.Textbox(label="timings", interactive=False)
        examples = sorted(str(p) for p in EXAMPLES.glob("*.png")) if EXAMPLES.is_dir() else []
        if examples:
            gr.Examples(examples=examples, inputs=[image], label="examples (held-out renders)")
        outputs = [preview, viewer, files, video, message]
        job = gr.State()
        # The page's buttons, and the API's endpoints (/run, /run_views) on hidden buttons; all
        # jobs share one worker (concurrency group "model").
        one_inputs = [image, remove_bg, ratio, resolution, texture, frames]
        button.click(run_page, one_inputs, [message, job], api_visibility="private", concurrency_id="model"
                     ).success(show, [job], outputs, queue=False, api_visibility="private")
        gr.Button(visible=False).click(run, one_inputs, outputs, api_name="run", concurrency_id="model")
        if session.takes_views:
            views_inputs = [uploads, resolution, texture, frames]
            views_button.click(run_views_page, views_inputs, [message, job], api_visibility="private",
                               concurrency_id="model").success(show, [job], outputs, queue=False,
                                                               api_visibility="private")
            gr.Button(visible=False).click(run_views, views_inputs, outputs, api_name="run_views",
                                           concurrency_id="model")
    return ui


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"  # in a source checkout


def launch(ui, host: str, port: int, max_upload_mb: float = 20.0, max_queue: int = 64, **kw) -> None:
    """Serve `ui`: one job at a time (the CPU is the limit; more would only slow each other),
    up to `max_queue` waiting with their place shown, uploads above `max_upload_mb` refused, and
    images over Pillow's 89 MP bomb limit refused before they are decoded (the warning Pillow
    gives between 89 and 179 MP becomes an error in this process)."""
    import warnings

    from PIL import Image

    warnings.simplefilter("error", Image.DecompressionBombWarning)
    ui.queue(max_size=max_queue, default_concurrency_limit=1).launch(
        server_name=host, server_port=port, max_file_size=f"{max_upload_mb:g}mb", **kw)
