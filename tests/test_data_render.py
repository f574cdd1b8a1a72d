"""The GL rasterizer against analytic projections, and cameras against the model's ray generator."""

import numpy as np
import pytest
import torch

from lrm.cameras import look_at
from lrm.data.mesh import AssetMesh, Part, normalize
from lrm.data.views import ViewConfig, ring_cameras, training_cameras

from lrm.data.gl_render import GLRenderer, LightConfig, egl_error, projection  # noqa: E402

if egl_error():  # no moderngl or no EGL (Debian: libegl1 libegl-mesa0 libgl1-mesa-dri libgles2)
    pytest.skip(egl_error(), allow_module_level=True)

FACE_COLORS = {  # outward normal -> albedo (distinct hues)
    (1, 0, 0): (0.9, 0.1, 0.1), (-1, 0, 0): (0.1, 0.8, 0.1), (0, 1, 0): (0.1, 0.2, 0.9),
    (0, -1, 0): (0.9, 0.9, 0.1), (0, 0, 1): (0.9, 0.2, 0.9), (0, 0, -1): (0.1, 0.9, 0.9),
}
ALBEDO = LightConfig(ambient=1.0, key=0.0, sky=0.0)


def unit_cube() -> AssetMesh:
    """[-1, 1]³ with one flat colour per face (unshared vertices)."""
    parts = []
    for n, rgb in FACE_COLORS.items():
        n = np.array(n, float)
        a = np.roll(n, 1)  # two in-plane axes
        b = np.cross(n, a)
        corners = np.array([n + s * a + t * b for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1))], np.float32)
        colors = np.tile(np.array([*rgb, 1.0], np.float32), (4, 1))
        parts.append(Part(corners, np.array([[0, 1, 2], [0, 2, 3]]), colors=colors))
    return AssetMesh(parts)


def project(points: np.ndarray, c2w: np.ndarray, intr: np.ndarray) -> np.ndarray:
    """World points [N, 3] -> normalised image coordinates [N, 2] (column, row; row 0 at the top)."""
    cam = (np.linalg.inv(c2w) @ np.c_[points, np.ones(len(points))].T).T[:, :3]
    fx, fy, cx, cy = intr
    return np.stack([fx * cam[:, 0] / -cam[:, 2] + cx, cy - fy * cam[:, 1] / -cam[:, 2]], 1)


def _cross(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def convex_hull(p: np.ndarray) -> np.ndarray:
    """Counter-clockwise hull of 2D points (monotone chain)."""
    pts = sorted(map(tuple, p))

    def half(seq):
        out = []
        for q in seq:
            while len(out) >= 2 and _cross(out[-2], out[-1], q) <= 0:
                out.pop()
            out.append(q)
        return out[:-1]

    return np.array(half(pts) + half(pts[::-1]))


def inside(hull: np.ndarray, xy: np.ndarray) -> np.ndarray:
    ok = np.ones(len(xy), bool)
    for a, b in zip(hull, np.roll(hull, -1, 0)):
        ok &= (b[0] - a[0]) * (xy[:, 1] - a[1]) - (b[1] - a[1]) * (xy[:, 0] - a[0]) >= 0
    return ok


@pytest.fixture(scope="module")
def renderer():
    return GLRenderer(128, supersample=2, light=ALBEDO)


def test_cube_silhouette_and_face_colours(renderer):
    res = renderer.resolution
    c2w = look_at(torch.tensor([[2.6, -3.4, 2.2]])).numpy()
    intr = np.array([0.75, 0.75, 0.5, 0.5], np.float32)
    img = renderer.render(unit_cube(), c2w, intr[None])[0]
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    hull = convex_hull(project(corners, c2w[0], intr))
    centres = (np.stack(np.meshgrid(np.arange(res), np.arange(res)), -1).reshape(-1, 2) + 0.5) / res
    expected = inside(hull, centres).reshape(res, res)
    drawn = img[..., 3] >= 128
    iou = (expected & drawn).sum() / (expected | drawn).sum()
    assert iou >= 0.98, iou
    near = np.zeros_like(expected)  # pixels within one pixel of the silhouette
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            near |= np.roll(np.roll(expected, dr, 0), dc, 1)
    assert img[..., 3][~near].max() == 0  # the background is fully transparent
    position = c2w[0, :3, 3]
    for n, rgb in FACE_COLORS.items():
        (col, row), = project(np.array([n], float), c2w[0], intr)
        pixel = img[int(row * res), int(col * res)]
        if np.dot(n, position - np.array(n)) > 0:  # the face is visible: its exact albedo
            np.testing.assert_allclose(pixel[:3], np.array(rgb) * 255, atol=2)
            assert pixel[3] == 255


def test_default_light_keeps_colour_near_albedo():
    light = LightConfig()
    c2w = look_at(torch.tensor([[2.6, -3.4, 2.2]])).numpy()
    intr = np.array([0.75, 0.75, 0.5, 0.5], np.float32)
    img = GLRenderer(64, light=light).render(unit_cube(), c2w, intr[None])[0]
    position = c2w[0, :3, 3]
    seen = 0
    for n, rgb in FACE_COLORS.items():
        if np.dot(n, position - np.array(n)) <= 0:
            continue
        (col, row), = project(np.array([n], float), c2w[0], intr)
        pixel = img[int(row * 64), int(col * 64), :3].astype(float)
        albedo = np.array(rgb) * 255
        k = pixel @ albedo / (albedo @ albedo)  # the brightness applied to this face
        np.testing.assert_allclose(pixel, k * albedo, atol=3)  # same hue: colour = k · albedo
        assert light.ambient - 0.01 <= k <= 1.01
        seen += 1
    assert seen == 3


def test_alpha_is_straight_and_edges_antialiased(renderer):
    img = renderer.render(unit_cube(), look_at(torch.tensor([[0.3, -3.0, 0.4]])).numpy(),
                          np.array([[0.75, 0.75, 0.5, 0.5]], np.float32))[0]
    edge = (img[..., 3] > 0) & (img[..., 3] < 255)
    assert edge.sum() > 20  # supersampling produced partial coverage
    # straight alpha: an edge pixel of the yellow front face keeps the face colour, not a darker one
    yellow = np.array(FACE_COLORS[(0, -1, 0)]) * 255
    front_edges = img[edge & (np.abs(img[..., :3].astype(float) - yellow).max(-1) < 30)]
    assert len(front_edges) > 5
    assert np.abs(front_edges[:, :3].astype(float) - yellow).max() <= 3


def test_textured_part_samples_uv_with_bottom_left_origin(renderer):
    tex = np.zeros((2, 2, 4), np.uint8)
    tex[0, :] = (255, 0, 0, 255)  # image top row: red
    tex[1, :] = (0, 0, 255, 255)  # bottom row: blue
    quad = np.array([[-1, 0, -1], [1, 0, -1], [1, 0, 1], [-1, 0, 1]], np.float32)  # faces -y
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)  # v = 1 at the top (z = +1)
    mesh = AssetMesh([Part(quad, np.array([[0, 1, 2], [0, 2, 3]]), uv=uv, texture=tex)])
    img = renderer.render(mesh, look_at(torch.tensor([[0.0, -3.0, 0.0]])).numpy(),
                          np.array([[0.75, 0.75, 0.5, 0.5]], np.float32))[0]
    top, bottom = img[50, 64], img[78, 64]
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60


def test_dataset_cameras_round_trip_with_model_rays():
    """A pixel's ray from lrm.render.rays passes through the 3D point that the rasterizer's
    projection put at that pixel, for the dataset's random and ring cameras."""
    from lrm.render.rays import camera_rays

    cfg = ViewConfig()
    c2w, intr = training_cameras("some-object", cfg)
    rc, ri = ring_cameras(cfg)
    c2w, intr = np.concatenate([c2w, rc]), np.concatenate([intr, ri])
    res = 64
    origins, dirs = camera_rays(torch.from_numpy(c2w), torch.from_numpy(intr), res)
    rng = np.random.default_rng(0)
    for v in range(len(c2w)):
        for p in rng.integers(0, res * res, 5):
            i, j = divmod(int(p), res)
            point = (origins[v, p] + 1.7 * dirs[v, p]).double().numpy()
            clip = projection(intr[v], 0.05, 20.0) @ np.linalg.inv(c2w[v].astype(np.float64)) @ np.r_[point, 1]
            ndc = clip[:2] / clip[3]
            col, row = (ndc[0] + 1) / 2 * res, (1 - ndc[1]) / 2 * res  # GL window -> image rows
            np.testing.assert_allclose([row, col], [i + 0.5, j + 0.5], atol=1e-3)


def test_rendered_blob_lies_on_the_saved_cameras_ray(tmp_path):
    """End to end: render a small off-centre cube, write + read the object, and check that the
    ray through the blob's centroid (model ray generator) passes the cube's centre."""
    from lrm.data import format as fmt
    from lrm.render.rays import camera_rays

    centre = np.array([0.5, -0.2, 0.3], np.float32)
    small = unit_cube().transformed(np.eye(3), centre, 0.08)
    cfg = ViewConfig(views=4, ring=2)
    c2w, intr = training_cameras("blob", cfg)
    renderer = GLRenderer(96, light=ALBEDO)
    obj = fmt.ObjectViews("blob", renderer.render(small, c2w, intr), c2w, intr, meta={"split": "train"})
    fmt.write_object(tmp_path, obj)
    back = fmt.read_object(tmp_path, "blob")
    origins, dirs = camera_rays(torch.from_numpy(back.c2w), torch.from_numpy(back.intrinsics), 96)
    for v in range(4):
        alpha = back.rgba[v, ..., 3].astype(float)
        rows, cols = np.nonzero(alpha)
        w = alpha[rows, cols]
        centroid = np.array([np.average(rows, weights=w), np.average(cols, weights=w)]) - 0.5
        miss = torch.linalg.cross(torch.from_numpy(centre) - origins[v], dirs[v]).norm(dim=-1)
        best = divmod(int(miss.argmin()), 96)  # the pixel whose model ray passes nearest the centre
        assert np.abs(np.array(best) - centroid).max() <= 1.0, (v, best, centroid)
        assert miss.min() < 0.02


def test_views_follow_openlrm_distribution():
    cfg = ViewConfig()
    c2w, intr = training_cameras("x", cfg)
    pos = c2w[:, :3, 3]
    dist = np.linalg.norm(pos, axis=1)
    assert c2w.shape == (32, 4, 4) and np.all((dist > 1.9) & (dist < 2.6))
    assert np.all((pos[:, 2] > -0.75) & (pos[:, 2] < 1.6))
    from lrm.cameras import canonical_c2w

    np.testing.assert_allclose(c2w[0], canonical_c2w(float(dist[0])).numpy(), atol=1e-6)  # the front view
    np.testing.assert_allclose(intr, np.tile([0.75, 0.75, 0.5, 0.5], (32, 1)))
    np.testing.assert_array_equal(training_cameras("x", cfg)[0], c2w)  # seeded by the id
    assert not np.allclose(training_cameras("y", cfg)[0], c2w)
    ring, _ = ring_cameras(cfg)
    np.testing.assert_allclose(ring[0, :3, 3], [0, -2 * np.cos(np.radians(20)), 2 * np.sin(np.radians(20))], atol=1e-5)


def test_normalize_fits():
    cube = unit_cube().transformed(np.eye(3), np.array([3.0, 1.0, -2.0]), 5.0)
    box, centre, scale = normalize(cube, "box")
    np.testing.assert_allclose(box.bounds(), [[-1, -1, -1], [1, 1, 1]], atol=1e-5)
    np.testing.assert_allclose(centre, [3, 1, -2], atol=1e-5)
    ball, _, _ = normalize(cube, "sphere")
    radius = max(np.linalg.norm(p.positions, axis=1).max() for p in ball.parts)
    assert abs(radius - 1) < 1e-5
