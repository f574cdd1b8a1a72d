"""Chamfer distance, F-score and volume IoU on shapes with known answers."""

import numpy as np
import pytest
import trimesh

from lrm.evaluate.geometry import chamfer, geometry_metrics, sample_surface, volume_iou


def _sphere(radius: float) -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=5, radius=radius)


def test_identical_meshes_give_zero_chamfer_and_unit_fscore():
    mesh = trimesh.creation.box((1.0, 0.6, 0.3))
    m = geometry_metrics(mesh, mesh.copy(), points=5000)
    assert m["chamfer"] == 0.0
    assert all(m[k] == 1.0 for k in m if k.startswith("fscore@"))
    assert m["volume_iou"] == 1.0


def test_sphere_vs_scaled_sphere_matches_analytic_values():
    # concentric spheres of radii 0.5 and 0.6: every point is exactly 0.1 from the other surface
    inner, outer = _sphere(0.5), _sphere(0.6)
    m = geometry_metrics(inner, outer, points=10_000)
    assert m["chamfer"] == pytest.approx(0.1, rel=0.02)
    assert m["fscore@0.05"] == 0.0 and m["fscore@0.2"] == 1.0 and m["fscore@0.5"] == 1.0
    assert m["volume_iou"] == pytest.approx((0.5 / 0.6) ** 3, rel=0.05)


def test_chamfer_is_symmetric_mean_of_directional_means():
    a = np.array([[0.0, 0, 0], [1, 0, 0]])
    b = np.array([[0.0, 0, 0.5]])
    # a->b: 0.5 and sqrt(1.25); b->a: 0.5
    assert chamfer(a, b) == pytest.approx(0.5 * ((0.5 + 1.25**0.5) / 2 + 0.5))
    assert chamfer(a, b) == chamfer(b, a)


def test_sampling_is_area_uniform():
    # a 1x1 square and a 1x3 rectangle side by side: a quarter of the points on the square
    square = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], [[0, 1, 2], [0, 2, 3]])
    rect = trimesh.Trimesh([[2, 0, 0], [3, 0, 0], [3, 3, 0], [2, 3, 0]], [[0, 1, 2], [0, 2, 3]])
    pts = sample_surface(trimesh.util.concatenate([square, rect]), 40_000, seed=3)
    assert (pts[:, 0] < 1.5).mean() == pytest.approx(0.25, abs=0.01)
    on_square = pts[pts[:, 0] < 1.5]
    assert on_square[:, 1].mean() == pytest.approx(0.5, abs=0.01)  # uniform inside, not at vertices


def test_volume_iou_of_offset_boxes_and_small_holes():
    a = trimesh.creation.box((1.0, 1.0, 1.0))
    b = trimesh.creation.box((1.0, 1.0, 1.0))
    b.apply_translation([0.5, 0, 0])  # overlap 0.5, union 1.5
    assert volume_iou(a, b, resolution=64) == pytest.approx(1 / 3, abs=0.02)
    # a sphere with a hole about 4 voxels across (non-watertight, as predicted meshes can be)
    # is still solid
    s = _sphere(0.5)
    holed = trimesh.Trimesh(s.vertices, s.faces[s.triangles_center[:, 2] < 0.498])
    assert not holed.is_watertight
    assert volume_iou(holed, s, resolution=48) > 0.97
