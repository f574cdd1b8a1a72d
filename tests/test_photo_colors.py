"""Vertex colours from the input photo (lrm.mesh.photo_colors), checked on hand-built scenes."""

from pathlib import Path

import numpy as np

from lrm import cameras
from lrm.mesh.photo_colors import photo_colors
from lrm.mesh.types import Mesh

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fire_extinguisher.png"
C2W = cameras.canonical_c2w(2.0).numpy().astype(np.float64)  # at (0, -2, 0), looking along +Y
INTR = cameras.intrinsics(0.75)[0].numpy().astype(np.float64)
GREY = 0.5


def _grid(centre, u, v, n: int = 9, half: float = 0.4) -> Mesh:
    """An n x n vertex grid spanning centre ± half·u ± half·v, grey, faces wound so that their
    normal is u x v."""
    s = np.linspace(-half, half, n)
    a, b = np.meshgrid(s, s, indexing="ij")
    verts = np.asarray(centre) + a.reshape(-1, 1) * np.asarray(u) + b.reshape(-1, 1) * np.asarray(v)
    i = np.arange(n - 1)[:, None] * n + np.arange(n - 1)[None, :]
    faces = np.concatenate([np.stack([i, i + n, i + n + 1], -1).reshape(-1, 3),
                            np.stack([i, i + n + 1, i + 1], -1).reshape(-1, 3)])
    return Mesh(verts, faces, colors=np.full((n * n, 3), GREY, np.float32))


def _photo(size: int = 64) -> np.ndarray:
    """Left half red, right half blue."""
    img = np.zeros((size, size, 3), np.float32)
    img[:, : size // 2] = [1, 0, 0]
    img[:, size // 2:] = [0, 0, 1]
    return img


def _facing(centre=(0.0, 0.0, 0.0)) -> Mesh:
    # normal u x v = X x Z = -Y: towards the camera
    return _grid(centre, (1, 0, 0), (0, 0, 1))


def test_a_square_facing_the_camera_takes_the_photo():
    mesh = _facing()
    out = photo_colors(mesh, _photo(), C2W, INTR)
    x = mesh.vertices[:, 0]
    left, right = x < -0.05, x > 0.05  # clear of the red/blue edge (bilinear mixes one pixel)
    np.testing.assert_allclose(out.colors[left], np.broadcast_to([1, 0, 0], (left.sum(), 3)), atol=1e-6)
    np.testing.assert_allclose(out.colors[right], np.broadcast_to([0, 0, 1], (right.sum(), 3)), atol=1e-6)
    np.testing.assert_array_equal(out.vertices, mesh.vertices)
    np.testing.assert_array_equal(mesh.colors, GREY)  # the input mesh is not modified


def test_hidden_vertices_keep_the_field_colour():
    front, back = _facing((0, 0, 0)), _facing((0, 0.5, 0))  # back: the same square 0.5 further away
    both = Mesh(np.concatenate([front.vertices, back.vertices]),
                np.concatenate([front.faces, back.faces + len(front.vertices)]),
                colors=np.full((2 * len(front.vertices), 3), GREY, np.float32))
    out = photo_colors(both, _photo(), C2W, INTR)
    n = len(front.vertices)
    # the back square projects smaller (it is further), entirely behind the front one
    np.testing.assert_array_equal(out.colors[n:], GREY)
    assert (np.abs(out.colors[:n] - GREY).max(1) > 0.4).all()
    # without the front square, the back one is seen
    alone = photo_colors(back, _photo(), C2W, INTR)
    assert (np.abs(alone.colors - GREY).max(1) > 0.4).all()


def test_oblique_surfaces_blend_by_the_view_cosine():
    # a square turned about Z so that its normal makes angle t with the direction to the camera;
    # grazing 0.15 and square 0.5: weight = (cos - 0.15) / 0.35 on [0, 1]
    for t_deg in (85.0, 70.0, 10.0):
        t = np.radians(t_deg)
        n = np.array([np.sin(t), -np.cos(t), 0.0])  # unit normal, tilted from -Y towards +X
        u = np.array([0.0, 0.0, 1.0])
        v = np.cross(n, u)  # u x v = n
        mesh = _grid((0, 0, 0), u, v, n=5, half=0.1)
        out = photo_colors(mesh, np.full((64, 64, 3), 1.0, np.float32), C2W, INTR)  # a white photo
        eye = C2W[:3, 3]
        to_eye = (eye - mesh.vertices) / np.linalg.norm(eye - mesh.vertices, axis=1, keepdims=True)
        cos = to_eye @ n
        w = np.clip((cos - 0.15) / 0.35, 0, 1)
        np.testing.assert_allclose(out.colors[:, 0], GREY + (1 - GREY) * w, atol=2e-3)
        if t_deg == 85.0:
            assert (w == 0).all() and (out.colors == GREY).all()
        if t_deg == 10.0:
            assert (w == 1).all()
        if t_deg == 70.0:
            assert 0.4 < w.min() and w.max() < 0.7  # a real blend


def test_no_vertex_colours_and_no_faces_are_left_alone():
    mesh = _facing()
    plain = Mesh(mesh.vertices, mesh.faces)
    assert photo_colors(plain, _photo(), C2W, INTR) is plain
    empty = Mesh(np.zeros((3, 3)), np.zeros((0, 3), np.int64), colors=np.full((3, 3), GREY, np.float32))
    np.testing.assert_array_equal(photo_colors(empty, _photo(), C2W, INTR).colors, GREY)


def test_the_bundled_model_mesh_shows_the_photo_from_the_input_view():
    """The fire-extinguisher cabinet is red: from the input camera, the mesh with photo colours
    matches the photo far better than the colour field's (measured 0.03 against 0.15)."""
    from lrm.mesh.view_render import rasterize
    from lrm.pipeline import Reconstructor

    rec = Reconstructor("default", device="cpu", dtype="fp32")
    field = rec.reconstruct(str(EXAMPLE))
    photo = rec.reconstruct(str(EXAMPLE), photo_colors=True)
    np.testing.assert_array_equal(photo.mesh.vertices, field.mesh.vertices)
    inf = rec.inference
    c2w = cameras.canonical_c2w(inf.source_distance).numpy()
    intr = cameras.intrinsics(inf.source_focal)[0].numpy()
    size = photo.image.shape[0]
    errs = []
    for mesh in (field.mesh, photo.mesh):
        rgb, alpha = rasterize(mesh.vertices, mesh.faces, mesh.colors, c2w, intr, size)
        both = alpha > 0
        errs.append(float(np.abs(rgb[both] - photo.image[both]).mean()))
    assert errs[1] < 0.5 * errs[0], errs
    # and it is red where the cabinet is: the mean colour of the mesh seen from the front
    rgb, alpha = rasterize(photo.mesh.vertices, photo.mesh.faces, photo.mesh.colors, c2w, intr, size)
    r, g, b = rgb[alpha > 0].mean(0)
    assert r > 1.5 * g and r > 1.5 * b, (r, g, b)


def test_a_texture_takes_the_photo_too():
    """A textured square (uv = its x, z scaled to [0, 1]): texels left of the middle column are
    red, right of it blue, as the photo; its vertex colours change as in the untextured case."""
    mesh = _facing()
    uv = (mesh.vertices[:, [0, 2]] + 0.4) / 0.8
    textured = Mesh(mesh.vertices, mesh.faces, mesh.colors, uv, np.full((32, 32, 3), 128, np.uint8))
    out = photo_colors(textured, _photo(), C2W, INTR)
    assert out.texture.shape == (32, 32, 3) and out.texture.dtype == np.uint8
    np.testing.assert_array_equal(textured.texture, 128)  # not modified in place
    left, right = out.texture[:, 2:14].reshape(-1, 3), out.texture[:, 18:30].reshape(-1, 3)
    np.testing.assert_array_equal(left, np.broadcast_to([255, 0, 0], left.shape))
    np.testing.assert_array_equal(right, np.broadcast_to([0, 0, 255], right.shape))
    np.testing.assert_allclose(out.colors, photo_colors(mesh, _photo(), C2W, INTR).colors)
