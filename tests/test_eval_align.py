"""Alignment: unit-bbox normalisation, rotation search + ICP recover known transforms."""

import math

import numpy as np
import pytest
import trimesh

from lrm.evaluate.align import align_meshes, align_points, kabsch, normalize_unit_bbox, rotation_candidates
from lrm.evaluate.geometry import geometry_metrics, sample_surface


def _asymmetric() -> trimesh.Trimesh:
    """An L-shaped block with a post: no rotational symmetry."""
    parts = [trimesh.creation.box((0.8, 0.3, 0.2)), trimesh.creation.box((0.2, 0.5, 0.2)),
             trimesh.creation.cylinder(radius=0.06, height=0.5)]
    parts[1].apply_translation([0.3, 0.4, 0.0])
    parts[2].apply_translation([-0.3, 0.0, 0.3])
    return trimesh.util.concatenate(parts)


def _rot(axis, deg):
    return trimesh.transformations.rotation_matrix(math.radians(deg), axis)


def test_candidates_are_rotations_and_include_the_cube_group():
    c = rotation_candidates()
    assert c.shape == (144, 3, 3)
    np.testing.assert_allclose(np.einsum("kij,kil->kjl", c, c), np.broadcast_to(np.eye(3), c.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(c), 1.0)
    cube = {tuple(np.round(r).astype(int).ravel()) for r in c if np.allclose(r, np.round(r))}
    assert len(cube) == 24


def test_kabsch_exact():
    rng = np.random.default_rng(0)
    src = rng.standard_normal((50, 3))
    r_true = _rot([1, 2, 3], 70)[:3, :3]
    r, t = kabsch(src, src @ r_true.T + [1, 2, 3])
    np.testing.assert_allclose(r, r_true, atol=1e-10)
    np.testing.assert_allclose(t, [1, 2, 3], atol=1e-10)


def test_alignment_recovers_known_rotation_and_translation():
    mesh = _asymmetric()
    truth = _rot([0, 0, 1], 100) @ _rot([1, 0, 0], 8)  # off the 15° grid, with a tilt
    truth[:3, 3] = [0.15, -0.1, 0.2]
    moved = mesh.copy()
    moved.apply_transform(truth)
    src, dst = sample_surface(moved, 6000, seed=1), sample_surface(mesh, 6000, seed=2)
    t = align_points(src, dst)
    expected = np.linalg.inv(truth)
    angle = math.degrees(math.acos(np.clip((np.trace(t[:3, :3] @ expected[:3, :3].T) - 1) / 2, -1, 1)))
    assert angle < 1.0
    np.testing.assert_allclose(t[:3, 3], expected[:3, 3], atol=0.01)


def test_align_meshes_undoes_scale_turn_and_shift():
    gt = _asymmetric()
    pred = gt.copy()
    pred.apply_transform(_rot([0, 0, 1], 90))  # e.g. TripoSR's frame: front at +x
    pred.apply_scale(1.7)
    pred.apply_translation([0.4, 0.2, -0.3])
    unaligned = geometry_metrics(*align_meshes(pred, gt, "none")[:2], points=4000)
    pred_a, gt_n, t = align_meshes(pred, gt, "icp")
    aligned = geometry_metrics(pred_a, gt_n, points=4000)
    assert unaligned["fscore@0.05"] < 0.5
    assert aligned["chamfer"] < 0.01 and aligned["fscore@0.05"] > 0.99
    np.testing.assert_allclose(normalize_unit_bbox(gt)[0].bounds, gt_n.bounds)
    assert np.ptp(gt_n.bounds, axis=0).max() == pytest.approx(1.0)
    np.testing.assert_allclose(pred.copy().apply_transform(t).vertices, pred_a.vertices, atol=1e-9)
