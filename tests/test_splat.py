"""Gaussian-splat export (lrm/splat.py): splats on the iso-surface of analytic fields, drawn by an
independent numpy splat rasteriser (tests/splat_reference.py) against a numpy volume render of the
field; the bundled model's splats against its own mesh; the INRIA .ply fields read back; and
`lrm reconstruct --splat` end to end."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lrm.errors import LRMError
from lrm.splat import REST, SH_C0, read_splat_ply, splats_from_field, write_splat_ply, z_to
from splat_reference import look_at_origin, psnr, quaternion_matrix, splat_render, volume_render

SIGMA, R = 200.0, 0.5  # a ball of radius 0.5, density 200 inside, red


def ball_density(xyz):
    return torch.where(xyz.norm(dim=-1) < R, torch.full_like(xyz[:, 0], SIGMA), torch.zeros_like(xyz[:, 0]))


def ball_color(xyz):
    return torch.tensor([0.9, 0.1, 0.1]).expand(len(xyz), 3)


def test_a_ball_becomes_its_shell_of_splats():
    """n = 32 over [-1, 1]³: voxel side s = 1/16. Kept are the inside voxels (σ = 200 >= level 3)
    with an outside 6-neighbour: all their centres lie within one voxel diagonal of the sphere,
    none deeper. Counting per voxel face of area A = 1/256 over the sphere (area π): each kept
    voxel exposes at least one face, and the exposed faces number ∫(|nx|+|ny|+|nz|) dA / A =
    1.5 π 256 = 1206; each column along the normal's largest axis holds at least one kept voxel,
    ∫ max|n_i| dA / A >= π 256 / √3 = 464. (Measured: 632.) Each splat is a disc facing out:
    its normal within 45° of the radius (a voxel staircase's central differences; measured 42°)."""
    s = splats_from_field(ball_density, ball_color, 1.0, 3.0, resolution=32)
    step = 2 / 32
    r = np.linalg.norm(s.xyz, axis=1)
    assert r.max() < R and r.min() > R - math.sqrt(3) * step
    assert 464 < len(r) <= 1206
    assert (np.einsum("nc,nc->n", s.normal, s.xyz / r[:, None]) > math.cos(math.radians(45))).all()
    np.testing.assert_allclose(np.linalg.norm(s.normal, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(s.opacity, 1 - 1e-6, rtol=1e-6)  # 1 - 2^(-200/3): opaque
    np.testing.assert_allclose(s.scale, np.tile([0.6 * step, 0.6 * step, 0.1 * step], (len(r), 1)), rtol=1e-6)
    np.testing.assert_allclose(s.rgb, np.tile([0.9, 0.1, 0.1], (len(r), 1)), atol=1e-6)
    # opacity follows density relative to the level: a ball at exactly twice the level gives
    # 1 - 2^-2 = 0.75 (one voxel in is still inside the ball)
    half = splats_from_field(ball_density, ball_color, 1.0, SIGMA / 2, resolution=32)
    np.testing.assert_allclose(half.opacity, 0.75, atol=1e-6)
    # the control: a field without the ball gives nothing to write
    empty = splats_from_field(lambda x: torch.zeros(len(x)), ball_color, 1.0, 3.0, resolution=16)
    assert len(empty.xyz) == 0
    with pytest.raises(LRMError, match="--mesh-threshold\) > 0"):
        splats_from_field(ball_density, ball_color, 1.0, 0.0)


def ellipsoid(width: float):
    """Density 100 inside an ellipsoid (semi-axes 0.45, 0.3, 0.7), falling to 0 over ~4 `width`
    across its surface, where it is 50; colour a gradient over space."""
    axes = torch.tensor([0.45, 0.3, 0.7])

    def density(x):
        return 100 * torch.sigmoid((1 - ((x / axes) ** 2).sum(-1).sqrt()) / width)

    return density, lambda x: (0.5 + 0.45 * x).clamp(0, 1)


@pytest.mark.parametrize("width", [0.02, 0.04])
def test_splats_draw_what_the_field_renders(width):
    """Two views (64², focal 0.9) of an ellipsoid field: the splats at its surface level (50),
    drawn by the reference rasteriser, against the reference volume render of the field. Measured
    34.4 / 32.1 dB (width 0.02) and 26.8 / 25.6 dB (0.04, a softer edge than splats draw); the
    bar is 24 dB. The controls score far below it: the old splats' faint opacity (0.05), a white
    image, and the splats of another shape (a ball of the same volume)."""
    density, color = ellipsoid(width)
    s = splats_from_field(density, color, 1.0, 50.0, resolution=64)
    quats = z_to(s.normal)
    other = splats_from_field(lambda x: density(x) * 0 + 100 * (x.norm(dim=-1) < 0.46), color, 1.0, 50.0,
                              resolution=64)
    for eye in (np.array([0.8, -2.3, 0.7]), np.array([-2.0, 1.2, -0.5])):
        field = volume_render(density, color, eye, 64, 0.9)
        got = psnr(splat_render(s.xyz, s.rgb, s.opacity, s.scale, quats, eye, 64, 0.9), field)
        assert got > 24, got
        ghost = psnr(splat_render(s.xyz, s.rgb, np.full(len(s.xyz), 0.05), s.scale, quats, eye, 64, 0.9), field)
        ball = psnr(splat_render(other.xyz, other.rgb, other.opacity, other.scale, z_to(other.normal), eye, 64,
                                 0.9), field)
        assert max(ghost, ball, psnr(np.ones_like(field), field)) < got - 5, (got, ghost, ball)


def test_the_bundled_models_splats_show_its_mesh():
    """The bundled model on examples/fire_extinguisher.png: a density field that peaks near 5
    with the surface at 0.5. Its splats, drawn by the reference rasteriser from an oblique
    camera, cover the mesh's silhouette (IoU measured 0.89 at 96², bar 0.8), opaque (median
    opacity 0.88); the mirror image scores lower (0.74), so the comparison sees the shape."""
    from lrm.mesh.view_render import rasterize
    from lrm.pipeline import Reconstructor

    rec = Reconstructor("default", device="cpu", dtype="fp32")
    r = rec.reconstruct(Path(__file__).resolve().parents[1] / "examples" / "fire_extinguisher.png",
                        mesh_resolution=96)
    s = rec.splats(r.planes, 96)
    assert np.median(s.opacity) > 0.6
    eye = np.array([0.5, -2.2, 0.6])
    drawn = (splat_render(s.xyz, s.rgb, s.opacity, s.scale, z_to(s.normal), eye, 96, 0.9) < 0.97).any(-1)
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = look_at_origin(eye), eye
    _, alpha = rasterize(r.mesh.vertices, r.mesh.faces, None, c2w, np.array([0.9, 0.9, 0.5, 0.5]), 96)
    mesh = alpha > 0.5
    iou = lambda a, b: (a & b).sum() / (a | b).sum()  # noqa: E731
    assert iou(drawn, mesh) > 0.8 and iou(drawn[:, ::-1], mesh) < iou(drawn, mesh) - 0.05


def test_ply_holds_the_inria_fields(tmp_path):
    s = splats_from_field(ball_density, ball_color, 1.0, 3.0, resolution=16)
    frame = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float32)  # Z up -> Y up
    path = write_splat_ply(s, tmp_path / "splat.ply", frame)
    header = path.read_bytes().split(b"end_header")[0].decode()
    assert "format binary_little_endian 1.0" in header and f"element vertex {len(s.xyz)}" in header
    back = read_splat_ply(path)
    names = list(back)
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9:9 + REST] == [f"f_rest_{i}" for i in range(45)]  # degree 3, as INRIA's loader expects
    assert names[9 + REST:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert all((back[f"f_rest_{i}"] == 0).all() for i in range(45))
    xyz = np.stack([back["x"], back["y"], back["z"]], 1)
    to_file = np.diag([1.0, -1, -1]) @ frame  # then the 3DGS convention: Y down, the viewer on -Z
    np.testing.assert_allclose(xyz, s.xyz @ to_file.T, atol=1e-6)
    normals = np.stack([back["nx"], back["ny"], back["nz"]], 1)
    np.testing.assert_allclose(normals, s.normal @ to_file.T, atol=1e-6)
    np.testing.assert_allclose(back["f_dc_0"] * SH_C0 + 0.5, s.rgb[:, 0], atol=1e-6)  # degree-0 SH colour
    np.testing.assert_allclose(1 / (1 + np.exp(-back["opacity"])), s.opacity, rtol=1e-5)  # stored as a logit
    np.testing.assert_allclose(np.exp(np.stack([back[f"scale_{i}"] for i in range(3)], 1)), s.scale, rtol=1e-6)
    quats = np.stack([back[f"rot_{i}"] for i in range(4)], 1)
    turned = np.stack([quaternion_matrix(q) @ [0.0, 0.0, 1.0] for q in quats])
    np.testing.assert_allclose(turned, normals, atol=1e-5)  # each disc's local z is its normal
    empty = splats_from_field(lambda x: torch.zeros(len(x)), ball_color, 1.0, 3.0, resolution=8)
    with pytest.raises(LRMError, match="empty splat"):
        write_splat_ply(empty, tmp_path / "empty.ply")


def test_z_to_turns_z_onto_each_normal():
    n = np.array([[0, 0, 1.0], [0, 0, -1.0], [1, 0, 0], [0, 1, 0], [0.6, -0.48, 0.64]])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    q = z_to(n)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1, atol=1e-12)
    np.testing.assert_allclose(np.stack([quaternion_matrix(x) @ [0, 0, 1.0] for x in q]), n, atol=1e-12)


def test_reconstruct_writes_splats(tmp_path, capsys):
    """The bundled model on a bundled example: splat.ply beside the mesh, inside the field's box,
    its colours red on the front where the photo is seen, the field's elsewhere (--vertex-colors)."""
    from lrm.cli.main import main

    example = Path(__file__).resolve().parents[1] / "examples" / "fire_extinguisher.png"
    reds = {}
    for colors in ("photo", "field"):
        out = tmp_path / colors
        code = main(["reconstruct", str(example), "-o", str(out), "--mesh-resolution", "48", "--splat",
                     "--splat-resolution", "48", "--dtype", "fp32", "--vertex-colors", colors])
        assert code == 0, capsys.readouterr().err
        back = read_splat_ply(out / "fire_extinguisher" / "splat.ply")
        xyz = np.stack([back["x"], back["y"], back["z"]], 1)
        assert 100 < len(xyz) <= 48**3 and np.abs(xyz).max() < 1.0
        front = back["nz"] < -0.8  # facing the input camera, which is on -Z in the file's (3DGS) frame
        rgb = 0.5 + SH_C0 * np.stack([back[f"f_dc_{c}"] for c in range(3)], 1)[front]
        reds[colors] = float((rgb[:, 0] - rgb[:, 1:].mean(1)).mean())
        assert "splat" in capsys.readouterr().err
    assert reds["photo"] > reds["field"] + 0.1, reds  # the photo's red cabinet
