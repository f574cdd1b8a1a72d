"""Mesh turntables (`--video-source mesh`, the default): the reconstruction's coloured mesh seen
from the orbit the field turntable uses."""

from pathlib import Path

import numpy as np
import pytest

from lrm.mesh.types import Mesh
from lrm.pipeline import MESH_SHADING, Reconstructor

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "chair_office.png"


def _square_facing(camera: np.ndarray, half: float, colour: tuple[float, float, float]) -> Mesh:
    """A square of side 2·half through the origin, facing the point `camera`."""
    n = camera / np.linalg.norm(camera)
    u = np.cross(n, [0.0, 0.0, 1.0])
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    corners = np.stack([-u - v, u - v, u + v, -u + v]) * half
    return Mesh(corners, np.array([[0, 1, 2], [0, 2, 3]]), colors=np.tile(np.float32(colour), (4, 1)))


def test_mesh_turntable_by_hand(tiny_model):
    rec = Reconstructor(tiny_model, device="cpu", dtype="fp32")
    c2w, _ = rec.orbit(4)
    colour = (0.8, 0.2, 0.4)
    mesh = _square_facing(c2w[0, :3, 3].numpy().astype(np.float64), 0.3, colour)
    frames = rec.turntable(None, 4, 64, mesh=mesh, supersample=1)  # hard edges: pixels are in or out
    assert frames.shape == (4, 64, 64, 3) and frames.dtype == np.float32
    bg = rec.inference.render_background
    # frame 0 looks straight at the square: its centre has the full colour (headlight cosine 1)
    np.testing.assert_allclose(frames[0, 31:33, 31:33], np.broadcast_to(colour, (2, 2, 3)), atol=2e-3)
    assert np.allclose(frames[0, :4, :4], bg) and np.allclose(frames[0, -4:, -4:], bg)
    # off the centre the view ray is oblique: colour · (1 - s + s·cos) with cos < 1, > 0.9 here
    covered = ~np.all(np.isclose(frames[0], bg), axis=-1)
    shade = frames[0][covered][:, 0] / colour[0]
    assert shade.max() <= 1 + 1e-5 and shade.min() > (1 - MESH_SHADING) + MESH_SHADING * 0.9
    # its area: side 0.6 at the orbit distance, times the focal (normalised) and 64 px
    side = 0.6 * rec.inference.view_focal * 64 / rec.inference.view_distance
    assert abs(covered.sum() / side**2 - 1) < 0.1, (covered.sum(), side**2)
    # a quarter turn later the square is edge-on: (almost) nothing covers the frame
    assert (~np.all(np.isclose(frames[1], bg), axis=-1)).sum() < 64
    # half a turn: the back of the square, seen at the angle between the two cameras' directions
    # (twice the elevation): its centre is shaded by that cosine and its area shrinks by about it
    c0, c2 = (c2w[k, :3, 3].numpy().astype(np.float64) for k in (0, 2))
    cos = abs(c0 @ c2) / np.linalg.norm(c0) / np.linalg.norm(c2)
    want = np.float32(colour) * ((1 - MESH_SHADING) + MESH_SHADING * cos)
    np.testing.assert_allclose(frames[2, 31:33, 31:33], np.broadcast_to(want, (2, 2, 3)), atol=6e-3)  # ½ px off centre
    back = ~np.all(np.isclose(frames[2], bg), axis=-1)
    assert abs(back.sum() / covered.sum() - cos) < 0.1, (back.sum() / covered.sum(), cos)


def test_mesh_turntable_edges_are_antialiased(tiny_model):
    """By default each pixel averages 2 x 2 samples: the square's outline blends into the
    background (about one pixel of blend along each of its four sides), the inside keeps its
    colour, and the area it covers is nearer the square's true projected area."""
    rec = Reconstructor(tiny_model, device="cpu", dtype="fp32")
    c2w, _ = rec.orbit(1)
    colour = (0.8, 0.2, 0.4)
    mesh = _square_facing(c2w[0, :3, 3].numpy().astype(np.float64), 0.317, colour)  # edges off the pixel boundaries
    smooth = rec.turntable(None, 1, 64, mesh=mesh)[0]
    hard = rec.turntable(None, 1, 64, mesh=mesh, supersample=1)[0]
    bg = rec.inference.render_background
    inside = hard[..., 1] < bg - 0.5  # green: background 1, square 0.2 · shade
    side = np.sqrt(inside.sum())
    between = (smooth[..., 1] < bg - 0.05) & (smooth[..., 1] > 0.2 + 0.05)
    assert not ((hard[..., 1] < bg - 0.05) & (hard[..., 1] > 0.2 + 0.05)).any()
    assert 2 * side < between.sum() < 8 * side, (between.sum(), side)
    np.testing.assert_allclose(smooth[31:33, 31:33], hard[31:33, 31:33], atol=1e-4)  # shading: cos of sub-pixels
    # the area each image covers (green: 1 - coverage · 0.8 · shade, shade > 0.99 here) against the
    # square's projected area, side 0.634 at the orbit distance times the focal and 64 px
    area = (2 * 0.317 * rec.inference.view_focal * 64 / rec.inference.view_distance) ** 2
    covered = {k: float(((bg - v[..., 1]) / (bg - 0.2)).sum()) for k, v in (("smooth", smooth), ("hard", hard))}
    err = {k: abs(v / area - 1) for k, v in covered.items()}
    assert err["smooth"] < 0.04 and err["smooth"] < err["hard"] / 2, (covered, area)  # measured 2.7 %, 10.7 %


def test_without_vertex_colours_the_field_is_rendered(tiny_model, rgba_image_path):
    rec = Reconstructor(tiny_model, device="cpu", dtype="fp32")
    planes = rec.reconstruct(rgba_image_path, mesh=False).planes
    square = _square_facing(np.array([0.0, -2.0, 0.5]), 0.3, (1, 0, 0))
    square.colors = None  # a mesh without vertex colours
    np.testing.assert_array_equal(rec.turntable(planes, 2, 32, mesh=square), rec.turntable(planes, 2, 32))


def test_mesh_and_field_turntables_agree_on_the_bundled_model():
    """The mesh is drawn in the field's frame: each frame's silhouette matches the field's
    opacity (> 0.3: the bundled model's field is foggy) in the same frame best."""
    rec = Reconstructor("default", device="cpu", dtype="fp32")
    result = rec.reconstruct(str(EXAMPLE))
    c2w, intr = rec.orbit(3)
    field = rec.render_views(result.planes, c2w, intr, size=64, background=1.0)["opacity"] > 0.3
    frames = rec.turntable(result.planes, 3, 64, mesh=result.mesh, supersample=1)
    mesh = ~np.all(np.isclose(frames, rec.inference.render_background), axis=-1)
    iou = np.array([[(mesh[k] & field[j]).sum() / (mesh[k] | field[j]).sum() for j in range(3)] for k in range(3)])
    assert np.diag(iou).min() > 0.65, iou  # measured 0.82 / 0.69 / 0.68
    assert all(iou[k, k] > max(np.delete(iou[k], k)) for k in range(3)), iou


@pytest.fixture
def rgba_image_path(tmp_path):
    from PIL import Image

    yy, xx = np.mgrid[:96, :96]
    img = np.zeros((96, 96, 4), np.uint8)
    img[(yy - 48) ** 2 + (xx - 40) ** 2 < 30**2] = [220, 30, 30, 255]
    Image.fromarray(img, "RGBA").save(tmp_path / "disc.png")
    return str(tmp_path / "disc.png")
