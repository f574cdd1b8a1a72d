"""Image -> triplane -> mesh / views: the library API behind `lrm reconstruct`, the demo and
`lrm evaluate`.

    import lrm
    rec = lrm.Reconstructor("default")                # or "openlrm-mix-base", "triposr", a folder
    rec.reconstruct("photo.png").save_mesh("out.glb")
"""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from lrm import cameras
from lrm.device import Precision, autocast, choose_precision, configure_allocator, resolve_device
from lrm.errors import LRMError
from lrm.hub import load_model
from lrm.model.lrm import LRM, InferenceConfig
from lrm.preprocess import REMBG_MODEL, ImageInput, prepare
from lrm.probe import model_shape

if TYPE_CHECKING:
    from lrm.mesh.types import Mesh
    from lrm.splat import Splats

TARGET_FACES = 100_000  # meshes above this are decimated (quadric error) by default; 0 keeps every face
TURNTABLE_MIN_SIZE = 256  # turntables are rendered at least this large, whatever the model's render size
MESH_SHADING = 0.5  # headlight strength of mesh turntables (0: flat vertex colours), as in evaluation sheets
MESH_SUPERSAMPLE = 2  # mesh turntable frames: samples per pixel per axis (antialiased edges; 1: none)
OCCUPANCY_RESOLUTION = 64  # cells per side of the empty-space grid used when rendering (fast mode)


@dataclass
class Reconstruction:
    planes: torch.Tensor  # [1, 3, C, h, w] float32
    image: np.ndarray  # [S, S, 3] the model input, float in [0, 1]
    mesh: "Mesh | None"  # in the model's world frame (Z up); None when not extracted
    frame: np.ndarray  # [3, 3] world -> viewer frame (glTF: Y up, photo camera on +Z)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds

    def save_mesh(self, path: str | Path) -> Path:
        """Write the mesh (.glb/.obj/.ply by suffix) in the viewer frame."""
        from lrm.mesh.export import export_mesh

        if self.mesh is None:
            raise ValueError("no mesh was extracted (reconstruct(..., mesh=True))")
        return export_mesh(self.mesh, path, frame=self.frame)


class Reconstructor:
    """Holds a loaded model and runs the reconstruction stages on it.

    model: an LRM, or a name for `lrm.hub.load_model` ("default", a preset alias, hub id, folder).
    device: "auto" | "cpu" | "cuda[:N]"; dtype: "auto" (the default, as in `lrm reconstruct` and
    `lrm demo`: the fastest precision measured on this machine) | "fp32" (exact) | "bf16" |
    "int8" (CPU), the precision of the image -> triplane forward pass (lrm.device).
    exact: the reference code path everywhere (the published numerics with dtype fp32). Otherwise
    the field is queried with `FoldedField` (equal to float round-off), rendering skips empty
    space (`lrm.render.occupancy`, each pixel within ~3e-3) and meshes are extracted coarse to
    fine; see docs/performance.md.
    `self.inference` holds the per-family defaults (a copy of the model's); override its fields.
    An int8 dtype quantises the model's Linear layers in place (pass a copy to keep the original).
    """

    def __init__(self, model: LRM | str = "default", device: str = "auto", dtype: Precision = "auto",
                 exact: bool = False) -> None:
        self.device = resolve_device(device)
        if exact and dtype == "auto":
            dtype = "fp32"
        if self.device.type == "cpu":
            configure_allocator()
        if isinstance(model, LRM):
            self.model = model.to(self.device).eval()
        else:
            self.model = load_model(model, device=self.device)
        self.compute_dtype, self.precision_note = choose_precision(
            dtype, self.device, model_shape(self.model.cfg.transformer))
        if self.compute_dtype == torch.int8:
            from lrm.model.quant import is_quantized, quantize_

            if not is_quantized(self.model):
                quantize_(self.model)
        self.exact = exact
        self.rembg_model = REMBG_MODEL  # background-removal model for images without alpha
        self.preprocess_style = "lrm"  # or an upstream's: lrm.preprocess_upstream.STYLES
        self._fast: dict = {}  # cache of fast_field
        self.inference: InferenceConfig = dataclasses.replace(self.model.cfg.inference)

    @contextmanager
    def _amp(self) -> Iterator[None]:
        with torch.inference_mode(), autocast(self.device, self.compute_dtype):
            yield

    # --- stages ------------------------------------------------------------------------
    def preprocess(self, image: ImageInput, remove_bg: bool = True, recenter: bool = True) -> np.ndarray:
        """-> model input rgb [S, S, 3] float32 in [0, 1]; `self.preprocess_style` other than "lrm"
        reproduces an upstream's preprocessing (lrm.preprocess_upstream; `recenter` is then theirs)."""
        inf = self.inference
        if self.preprocess_style != "lrm":
            from lrm.preprocess_upstream import prepare_upstream

            return prepare_upstream(image, self.preprocess_style, inf.source_size, inf.foreground_ratio,
                                    remove_bg=remove_bg, rembg_model=self.rembg_model, recenter=recenter)
        rgb, _ = prepare(image, inf.source_size, inf.condition_background, inf.foreground_ratio,
                         remove_bg=remove_bg, do_recenter=recenter, rembg_model=self.rembg_model)
        return rgb

    def encode(self, image: np.ndarray, source_distance: float | None = None) -> torch.Tensor:
        """image: [S, S, 3] float in [0, 1] -> planes [1, 3, C, h, w] float32"""
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(self.device)
        cams = None
        if self.model.camera_embedder is not None:
            d = self.inference.source_distance if source_distance is None else source_distance
            cams = self.model.source_camera(1, d).to(self.device)
        with self._amp():
            planes = self.model(x, cams)
        return planes.float()

    def fast_field(self, planes: torch.Tensor, occupancy: bool = False):
        """The inference field of `planes` [1, 3, C, h, w] -> (FoldedField, OccupancyGrid or None),
        cached for the last planes seen (the grid is built on the first render)."""
        from lrm.model.fastfield import FoldedField
        from lrm.render.occupancy import occupancy_grid, skip_threshold

        key = (id(planes), planes.data_ptr())
        if self._fast.get("key") != key:  # "planes" is kept so that its id is not reused
            self._fast = {"key": key, "planes": planes, "folded": FoldedField(self.model.field, planes)}
        folded = self._fast["folded"]
        if occupancy and "grid" not in self._fast:
            self._fast["grid"] = occupancy_grid(
                lambda xyz: self.model.field.density(folded(xyz[None])[0][0]), self.model.cfg.field.radius,
                OCCUPANCY_RESOLUTION, skip_threshold(self.model.cfg.render), device=planes.device)
        return folded, self._fast.get("grid")

    def density_fn(self, planes: torch.Tensor):
        """xyz [N, 3] world -> activated density [N] (float32)."""
        if not self.exact:
            folded = self.fast_field(planes)[0]
            return lambda xyz: self.model.field.density(folded(xyz.to(self.device)[None])[0][0])

        def fn(xyz: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():  # the field runs in fp32 whatever the forward's dtype
                return self.model.query(planes, xyz.to(self.device)[None])[0][0].float()
        return fn

    def color_fn(self, planes: torch.Tensor):
        """xyz [N, 3] world -> rgb [N, 3] in [0, 1] (float32)."""
        if not self.exact:
            folded = self.fast_field(planes)[0]
            return lambda xyz: folded(xyz.to(self.device)[None])[1][0].clamp(0, 1)

        def fn(xyz: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return self.model.query(planes, xyz.to(self.device)[None])[1][0].float().clamp(0, 1)
        return fn

    def extract_mesh(
        self, planes: torch.Tensor, resolution: int | None = None, threshold: float | None = None,
        texture: bool = False, texture_resolution: int = 1024, target_faces: int = TARGET_FACES,
    ) -> "Mesh":
        """planes: [1, 3, C, h, w] -> Mesh in the world frame (vertex colours, or a baked texture).
        Pieces smaller than `inference.min_piece` of the largest are dropped (floaters,
        lrm.mesh.components). A marching-cubes mesh above `target_faces` faces (0: no limit) is
        decimated to about that many (quadric error, lrm.mesh.simplify) and its colours are read
        from the field again."""
        from lrm.mesh.components import drop_small_pieces
        from lrm.mesh.extract import extract_mesh, vertex_colors
        from lrm.mesh.simplify import simplify_mesh

        inf = self.inference
        mesh = extract_mesh(
            self.density_fn(planes),
            resolution or inf.mesh_resolution,
            self.model.cfg.field.radius,
            inf.mesh_threshold if threshold is None else threshold,
            method="dense" if self.exact else "sparse",
        )
        mesh = drop_small_pieces(mesh, inf.min_piece)
        if target_faces and len(mesh.faces) > target_faces:
            mesh = simplify_mesh(mesh, target_faces)
        mesh = dataclasses.replace(mesh, colors=vertex_colors(self.color_fn(planes), mesh.vertices))  # once, at the end
        if texture:
            from lrm.mesh.texture import bake_texture

            mesh = bake_texture(mesh, self.color_fn(planes), resolution=texture_resolution)
        return mesh

    def splats(self, planes: torch.Tensor, resolution: int = 128, level: float | None = None,
               photo: np.ndarray | None = None, mesh: Mesh | None = None,
               source_distance: float | None = None) -> "Splats":
        """planes: [1, 3, C, h, w] -> Gaussian splats on the field's iso-surface at `level` (default:
        the mesh threshold, so splats and mesh show one surface; lrm.splat). With `photo` (the
        image the model saw, Reconstruction.image), splat colours come from it where the input
        camera sees them squarely, as `photo_colors` does for meshes; `mesh` (this
        reconstruction's, world frame) hides what it does not see, else one is extracted."""
        from lrm.splat import splats_from_field

        level = self.inference.mesh_threshold if level is None else level
        splats = splats_from_field(self.density_fn(planes), self.color_fn(planes), self.model.cfg.field.radius,
                                   level, resolution)
        if photo is not None and len(splats.xyz):
            from lrm.mesh.photo_colors import photo_point_colors

            surface = mesh if mesh is not None else self.extract_mesh(planes, resolution, level, target_faces=0)
            splats.rgb = photo_point_colors(splats.xyz, splats.normal, splats.rgb, surface, photo,
                                            *self._input_camera(source_distance))
        return splats

    def orbit(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Turntable cameras starting at the input view. -> c2w [n, 4, 4], intrinsics [n, 4]"""
        inf = self.inference
        c2w = cameras.orbit_cameras(n, inf.view_distance, inf.view_elevation, inf.front_azimuth)
        return c2w, cameras.intrinsics(inf.view_focal, n)

    def turntable(self, planes: torch.Tensor, frames: int, size: int | None = None, desc: str = "",
                  mesh: Mesh | None = None, supersample: int = MESH_SUPERSAMPLE) -> np.ndarray:
        """planes: [1, 3, C, h, w] -> [frames, S, S, 3] float frames of an orbit starting at the
        input view; S = size, by default TURNTABLE_MIN_SIZE or the model's render size if larger.

        With a `mesh` that has vertex colours (this reconstruction's, in the model frame), the
        frames show that mesh, rasterised with a half-strength headlight and `supersample`²
        samples per pixel: what the user downloads, several times faster than volume rendering
        the field (benchmarks/bench_turntable.py).
        Without one (or with a mesh without vertex colours) the field is rendered. With `desc`,
        a progress bar of that name counts the frames."""
        from lrm.progress import bar

        progress = bar(frames, desc, unit="frame")
        out = []
        for frame in self.turntable_frames(planes, frames, size, mesh, supersample):
            out.append(frame)
            progress.update(1)
        progress.close()
        return np.stack(out)

    def turntable_frames(self, planes: torch.Tensor, frames: int, size: int | None = None,
                         mesh: Mesh | None = None, supersample: int = MESH_SUPERSAMPLE) -> Iterator[np.ndarray]:
        """`turntable`'s frames one at a time, [S, S, 3] float each: a caller may stop between
        frames (the demo does when its user leaves)."""
        c2w, intr = self.orbit(frames)
        size = size or max(TURNTABLE_MIN_SIZE, self.inference.render_size)
        if mesh is None or mesh.colors is None:
            for rgb, _ in self._render_batches(planes, c2w, intr, size, self.inference.render_background):
                yield from rgb
            return
        from lrm.mesh.view_render import rasterize

        for i in range(frames):
            yield rasterize(mesh.vertices, mesh.faces, mesh.colors, c2w[i].numpy(), intr[i].numpy(), size,
                            background=self.inference.render_background, shading=MESH_SHADING,
                            supersample=supersample)[0]

    def render_views(
        self, planes: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor, size: int | None = None,
        background: float | None = None, batch: int = 2, desc: str = "",
    ) -> dict[str, np.ndarray]:
        """planes: [1, 3, C, h, w]; c2w: [V, 4, 4]; intrinsics: [V, 4]
        -> {"rgb": [V, H, W, 3] float in [0, 1], "opacity": [V, H, W]}. With `desc`, a progress
        bar of that name counts the frames (lrm.progress)."""
        from lrm.progress import bar

        bg = self.inference.render_background if background is None else background
        rgbs, alphas = [], []
        frames = bar(c2w.shape[0], desc, unit="frame")
        for rgb, alpha in self._render_batches(planes, c2w, intrinsics, size or self.inference.render_size, bg, batch):
            rgbs.append(rgb)
            alphas.append(alpha)
            frames.update(len(rgb))
        frames.close()
        return {"rgb": np.concatenate(rgbs), "opacity": np.concatenate(alphas)}

    def _render_batches(self, planes: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor, size: int,
                        background: float, batch: int = 2) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Volume renders of the views, `batch` at a time: rgb [b, S, S, 3], opacity [b, S, S]"""
        fast = {}
        if not self.exact:
            folded, grid = self.fast_field(planes, occupancy=True)
            fast = {"query": folded, "occupied": grid}
        for i in range(0, c2w.shape[0], batch):
            with torch.inference_mode():  # fp32: rays and compositing are precision-sensitive
                out = self.model.render(planes, c2w[None, i : i + batch].to(self.device),
                                        intrinsics[None, i : i + batch].to(self.device), size, background=background,
                                        **fast)
            yield (out["rgb"][0].permute(0, 2, 3, 1).float().clamp(0, 1).cpu().numpy(),
                   out["opacity"][0, :, 0].float().cpu().numpy())

    def reconstruct(
        self,
        image: ImageInput,
        *,
        remove_bg: bool = True,
        recenter: bool = True,
        source_distance: float | None = None,
        mesh: bool = True,
        mesh_resolution: int | None = None,
        mesh_threshold: float | None = None,
        texture: bool = False,
        texture_resolution: int = 1024,
        target_faces: int = TARGET_FACES,
        photo_colors: bool = False,
    ) -> Reconstruction:
        """One image -> planes (+ mesh), with per-stage timings. target_faces: see extract_mesh;
        photo_colors: vertex colours from the input photo where it sees the mesh (see
        `photo_colors`)."""
        timings: dict[str, float] = {}
        t = time.perf_counter()
        rgb = self.preprocess(image, remove_bg=remove_bg, recenter=recenter)
        timings["preprocess"] = time.perf_counter() - t
        t = time.perf_counter()
        planes = self.encode(rgb, source_distance)
        timings["encode"] = time.perf_counter() - t
        result = self._with_mesh(planes, rgb, self.inference.front_azimuth, timings, mesh, mesh_resolution,
                                 mesh_threshold, texture, texture_resolution, target_faces)
        if photo_colors and result.mesh is not None:
            t = time.perf_counter()
            result.mesh = self.photo_colors(result.mesh, rgb, source_distance)
            timings["photo colours"] = time.perf_counter() - t
        return result

    def photo_colors(self, mesh: Mesh, image: np.ndarray, source_distance: float | None = None) -> Mesh:
        """mesh: this model's reconstruction (world frame); image: [S, S, 3] the input it saw
        (Reconstruction.image) -> the mesh with the photo's colours where the input camera (the
        canonical one at `source_distance`) sees it squarely (lrm.mesh.photo_colors)."""
        from lrm.mesh.photo_colors import photo_colors

        return photo_colors(mesh, image, *self._input_camera(source_distance))

    def _input_camera(self, source_distance: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The camera a single input image is taken to be seen from: the canonical one at
        `source_distance` (default: the model's). -> c2w [4, 4], normalised intrinsics [4]"""
        inf = self.inference
        c2w = cameras.canonical_c2w(inf.source_distance if source_distance is None else source_distance)
        return c2w.numpy(), cameras.intrinsics(inf.source_focal)[0].numpy()

    def _with_mesh(self, planes: torch.Tensor, image: np.ndarray, azimuth: float, timings: dict[str, float],
                   mesh: bool, resolution: int | None, threshold: float | None, texture: bool,
                   texture_resolution: int, target_faces: int) -> Reconstruction:
        """The mesh stage shared by one and several views; `azimuth` of the input camera sets the
        output frame."""
        out_mesh = None
        if mesh:
            t = time.perf_counter()
            out_mesh = self.extract_mesh(planes, resolution, threshold, texture, texture_resolution, target_faces)
            timings["mesh"] = time.perf_counter() - t
        frame = cameras.world_to_view_frame(azimuth).numpy()
        return Reconstruction(planes, image, out_mesh, frame, timings)

    def reconstruct_views(
        self,
        images: list[ImageInput],
        cameras16: torch.Tensor,
        *,
        mesh: bool = True,
        mesh_resolution: int | None = None,
        mesh_threshold: float | None = None,
        texture: bool = False,
        texture_resolution: int = 1024,
        target_faces: int = TARGET_FACES,
    ) -> Reconstruction:
        """Several posed views of one object -> planes (+ mesh). images: V square images (alpha is
        composited on the model's background, no recentring: the poses fix the framing);
        cameras16: [V, 16] in the model's world (lrm.views). Needs a model that takes several
        views (InstantMesh); the output frame faces view 0."""
        if len(images) != cameras16.shape[0] or cameras16.shape[-1:] != (16,):
            raise LRMError(f"{len(images)} views but cameras of shape {tuple(cameras16.shape)}")
        inf = self.inference
        timings: dict[str, float] = {}
        t = time.perf_counter()
        rgbs = [prepare(img, inf.source_size, inf.condition_background, 1.0, remove_bg=False, do_recenter=False)[0]
                for img in images]
        timings["preprocess"] = time.perf_counter() - t
        t = time.perf_counter()
        x = torch.from_numpy(np.stack(rgbs)).permute(0, 3, 1, 2)[None].to(self.device)  # [1, V, 3, S, S]
        with self._amp():
            planes = self.model(x, cameras16[None].to(self.device)).float()
        timings["encode"] = time.perf_counter() - t
        pos = cameras16[0, [3, 7, 11]]
        azimuth = math.degrees(math.atan2(float(pos[1]), float(pos[0])))
        return self._with_mesh(planes, rgbs[0], azimuth, timings, mesh, mesh_resolution, mesh_threshold, texture,
                               texture_resolution, target_faces)
