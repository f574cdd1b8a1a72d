"""Headless CPU rasterizer for training renders: OpenGL 3.3 through moderngl on EGL (Mesa llvmpipe).

Why this renderer (measured on the 2-core CI machine, see docs/data.md): 2–7 ms per view at
256²–512² against 11–80 ms for pyrender and 0.1–4 s for Blender or Mitsuba. It needs the Debian
packages `libegl1 libegl-mesa0 libgl1-mesa-dri libgles2` and `pip install moderngl`.

Shading is "albedo under soft, world-fixed light" so that colour ≈ albedo and every view of an
object agrees (the LRM decoder has no view dependence): colour = albedo · (ambient + key·max(n·l, 0)
+ sky·(n_z + 1)/2), n the geometric normal turned towards the camera (two-sided). `LightConfig`
holds the weights; `ambient=1, key=sky=0` renders pure albedo.

Anti-aliasing by supersampling: each view is drawn at `supersample` times the resolution per
axis, then a resolve pass averages every block's covered samples' colours (straight,
non-premultiplied RGB) and writes alpha = the fraction of covered samples. On llvmpipe this is
1.8x faster than 4x MSAA at the same 4 samples per pixel (MSAA rasterizes per sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from lrm.data.mesh import AssetMesh
from lrm.errors import LRMError

_VERTEX = """
#version 330
uniform mat4 mvp;
in vec3 in_pos; in vec2 in_uv; in vec4 in_color;
out vec3 v_pos; out vec2 v_uv; out vec4 v_color;
void main() { v_pos = in_pos; v_uv = in_uv; v_color = in_color; gl_Position = mvp * vec4(in_pos, 1.0); }
"""
_FRAGMENT = """
#version 330
uniform sampler2D tex; uniform bool use_tex; uniform float cutoff;
uniform vec3 light_dir; uniform vec3 weights;  // ambient, key, sky
in vec3 v_pos; in vec2 v_uv; in vec4 v_color;
out vec4 f_color;
void main() {
    vec4 albedo = v_color;
    if (use_tex) albedo *= texture(tex, v_uv);
    if (albedo.a < cutoff) discard;
    vec3 n = normalize(cross(dFdx(v_pos), dFdy(v_pos)));  // faces the camera: two-sided
    float shade = weights.x + weights.y * max(dot(n, light_dir), 0.0) + weights.z * 0.5 * (n.z + 1.0);
    f_color = vec4(clamp(albedo.rgb * shade, 0.0, 1.0), 1.0);
}
"""

# Resolve pass: one full-screen triangle; straight colour = coverage-weighted mean of the samples.
_RESOLVE_VERTEX = """
#version 330
void main() { vec2 p = vec2((gl_VertexID << 1) & 2, gl_VertexID & 2); gl_Position = vec4(2.0 * p - 1.0, 0.0, 1.0); }
"""
_RESOLVE_FRAGMENT = """
#version 330
uniform sampler2D big; uniform int factor;
out vec4 f_color;
void main() {
    ivec2 p = ivec2(gl_FragCoord.xy) * factor;
    vec3 rgb = vec3(0.0); float a = 0.0;
    for (int i = 0; i < factor; i++)
        for (int j = 0; j < factor; j++) { vec4 c = texelFetch(big, p + ivec2(i, j), 0); rgb += c.rgb * c.a; a += c.a; }
    f_color = a > 0.0 ? vec4(rgb / a, a / float(factor * factor)) : vec4(0.0);
}
"""


@dataclass
class LightConfig:
    ambient: float = 0.6  # light reaching every surface, as a fraction of albedo
    key: float = 0.25  # weight of the fixed directional key light
    sky: float = 0.15  # weight of the hemispherical sky term (n_z + 1) / 2, brightens tops
    direction: tuple[float, float, float] = (-0.35, -0.6, 0.72)  # key light direction (towards it)


def projection(intrinsics: np.ndarray, near: float, far: float) -> np.ndarray:
    """OpenGL clip matrix of normalised intrinsics (fx, fy, cx, cy): [4] -> [4, 4].

    Image column u/W = fx·x/(-z) + cx and row v/H = cy - fy·y/(-z), row 0 at the top.
    """
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    return np.array([
        [2 * fx, 0, 1 - 2 * cx, 0],
        [0, 2 * fy, 2 * cy - 1, 0],
        [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
        [0, 0, -1, 0],
    ], np.float64)


class GLRenderer:
    """Renders meshes to RGBA at one resolution. One EGL context per process, made on first use."""

    def __init__(self, resolution: int, supersample: int = 2, light: LightConfig | None = None):
        self.resolution, self.supersample, self.light = resolution, supersample, light or LightConfig()
        self._ctx = None

    def _setup(self) -> None:
        try:
            import moderngl
        except ImportError as exc:
            raise LRMError("rendering needs moderngl: pip install 'lrm[data]'") from exc
        try:
            ctx = moderngl.create_standalone_context(backend="egl")
        except Exception as exc:
            raise LRMError("cannot open a headless EGL context; install the Debian packages libegl1 "
                           f"libegl-mesa0 libgl1-mesa-dri libgles2 ({exc})") from exc
        r, big = self.resolution, self.resolution * max(1, self.supersample)
        self._prog = ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        self._big_color = ctx.texture((big, big), 4)
        self._big = ctx.framebuffer(self._big_color, ctx.depth_renderbuffer((big, big)))
        self._resolve = ctx.program(vertex_shader=_RESOLVE_VERTEX, fragment_shader=_RESOLVE_FRAGMENT)
        self._resolve["factor"].value = max(1, self.supersample)
        self._resolve_vao = ctx.vertex_array(self._resolve, [])
        self._resolved = ctx.framebuffer(ctx.renderbuffer((r, r), 4))
        self._white = ctx.texture((1, 1), 4, bytes([255] * 4))
        light = np.asarray(self.light.direction, np.float64)
        self._prog["light_dir"].value = tuple(light / np.linalg.norm(light))
        self._prog["weights"].value = (self.light.ambient, self.light.key, self.light.sky)
        self._ctx = ctx

    def render(self, mesh: AssetMesh, c2w: np.ndarray, intrinsics: np.ndarray,
               near: float = 0.05, far: float = 20.0) -> np.ndarray:
        """mesh in world coordinates; c2w: [V, 4, 4] OpenGL; intrinsics: [V, 4] normalised.

        Returns RGBA [V, H, W, 4] uint8 with straight alpha, row 0 = top of the image.
        """
        assert c2w.ndim == 3 and c2w.shape[1:] == (4, 4) and intrinsics.shape == (len(c2w), 4)
        if self._ctx is None:
            self._setup()
        with self._ctx:  # make this renderer's context current (several may live in one process)
            return self._render(mesh, c2w, intrinsics, near, far)

    def _render(self, mesh: AssetMesh, c2w: np.ndarray, intrinsics: np.ndarray, near: float, far: float) -> np.ndarray:
        ctx = self._ctx
        draws = [self._upload(part) for part in mesh.parts if len(part.faces)]
        out = np.empty((len(c2w), self.resolution, self.resolution, 4), np.uint8)
        try:
            for v in range(len(c2w)):
                mvp = projection(intrinsics[v], near, far) @ np.linalg.inv(c2w[v].astype(np.float64))
                self._prog["mvp"].write(mvp.T.astype("f4").tobytes())  # GLSL reads column-major
                self._big.use()
                self._big.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
                ctx.enable(ctx.DEPTH_TEST)
                for vao, tex, cutoff, _ in draws:
                    self._prog["use_tex"].value = tex is not None
                    self._prog["cutoff"].value = -1.0 if cutoff is None else cutoff
                    (tex if tex is not None else self._white).use(0)
                    vao.render()
                ctx.disable(ctx.DEPTH_TEST)
                self._resolved.use()
                self._big_color.use(0)
                self._resolve_vao.render(vertices=3)
                raw = np.frombuffer(self._resolved.read(components=4), np.uint8)
                out[v] = raw.reshape(self.resolution, self.resolution, 4)[::-1]
        finally:
            for vao, tex, _, buffers in draws:
                for obj in (vao, tex, *buffers):
                    if obj is not None:
                        obj.release()
        return out

    def _upload(self, part):
        ctx, n = self._ctx, len(part.positions)
        uv = part.uv if part.uv is not None and part.texture is not None else np.zeros((n, 2), np.float32)
        col = part.colors if part.colors is not None else np.ones((n, 4), np.float32)
        data = np.concatenate([part.positions, uv, col], axis=1).astype("f4")
        vbo = ctx.buffer(data.tobytes())
        ibo = ctx.buffer(np.ascontiguousarray(part.faces, dtype="u4").tobytes())
        vao = ctx.vertex_array(self._prog, [(vbo, "3f 2f 4f", "in_pos", "in_uv", "in_color")], ibo)
        tex = None
        if part.texture is not None and part.uv is not None:
            img = np.ascontiguousarray(part.texture[::-1])  # GL textures start at the bottom row
            tex = ctx.texture((img.shape[1], img.shape[0]), 4, img.tobytes())
            tex.build_mipmaps()
            tex.filter = (ctx.LINEAR_MIPMAP_LINEAR, ctx.LINEAR)
        return vao, tex, part.alpha_cutoff, (vbo, ibo)


@lru_cache(maxsize=1)
def egl_error() -> str | None:
    """None if this machine can render (moderngl + a headless EGL context), else the reason."""
    try:
        GLRenderer(8)._setup()
    except LRMError as exc:
        return str(exc)
    return None
