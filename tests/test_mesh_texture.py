"""Texture baking: UV rasterisation against its reference, dilation, baked colours matching
the field after a GLB round trip, OBJ + MTL + PNG references, optional dependencies."""

import builtins
import re

import numpy as np
import pytest
import torch
import trimesh

from lrm.errors import LRMError
from lrm.mesh.export import export_mesh, export_mesh_files
from lrm.mesh.extract import extract_mesh
from lrm.mesh.texel_map import rasterize_uv, rasterize_uv_reference
from lrm.mesh.simplify import simplify_mesh
from lrm.mesh.texture import bake_texture, dilate

pytest.importorskip("xatlas")


def smooth_colour(p):
    return torch.stack([(p[:, 0] + 1) / 2, (p[:, 1] + 1) / 2, 0.5 + 0.4 * p[:, 2]], dim=-1)


@pytest.fixture(scope="module")
def ball():
    return extract_mesh(lambda p: 3 + 20 * (0.5 - p.norm(dim=-1)), 36, 1.0, 3.0)


@pytest.fixture(scope="module")
def baked(ball):
    return bake_texture(ball, smooth_colour, resolution=256, max_faces=None)


def test_vectorised_rasteriser_matches_reference():
    rng = np.random.default_rng(0)
    uv = rng.random((40, 2)).astype(np.float32)
    uv[:3] = [[0.1, 0.1], [0.9, 0.1], [0.1, 0.9]]  # a big triangle; the rest overlap it
    faces = np.concatenate([[[0, 1, 2]], rng.integers(0, 40, (25, 3))])
    faces[5] = [7, 7, 8]  # degenerate
    face, bary = rasterize_uv(uv, faces, 24, batch=50)  # small batches: exercises the batching
    ref_face, ref_bary = rasterize_uv_reference(uv, faces, 24)
    np.testing.assert_array_equal(face, ref_face)
    np.testing.assert_allclose(bary, ref_bary, atol=1e-6)
    assert (face >= 0).sum() > 100


def test_rasteriser_texel_convention():
    # one triangle covering the left-bottom half of uv space: texel (row, col) is covered iff
    # its centre (u, v) = ((col + .5)/W, 1 - (row + .5)/H) has u + v <= 1
    uv = np.array([[0, 0], [1, 0], [0, 1]], np.float32)
    face, bary = rasterize_uv(uv, np.array([[0, 1, 2]]), 8)
    row, col = np.mgrid[0:8, 0:8]
    u, v = (col + 0.5) / 8, 1 - (row + 0.5) / 8
    np.testing.assert_array_equal(face >= 0, u + v <= 1 + 1e-9)
    np.testing.assert_allclose(bary[face >= 0][:, 1], u[face >= 0], atol=1e-6)  # weight of vertex 1 = u


def test_dilate_fills_a_ring_per_step():
    img = np.zeros((5, 5, 1), np.float32)
    filled = np.zeros((5, 5), bool)
    img[2, 2], filled[2, 2] = 1.0, True
    img[2, 3], filled[2, 3] = 3.0, True
    out, grown = dilate(img, filled, 1)
    assert grown[1:4, 1:5].all() and not grown[0].any()
    assert out[1, 2, 0] == 2.0 and out[1, 1, 0] == 1.0 and out[1, 4, 0] == 3.0  # means of filled neighbours


def test_baked_glb_reloads_with_a_texture_matching_the_field(baked, tmp_path):
    scene = trimesh.load(str(export_mesh(baked, tmp_path / "t.glb")), process=False)
    geom = list(scene.geometry.values())[0]
    image = np.asarray(geom.visual.material.baseColorTexture.convert("RGB"), np.float32) / 255
    assert image.shape == (256, 256, 3)
    rng = np.random.default_rng(1)
    f = rng.integers(0, len(geom.faces), 2000)
    w = rng.dirichlet([1, 1, 1], 2000)
    pos = np.einsum("nk,nkc->nc", w, geom.vertices[geom.faces[f]])
    uv = np.einsum("nk,nkc->nc", w, geom.visual.uv[geom.faces[f]])
    col = np.clip((uv[:, 0] * 256).astype(int), 0, 255)
    row = np.clip(((1 - uv[:, 1]) * 256).astype(int), 0, 255)  # nearest texel
    err = np.abs(image[row, col] - smooth_colour(torch.from_numpy(pos).float()).numpy())
    assert err.mean() < 0.01 and err.max() < 0.06


def test_seam_vertices_share_their_normal(baked):
    normals = baked.vertex_normals()
    _, first, group = np.unique(baked.vertices, axis=0, return_index=True, return_inverse=True)
    assert len(first) < len(baked.vertices)  # the atlas split vertices along seams
    np.testing.assert_array_equal(normals, normals[first][group.ravel()])


def test_constant_field_gives_a_constant_texture(ball):
    rgb = torch.tensor([0.2, 0.6, 0.4])
    mesh = bake_texture(ball, lambda p: rgb.expand(len(p), 3), resolution=128, max_faces=None)
    np.testing.assert_array_equal(mesh.texture.reshape(-1, 3), np.round(rgb.numpy() * 255).astype(np.uint8)[None].repeat(128 * 128, 0))


def test_textured_obj_writes_mtl_and_png_that_reference_each_other(baked, tmp_path):
    files = export_mesh_files(baked, tmp_path / "thing.obj")
    path = files[0]
    assert sorted(f.name for f in files) == ["thing.mtl", "thing.obj", "thing.png"] and path.name == "thing.obj"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing.mtl", "thing.obj", "thing.png"]  # no others
    text = path.read_text()
    assert re.search(r"^mtllib thing\.mtl$", text, re.M) and re.search(r"^vt ", text, re.M)
    assert re.search(r"^map_Kd thing\.png$", (tmp_path / "thing.mtl").read_text(), re.M)
    assert (tmp_path / "thing.png").exists()
    geom = trimesh.load(str(path), process=False, force="mesh")
    assert geom.visual.material.image.size == (256, 256)


def test_simplify_keeps_a_closed_outward_surface(ball):
    small = simplify_mesh(ball, 1000)
    assert len(small.faces) <= 1000 and small.signed_volume() > 0
    assert abs(small.signed_volume() / ball.signed_volume() - 1) < 0.02


def test_missing_xatlas_is_a_user_error(ball, monkeypatch):
    real_import = builtins.__import__

    def no_xatlas(name, *args, **kwargs):
        if name == "xatlas":
            raise ImportError("no xatlas")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_xatlas)
    with pytest.raises(LRMError, match=r"pip install 'lrm\[texture\]'"):
        bake_texture(ball, smooth_colour, resolution=64, max_faces=None)
