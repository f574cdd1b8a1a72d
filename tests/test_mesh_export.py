"""Mesh export: formats reload with the same data, the output frame, atomic writes."""

import json
import struct

import numpy as np
import pytest
import torch
import trimesh

from lrm.cameras import world_to_view_frame
from lrm.errors import LRMError
from lrm.mesh import export as export_module
from lrm.mesh.export import export_mesh
from lrm.mesh.extract import extract_mesh
from lrm.mesh.types import Mesh, vertex_colors_u8


@pytest.fixture(scope="module")
def ball():
    return extract_mesh(lambda p: 3 + 20 * (0.4 - p.norm(dim=-1)), 24, 1.0, 3.0, color_fn=lambda p: (p + 1) / 2)


def reload(path):
    return trimesh.load(str(path), process=False, force="mesh")


@pytest.mark.parametrize("suffix", [".glb", ".obj", ".ply"])
def test_reload_keeps_vertices_faces_and_colours(ball, tmp_path, suffix):
    out = reload(export_mesh(ball, tmp_path / f"m{suffix}"))
    assert len(out.vertices) == len(ball.vertices) and len(out.faces) == len(ball.faces)
    np.testing.assert_allclose(out.vertices, ball.vertices, atol=1e-6)
    np.testing.assert_array_equal(out.faces, ball.faces)
    np.testing.assert_array_equal(out.visual.vertex_colors[:, :3], vertex_colors_u8(ball.colors))


def test_glb_carries_outward_smooth_normals(ball, tmp_path):
    path = export_mesh(ball, tmp_path / "n.glb")
    data = path.read_bytes()
    header = json.loads(data[20:20 + struct.unpack("<I", data[12:16])[0]])
    assert "NORMAL" in header["meshes"][0]["primitives"][0]["attributes"]
    out = reload(path)
    radial = out.vertices / np.linalg.norm(out.vertices, axis=1, keepdims=True)
    assert (np.einsum("ni,ni->n", np.asarray(out.vertex_normals), radial) > 0.95).all()


def test_output_frame_faces_the_viewer(tmp_path):
    """OpenLRM's input camera sits at -Y world (azimuth -90), TripoSR's at +X (azimuth 0):
    after export the camera side is +Z and world up (+z) is +Y, faces still outward."""
    base = extract_mesh(lambda p: 3 + 20 * (0.3 - p.norm(dim=-1)), 20, 1.0, 3.0)
    for azimuth, camera_dir in [(-90.0, [0, -1, 0]), (0.0, [1, 0, 0])]:
        # a ball with a marker vertex towards the camera and one towards world up
        v = np.concatenate([base.vertices, [np.array(camera_dir, np.float32), [0, 0, 1]]])
        mesh = Mesh(v, base.faces)
        out = reload(export_mesh(mesh, tmp_path / f"f{azimuth}.glb", frame=world_to_view_frame(azimuth)))
        np.testing.assert_allclose(out.vertices[-2], [0, 0, 1], atol=1e-6)
        np.testing.assert_allclose(out.vertices[-1], [0, 1, 0], atol=1e-6)
        assert out.volume > 0


def test_reflection_frame_is_refused(ball, tmp_path):
    with pytest.raises(ValueError, match="rotation"):
        export_mesh(ball, tmp_path / "m.glb", frame=np.diag([1.0, 1.0, -1.0]))
    export_mesh(ball, tmp_path / "m.glb", frame=torch.eye(3))  # torch frames are accepted


def test_bad_suffix_and_empty_mesh_are_user_errors(ball, tmp_path):
    with pytest.raises(LRMError, match="unknown format"):
        export_mesh(ball, tmp_path / "m.stl")
    with pytest.raises(LRMError, match="empty"):
        export_mesh(Mesh(np.zeros((0, 3)), np.zeros((0, 3))), tmp_path / "m.glb")


def test_failed_write_keeps_the_previous_file(ball, tmp_path, monkeypatch):
    path = tmp_path / "m.glb"
    path.write_bytes(b"previous")

    def broken_fsync(fd):  # the temporary file exists and holds part of the data
        raise OSError("disk full")

    monkeypatch.setattr(export_module.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        export_mesh(ball, path)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.glb"]  # no temporary file left behind
