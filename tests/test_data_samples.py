"""3D point samples (lrm.data.samples): labels, normals and colours against hand-worked values,
the stored format, adding samples to a rendered dataset, and the refusal of a dataset without them."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from lrm.data import format as fmt
from lrm.data.mesh import AssetMesh, Part
from lrm.data.gl_render import LightConfig, egl_error
from lrm.data.samples import SAMPLES_NAME, PointSamples, SampleConfig, compute_samples, read_samples, write_samples
from lrm.errors import LRMError
from lrm.train.config import DataConfig
from lrm.train.data import FolderSource, TrainSamples
from lrm.train.synthetic import write_synthetic

HALF = np.array([0.8, 0.5, 0.3])  # half-sides of the test box
FACES = {  # outward normal -> albedo
    (1, 0, 0): (0.9, 0.1, 0.1), (-1, 0, 0): (0.1, 0.8, 0.1), (0, 1, 0): (0.1, 0.2, 0.9),
    (0, -1, 0): (0.9, 0.9, 0.1), (0, 0, 1): (0.9, 0.2, 0.9), (0, 0, -1): (0.1, 0.9, 0.9),
}


def box(flip: bool = False) -> AssetMesh:
    """The box [-HALF, HALF], one flat colour per face; `flip` reverses every triangle's winding."""
    parts = []
    for n, rgb in FACES.items():
        n = np.array(n, float)
        a = np.roll(n, 1)
        b = np.cross(n, a)
        corners = np.array([(n + s * a + t * b) * HALF for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1))], np.float32)
        tris = np.array([[0, 1, 2], [0, 2, 3]])
        parts.append(Part(corners, tris[:, ::-1].copy() if flip else tris,
                          colors=np.tile(np.array([*rgb, 1.0], np.float32), (4, 1))))
    return AssetMesh(parts)


@pytest.mark.parametrize("flip", [False, True])
def test_box_labels_normals_and_colours(flip):
    cfg = SampleConfig(surface=3000, near=3000, uniform=3000, grid=64)
    s = compute_samples(box(flip), LightConfig(), cfg, seed=0)
    assert s.surface_xyz.shape == (3000, 3) and s.occupancy_xyz.shape == (6000, 3)
    inside = np.all(np.abs(s.occupancy_xyz) < HALF, axis=1)
    # distance to the box surface: labels must be exact beyond one voxel, and nearly so closer in
    depth = np.min(np.abs(np.abs(s.occupancy_xyz) - HALF), axis=1)
    far = depth > 2.0 / cfg.grid
    assert np.array_equal(s.occupancy[far] > 0.5, inside[far])
    assert ((s.occupancy > 0.5) == inside).mean() > 0.99
    # every surface point lies on a face, its normal is that face's outward normal (whatever the winding)
    on_face = np.isclose(np.abs(s.surface_xyz), HALF, atol=1e-5)
    assert on_face.any(axis=1).all()
    axis = on_face.argmax(axis=1)
    expected = np.zeros_like(s.surface_normal)
    expected[np.arange(len(axis)), axis] = np.sign(s.surface_xyz[np.arange(len(axis)), axis])
    edge = on_face.sum(axis=1) > 1
    assert np.allclose(s.surface_normal[~edge], expected[~edge], atol=1e-5)
    # colour on the top face, worked by hand: light (-0.35, -0.6, 0.72)/1.00045 -> l_z = 0.71968;
    # shade = 0.6 + 0.25 * 0.71968 + 0.15 * (1 + 1)/2 = 0.92992; albedo (0.9, 0.2, 0.9)
    top = (axis == 2) & (s.surface_xyz[:, 2] > 0) & ~edge
    assert top.sum() > 100
    assert np.allclose(s.surface_rgb[top], [0.83693, 0.18598, 0.83693], atol=1e-4)
    # bottom face: n·l < 0 -> no key light; sky (−1 + 1)/2 = 0: shade 0.6 on albedo (0.1, 0.9, 0.9)
    bottom = (axis == 2) & (s.surface_xyz[:, 2] < 0) & ~edge
    assert np.allclose(s.surface_rgb[bottom], [0.06, 0.54, 0.54], atol=1e-4)
    # deterministic for a seed
    again = compute_samples(box(flip), LightConfig(), cfg, seed=0)
    assert np.array_equal(again.occupancy_xyz, s.occupancy_xyz) and np.array_equal(again.occupancy, s.occupancy)


def test_alpha_cut_texels_are_holes_and_the_count_is_kept():
    """A square whose texture's right half is transparent (alpha-tested): no surface point there."""
    tex = np.zeros((4, 4, 4), np.uint8)
    tex[:, :2] = (200, 100, 50, 255)  # left half opaque, right half alpha 0
    quad = Part(np.array([[-0.5, 0, -0.5], [0.5, 0, -0.5], [0.5, 0, 0.5], [-0.5, 0, 0.5]], np.float32),
                np.array([[0, 1, 2], [0, 2, 3]]), uv=np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32),
                colors=np.ones((4, 4), np.float32), texture=tex, alpha_cutoff=0.5)
    s = compute_samples(AssetMesh([quad]), LightConfig(ambient=1.0, key=0.0, sky=0.0),
                        SampleConfig(surface=1000, near=500, uniform=500, grid=32), seed=1)
    assert len(s.surface_xyz) == 1000
    assert (s.surface_xyz[:, 0] <= 1e-6).all()  # only the opaque half, u < 0.5
    assert np.allclose(s.surface_rgb, np.array([200, 100, 50]) / 255.0, atol=1e-6)


def test_samples_round_trip_within_storage_precision(tmp_path):
    rng = np.random.default_rng(0)
    n = rng.normal(size=(50, 3))
    s = PointSamples(rng.uniform(-1, 1, (50, 3)).astype(np.float32), rng.random((50, 3)).astype(np.float32),
                     (n / np.linalg.norm(n, axis=1, keepdims=True)).astype(np.float32),
                     rng.uniform(-1, 1, (70, 3)).astype(np.float32), (rng.random(70) > 0.5).astype(np.float32))
    write_samples(tmp_path, s)
    assert not list(tmp_path.glob(".*"))  # no temporary file left
    r = read_samples(tmp_path)
    assert np.abs(r.surface_xyz - s.surface_xyz).max() <= 2**-11  # float16 spacing below 1 is ≤ 2^-11
    assert np.abs(r.occupancy_xyz - s.occupancy_xyz).max() <= 2**-11
    assert np.abs(r.surface_rgb - s.surface_rgb).max() <= 0.5 / 255 + 1e-7
    assert np.abs(r.surface_normal - s.surface_normal).max() <= 0.5 / 127 + 1e-7
    assert np.array_equal(r.occupancy, s.occupancy)


def test_malformed_samples_file_is_an_lrm_error(tmp_path):
    np.savez(tmp_path / SAMPLES_NAME, surface_xyz=np.zeros((3, 3)), surface_rgb=np.zeros((2, 3)),
             surface_normal=np.zeros((3, 3)), occupancy_xyz=np.zeros((1, 3)), occupancy=np.zeros(1))
    with pytest.raises(LRMError, match="surface_rgb has shape"):
        read_samples(tmp_path)


def test_points_move_into_the_input_camera_frame(tmp_path):
    """Inside points, moved into the frame where the input camera is canonical, project into the
    input view's silhouette (every point inside a solid projects inside its silhouette)."""
    from lrm import cameras

    root = write_synthetic(tmp_path / "d", objects=2, views=5, size=48, val=0, points=True)
    cfg = DataConfig(root=str(root), occupancy_points=512, surface_points=64, side_views=1,
                     render_low=16, render_high=16, region=16)
    data = TrainSamples(FolderSource(str(root), "train"), cfg, source_size=48, seed=3)
    for g in range(4):
        item = data[g]
        pts = item["occupancy_xyz"][item["occupancy"] > 0.5]
        assert len(pts) > 20
        c2w = cameras.canonical_c2w(float(item["c2w"][0, :3, 3].norm()))
        assert torch.allclose(item["c2w"][0], c2w, atol=1e-5)  # the input view is supervised and canonical
        cam = (torch.linalg.inv(c2w) @ torch.cat([pts, torch.ones(len(pts), 1)], 1).T).T[:, :3]
        col = (0.75 * cam[:, 0] / -cam[:, 2] + 0.5) * 48
        row = (0.5 - 0.75 * cam[:, 1] / -cam[:, 2]) * 48
        # the source image is composited on white: the object is where it is not white (one pixel
        # of slack for points just inside the rim)
        mask = (item["source"].min(0).values < 0.99).float()[None, None]
        mask = torch.nn.functional.max_pool2d(mask, 3, stride=1, padding=1)[0, 0] > 0
        assert mask[row.long().clamp(0, 47), col.long().clamp(0, 47)].all()


def test_dataset_without_samples_is_refused_in_one_line(tmp_path):
    root = write_synthetic(tmp_path / "d", objects=2, views=4, size=24, val=0)
    with pytest.raises(LRMError, match=r"no 3D point samples.*lrm data samples"):
        FolderSource(str(root), "train").require_points()
    cfg = tmp_path / "c.toml"
    cfg.write_text('preset = "tiny"\nsteps = 1\n[data]\noccupancy_points = 16\n[loss]\nlpips = 0.0\n')
    out = subprocess.run([sys.executable, "-m", "lrm", "train", "--config", str(cfg), "--data", str(root),
                          "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("lrm: error:")]
    assert len(errors) == 1 and "lrm data samples" in errors[0] and "Traceback" not in out.stderr


@pytest.mark.skipif(bool(egl_error()), reason=egl_error() or "")
def test_samples_command_adds_what_render_would_have_stored(tmp_path):
    import trimesh

    src = tmp_path / "meshes"
    src.mkdir()
    trimesh.creation.box((1.0, 0.6, 0.4)).export(src / "brick.obj")
    trimesh.creation.icosphere(2, 0.5).export(src / "ball.obj")
    run = lambda *a: subprocess.run([sys.executable, "-m", "lrm", "data", *a, "--quiet"],  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    common = ["--views", "2", "--ring", "0", "--resolution", "16"]
    assert run("render", str(src), "-o", str(tmp_path / "with"), *common).returncode == 0
    out = run("render", str(src), "-o", str(tmp_path / "without"), *common, "--no-samples")
    assert out.returncode == 0, out.stderr
    ids = fmt.list_objects(tmp_path / "without")
    assert len(ids) == 2 and not any((fmt.object_dir(tmp_path / "without", i) / SAMPLES_NAME).exists() for i in ids)
    out = run("samples", str(tmp_path / "without"), str(src))
    assert out.returncode == 0 and "samples added to 2 objects" in out.stderr, out.stderr
    for i in ids:
        a = read_samples(fmt.object_dir(tmp_path / "with", i))
        b = read_samples(fmt.object_dir(tmp_path / "without", i))
        assert np.array_equal(a.occupancy_xyz, b.occupancy_xyz) and np.array_equal(a.surface_rgb, b.surface_rgb)
    assert fmt.read_dataset_info(tmp_path / "without")["samples"] == fmt.read_dataset_info(tmp_path / "with")["samples"]
    again = run("samples", str(tmp_path / "without"), str(src))  # resumable: nothing left to do
    assert again.returncode == 0 and "samples added to 0 objects" in again.stderr
