"""Mesh pieces: union-find labels against a breadth-first search, and dropping floaters."""

import numpy as np
import pytest
import trimesh

from lrm.mesh.components import drop_small_pieces, piece_labels, piece_labels_reference
from lrm.mesh.types import Mesh


def _mesh(*parts: trimesh.Trimesh) -> Mesh:
    both = trimesh.util.concatenate(list(parts))
    colors = np.random.default_rng(0).random((len(both.vertices), 3)).astype(np.float32)
    return Mesh(both.vertices, both.faces, colors)


def test_labels_match_a_breadth_first_search():
    rng = np.random.default_rng(1)
    for n in (1, 7, 60, 400):
        faces = rng.integers(0, n, (n // 2 + 1, 3))
        np.testing.assert_array_equal(piece_labels(faces, n), piece_labels_reference(faces, n))
    # a long chain (worst case for label propagation): one piece, labelled 0
    chain = np.stack([np.arange(998), np.arange(1, 999), np.arange(2, 1000)], 1)[::-1]
    assert (piece_labels(chain, 1000) == 0).all()


def test_small_pieces_are_dropped_by_area():
    big = trimesh.creation.icosphere(3, radius=0.5)  # area 4π·0.25 ≈ 3.1
    speck = trimesh.creation.icosphere(1, radius=0.05).apply_translation((0.9, 0, 0))  # ≈ 1 % of it
    mid = trimesh.creation.icosphere(1, radius=0.2).apply_translation((-0.9, 0, 0))  # ≈ 16 %
    mesh = _mesh(big, speck, mid)
    kept = drop_small_pieces(mesh, 0.05)
    assert len(kept.faces) == len(big.faces) + len(mid.faces)
    assert kept.vertices[:, 0].max() < 0.85 and kept.vertices[:, 0].min() < -0.85  # speck gone, mid kept
    assert len(kept.vertices) == len(big.vertices) + len(mid.vertices)  # no unused vertices
    # colours followed their vertices
    lookup = {tuple(v): c for v, c in zip(mesh.vertices, mesh.colors)}
    assert all(np.array_equal(lookup[tuple(v)], c) for v, c in zip(kept.vertices, kept.colors))
    only_big = drop_small_pieces(mesh, 0.5)
    assert len(only_big.faces) == len(big.faces)
    assert drop_small_pieces(mesh, 0.0) is mesh
    one = _mesh(big)
    assert drop_small_pieces(one, 0.9) is one


def test_the_setting_is_saved_and_checked():
    from lrm.configs import from_dict
    from lrm.errors import LRMError
    from lrm.model.lrm import InferenceConfig

    assert from_dict(InferenceConfig, {"min_piece": 0.02}).min_piece == 0.02
    with pytest.raises(LRMError, match="min_piece"):
        InferenceConfig(min_piece=1.5)
