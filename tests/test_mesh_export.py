"""Mesh export: formats reload with the same data, the output frame, atomic writes."""

import json
import struct

import numpy as np
import pytest
import torch
import trimesh

from lrm.cameras import world_to_view_frame
from lrm.errors import LRMError
from lrm.mesh.export import export_mesh
from lrm.mesh.extract import extract_mesh
from lrm.mesh.export import linear_to_srgb, srgb_to_linear
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
    if suffix == ".glb":  # glTF's COLOR_0 is linear; trimesh does not load it beside a material
        np.testing.assert_array_equal(glb_colors(tmp_path / "m.glb")[1], vertex_colors_u8(srgb_to_linear(ball.colors)))
    else:
        np.testing.assert_array_equal(out.visual.vertex_colors[:, :3], vertex_colors_u8(ball.colors))


def glb_colors(path):
    """The GLB's JSON and its first primitive's COLOR_0 as uint8 RGB [N, 3], read by hand."""
    import json
    import struct

    data = path.read_bytes()
    n = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + n])
    (prim,) = doc["meshes"][0]["primitives"]
    acc = doc["accessors"][prim["attributes"]["COLOR_0"]]
    view = doc["bufferViews"][acc["bufferView"]]
    assert acc["componentType"] == 5121 and acc["normalized"] and acc["type"] == "VEC4"  # uint8 RGBA
    start = 20 + n + 8 + view.get("byteOffset", 0) + acc.get("byteOffset", 0)  # past the BIN chunk header
    return doc, np.frombuffer(data[start:start + 4 * acc["count"]], np.uint8).reshape(-1, 4)[:, :3]


def test_glb_vertex_colours_are_linear_under_a_matte_material(tmp_path):
    """Read the GLB's JSON back: one material, metallic 0, roughness 1, on every primitive; COLOR_0
    holds linear values that give the sRGB colours back within 8-bit precision."""
    srgb = np.array([[0.30, 0.18, 0.10], [0.5, 0.5, 0.5], [0.9, 0.05, 0.2]], np.float32)  # dark brown, grey, red
    tri = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32), np.array([[0, 1, 2]]), colors=srgb)
    doc, stored = glb_colors(export_mesh(tri, tmp_path / "t.glb"))
    (mat,) = doc["materials"]
    assert mat["pbrMetallicRoughness"]["metallicFactor"] == 0.0
    assert mat["pbrMetallicRoughness"]["roughnessFactor"] == 1.0
    assert all(p["material"] == 0 for m in doc["meshes"] for p in m["primitives"])
    stored = stored / 255.0
    np.testing.assert_allclose(stored, [[0.0742, 0.0273, 0.0100], [0.2140, 0.2140, 0.2140], [0.7874, 0.0040, 0.0331]],
                               atol=2.5 / 255)  # by hand: ((c + 0.055) / 1.055) ** 2.4, c / 12.92 below 0.04045
    np.testing.assert_allclose(linear_to_srgb(stored), srgb, atol=0.02)


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
    from lrm import fileio

    path = tmp_path / "m.glb"
    path.write_bytes(b"previous")

    def broken_fsync(fd):  # the temporary file exists and holds part of the data
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        export_mesh(ball, path)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.glb"]  # no temporary file left behind
