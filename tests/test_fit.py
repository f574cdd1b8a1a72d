"""`lrm fit`: voxel labels, surface colours, point-to-surface distance, and a fit that converges."""

import json
import math

import numpy as np
import pytest
import torch
import trimesh

pytest.importorskip("scipy")

from lrm.fitting.targets import surface_colors, voxelize  # noqa: E402
from lrm.fitting.surface_distance import closest_on_triangles, surface_chamfer  # noqa: E402


def test_voxelize_sphere_and_union_of_boxes():
    sphere = trimesh.creation.icosphere(4, radius=0.6)
    occ = voxelize(sphere, 64, 1.0)
    assert occ.mean() == pytest.approx(4 / 3 * math.pi * 0.6**3 / 8, rel=0.02)
    c = (np.arange(64) + 0.5) / 32 - 1
    assert occ[32, 32, 32] and not occ[0, 0, 0] and occ[32, 32, np.abs(c) < 0.55].all()
    # two overlapping closed boxes: the union, not the parity of the overlap
    a = trimesh.creation.box((1.0, 0.5, 0.5))
    b = trimesh.creation.box((0.5, 0.5, 1.0))
    both = voxelize(trimesh.util.concatenate([a, b]), 32, 1.0)
    assert both.mean() == pytest.approx((0.25 + 0.25 - 0.125) / 8, rel=0.05)
    assert both[16, 16, 16]  # the overlap is inside


@pytest.mark.parametrize("res", [64, 96])
def test_voxelize_columns_through_diagonal_edges(res):
    """A capsule's tessellation has edges on the x = y diagonal in projection: a column centre
    on such an edge must cross the surface once, not twice or never (that used to flip whole
    columns; at 96³ 291 voxels on 7 diagonal columns were wrong). Checked voxel by voxel
    against the capsule's own inside test (distance to its axis segment), away from the facets."""
    capsule = trimesh.creation.capsule(height=0.8, radius=0.4)
    top = capsule.bounds[1, 2] - 0.4  # the end-cap centres sit at z = ±top
    occ = voxelize(capsule, res, 1.0)
    c = (np.stack(np.meshgrid(*[np.arange(res)] * 3, indexing="ij"), -1) + 0.5) / res * 2 - 1
    d = np.sqrt(c[..., 0]**2 + c[..., 1]**2 + np.maximum(np.abs(c[..., 2]) - top, 0)**2)
    clear = np.abs(d - 0.4) > 0.02  # farther from the surface than the facets' sag
    assert (occ[clear] == (d < 0.4)[clear]).all()


def test_surface_colours_from_vertex_colours():
    box = trimesh.creation.box()
    box.visual.vertex_colors = np.where(box.vertices[:, :1] > 0, [255, 0, 0, 255], [0, 0, 255, 255])
    pts, rgb = surface_colors(box, 2000, seed=0)
    right = pts[:, 0] > 0.499  # the +x face: all its vertices are red
    assert right.any() and np.allclose(rgb[right], [1, 0, 0], atol=1e-6)


def test_closest_point_on_triangle_hand_worked():
    a, b, c = (np.array([[0.0, 0, 0]]), np.array([[1.0, 0, 0]]), np.array([[0.0, 1, 0]]))
    pts = np.array([[0.2, 0.2, 1.0], [-1.0, -1.0, 0.0], [2.0, -0.5, 0.0], [1.0, 1.0, 0.0]])
    want = np.array([[0.2, 0.2, 0.0], [0, 0, 0], [1, 0, 0], [0.5, 0.5, 0]])
    for p, w in zip(pts, want):
        np.testing.assert_allclose(closest_on_triangles(p[None], a, b, c)[0], w, atol=1e-12)
    s = trimesh.creation.icosphere(3, radius=0.5)
    assert surface_chamfer(s, s, 2000) < 1e-12
    assert surface_chamfer(s, trimesh.creation.icosphere(3, radius=0.52), 2000) == pytest.approx(0.02, rel=0.05)


def test_fit_cli_converges_on_a_coloured_sphere(tmp_path):
    """tiny preset, 100 steps of 4096 points: volume IoU >= 0.98 and Chamfer <= 0.01 (radius 0.8)."""
    from lrm.cli.main import main
    from lrm.fitting.fit import load_fit

    mesh = trimesh.creation.icosphere(3, radius=0.5)
    mesh.visual.vertex_colors = np.c_[(mesh.vertices + 0.5) * 255, np.full(len(mesh.vertices), 255)].astype(np.uint8)
    path = tmp_path / "sphere.ply"
    mesh.export(path)
    out = tmp_path / "fit"
    code = main(["fit", str(path), "-o", str(out), "--preset", "tiny", "--steps", "100", "--points", "4096",
                 "--voxels", "64", "--eval-resolution", "64", "--threads", "1"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iou"] >= 0.98 and metrics["chamfer"] <= 0.01, metrics
    cfg, field, planes = load_fit(out)
    assert planes.shape == (1, 3, cfg.field.channels, 32, 32)
    # the field is empty outside (below the skipping threshold) and dense inside
    with torch.no_grad():
        raw, rgb = field(planes, torch.tensor([[[0.0, 0.0, 0.0], [0.95, 0.95, 0.95]]]))
    density = field.density(raw)[0]
    assert density[0] > 10 * cfg.inference.mesh_threshold * 0.5 and density[1] < 1e-3
    fitted = trimesh.load(out / "mesh.ply")
    assert len(fitted.faces) > 1000
    # the colours follow the sphere's gradient (red along x, green along y, blue along z)
    rgb = np.asarray(fitted.visual.vertex_colors)[:, :3] / 255.0
    for axis in range(3):
        assert np.corrcoef(rgb[:, axis], fitted.vertices[:, axis])[0, 1] > 0.9, axis
