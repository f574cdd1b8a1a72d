"""Gaussian-splat export (lrm/splat.py): the visible shell of an analytic field, the INRIA .ply
fields read back, and `lrm reconstruct --splat` end to end."""

import math

import numpy as np
import pytest
import torch

from lrm.errors import LRMError
from lrm.splat import SH_C0, read_splat_ply, splats_from_field, write_splat_ply

SIGMA, R = 200.0, 0.5  # a ball of radius 0.5, density 200 inside, red


def ball_density(xyz):
    return torch.where(xyz.norm(dim=-1) < R, torch.full_like(xyz[:, 0], SIGMA), torch.zeros_like(xyz[:, 0]))


def ball_color(xyz):
    return torch.tensor([0.9, 0.1, 0.1]).expand(len(xyz), 3)


def test_a_ball_becomes_its_shell_of_splats():
    """n = 32 over [-1, 1]³: voxel side 1/16. Kept are the inside voxels (alpha = 1 - exp(-200/16)
    = 0.999996) with an outside 6-neighbour: all their centres lie within one voxel diagonal of the
    sphere, none deeper. Counting per voxel face of area A = 1/256 over the sphere (area π): each
    kept voxel exposes at least one face, and the exposed faces number ∫(|nx|+|ny|+|nz|) dA / A =
    1.5 π 256 = 1206; each column along the normal's largest axis holds at least one kept voxel,
    ∫ max|n_i| dA / A >= π 256 / √3 = 464. (Measured: 632.)"""
    s = splats_from_field(ball_density, ball_color, 1.0, resolution=32)
    step = 2 / 32
    r = np.linalg.norm(s.xyz, axis=1)
    assert r.max() < R and r.min() > R - math.sqrt(3) * step
    assert 464 < len(r) <= 1206
    np.testing.assert_allclose(s.opacity, 1 - math.exp(-SIGMA * step), rtol=1e-5)
    np.testing.assert_allclose(s.scale, 0.6 * step)
    np.testing.assert_allclose(s.rgb, np.tile([0.9, 0.1, 0.1], (len(r), 1)), atol=1e-6)
    # the control: a field without the ball gives nothing to write
    empty = splats_from_field(lambda x: torch.zeros(len(x)), ball_color, 1.0, resolution=16)
    assert len(empty.xyz) == 0


def test_ply_holds_the_inria_fields(tmp_path):
    s = splats_from_field(ball_density, ball_color, 1.0, resolution=16)
    frame = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float32)  # Z up -> Y up
    path = write_splat_ply(s, tmp_path / "splat.ply", frame)
    header = path.read_bytes().split(b"end_header")[0].decode()
    assert "format binary_little_endian 1.0" in header and f"element vertex {len(s.xyz)}" in header
    back = read_splat_ply(path)
    assert list(back)[:3] == ["x", "y", "z"] and "f_dc_0" in back and "rot_3" in back
    np.testing.assert_allclose(np.stack([back["x"], back["y"], back["z"]], 1), s.xyz @ frame.T, atol=1e-6)
    np.testing.assert_allclose(back["f_dc_0"] * SH_C0 + 0.5, s.rgb[:, 0], atol=1e-6)  # degree-0 SH colour
    np.testing.assert_allclose(1 / (1 + np.exp(-back["opacity"])), s.opacity, rtol=1e-5)  # stored as a logit
    np.testing.assert_allclose(np.exp(back["scale_1"]), s.scale, rtol=1e-6)  # stored as a log
    assert (back["rot_0"] == 1).all() and (back["rot_1"] == 0).all()
    empty = splats_from_field(lambda x: torch.zeros(len(x)), ball_color, 1.0, resolution=8)
    with pytest.raises(LRMError, match="empty splat"):
        write_splat_ply(empty, tmp_path / "empty.ply")


def test_reconstruct_writes_splats(tmp_path, capsys):
    """The bundled model on a bundled example: splat.ply beside the mesh, inside the field's box."""
    from pathlib import Path

    from lrm.cli.main import main

    example = Path(__file__).resolve().parents[1] / "examples" / "fire_extinguisher.png"
    code = main(["reconstruct", str(example), "-o", str(tmp_path / "out"), "--mesh-resolution", "48",
                 "--splat", "--splat-resolution", "32", "--dtype", "fp32"])
    assert code == 0, capsys.readouterr().err
    back = read_splat_ply(tmp_path / "out" / "fire_extinguisher" / "splat.ply")
    xyz = np.stack([back["x"], back["y"], back["z"]], 1)
    assert 100 < len(xyz) <= 32**3 and np.abs(xyz).max() < 1.0
    assert "splat" in capsys.readouterr().err
