"""Real-capture import: a synthetic "video" of a cube with COLMAP poses in an arbitrary world frame
comes out with the input view canonical and the object at the origin."""

import struct

import numpy as np
import pytest
import torch
from PIL import Image

from lrm.cameras import canonical_c2w, look_at
from lrm.data.capture import load_capture, normalize_capture, read_colmap

from lrm.data.gl_render import GLRenderer, LightConfig, egl_error  # noqa: E402

if egl_error():  # the synthetic capture is rendered: needs moderngl and EGL
    pytest.skip(egl_error(), allow_module_level=True)
from tests.colmap_helpers import quaternion, rotation, write_colmap_text  # noqa: E402
from tests.test_data_render import unit_cube  # noqa: E402


def make_capture(root, frames=10, side=96, pad=16):
    """Cube of half-size 0.7 at CENTRE in a rotated world, seen by cameras circling it at radius 4."""
    centre, rot = np.array([3.0, -1.0, 5.0]), rotation(3)
    cube = unit_cube().transformed(rot, centre, 0.7)
    az = np.radians(np.linspace(-80, 200, frames))
    local = np.stack([4 * np.cos(az) * np.cos(0.3), 4 * np.sin(az) * np.cos(0.3), 4 * np.sin(0.3) * np.ones_like(az)], 1)
    c2w_local = look_at(torch.from_numpy(local).float()).double().numpy()
    world = np.eye(4)
    world[:3, :3], world[:3, 3] = rot, centre
    c2w = world @ c2w_local  # OpenGL cameras in the arbitrary world, all looking at the centre
    intr = np.tile([0.75, 0.75, 0.5, 0.5], (frames, 1)).astype(np.float32)
    rgba = GLRenderer(side, light=LightConfig(1, 0, 0)).render(cube, c2w.astype(np.float32), intr)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names = [f"{i:03d}.jpg" for i in range(frames)]
    for i in range(frames):
        img = np.zeros((side, side + 2 * pad, 4), np.uint8)
        img[:, pad:pad + side] = rgba[i]
        Image.fromarray(img[..., :3]).save(root / "images" / names[i], quality=95)
        Image.fromarray(img[..., 3]).save(root / "masks" / f"{i:03d}.png")
    w2c = write_colmap_text(root / "sparse" / "0", c2w, names, side + 2 * pad, side, 0.75 * side, side / 2 + pad, side / 2)
    return rgba, w2c


def test_capture_normalised_to_canonical_input(tmp_path):
    from lrm.render.rays import camera_rays

    rgba, _ = make_capture(tmp_path / "cap")
    obj = load_capture(tmp_path / "cap", resolution=96, views=6)
    assert obj.rgba.shape == (6, 96, 96, 4) and obj.meta["masked"]
    np.testing.assert_allclose(obj.c2w[0], canonical_c2w(2.0).numpy(), atol=1e-5)  # the input view
    np.testing.assert_allclose(obj.intrinsics, np.tile([0.75, 0.75, 0.5, 0.5], (6, 1)), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(obj.c2w[:, :3, 3], axis=1), 2.0, atol=1e-4)  # one orbit
    np.testing.assert_array_equal(obj.rgba[0, ..., 3], rgba[0, ..., 3])  # the crop undid the padding
    origins, dirs = camera_rays(torch.from_numpy(obj.c2w), torch.from_numpy(obj.intrinsics), 96)
    for v in range(6):  # the object centre is the origin: the central rays pass through it
        centre_ray = 48 * 96 + 48
        miss = torch.linalg.cross(-origins[v, centre_ray], dirs[v, centre_ray]).norm()
        assert miss < 0.05, (v, float(miss))


def test_colmap_binary_equals_text(tmp_path):
    make_capture(tmp_path / "cap", frames=3)
    text = read_colmap(tmp_path / "cap" / "sparse" / "0")
    b = tmp_path / "bin"
    b.mkdir()
    cams = struct.pack("<Q", 1) + struct.pack("<iiQQ", 1, 1, 128, 96) + struct.pack("<4d", 72, 72, 64, 48)
    (b / "cameras.bin").write_bytes(cams)
    body = struct.pack("<Q", len(text))
    for i, fr in enumerate(text):
        q = quaternion(fr.w2c[:3, :3])
        body += struct.pack("<i7di", i + 1, *q, *fr.w2c[:3, 3], 1) + fr.name.encode() + b"\0"
        body += struct.pack("<Q", 1) + struct.pack("<ddq", 1.0, 2.0, -1)  # one 2D point
    (b / "images.bin").write_bytes(body)
    binary = read_colmap(b)
    assert [f.name for f in binary] == [f.name for f in text]
    for x, y in zip(binary, text):
        np.testing.assert_allclose(x.w2c, y.w2c, atol=1e-9)
        assert x.k == y.k and x.size == y.size


def test_normalize_capture_is_a_similarity():
    rng = np.random.default_rng(0)
    w2c = np.stack([np.linalg.inv(look_at(torch.from_numpy(p[None]).float())[0].double().numpy() @ np.diag([1.0, -1, -1, 1]))
                    for p in rng.normal(size=(5, 3)) * 3])
    c2w = normalize_capture(w2c, 2.0)
    original = np.linalg.inv(w2c)[:, :3, 3]
    d_old = np.linalg.norm(original[:, None] - original[None], axis=-1)
    d_new = np.linalg.norm(c2w[:, None, :3, 3] - c2w[None, :, :3, 3], axis=-1)
    np.testing.assert_allclose(d_new, d_old * (d_new[0, 1] / d_old[0, 1]), atol=1e-6)  # distances scale
    np.testing.assert_allclose(c2w[:, :3, :3] @ c2w[:, :3, :3].transpose(0, 2, 1), np.tile(np.eye(3), (5, 1, 1)), atol=1e-6)


def test_cli_capture(tmp_path, capsys):
    from lrm.cli.main import main
    from lrm.data.format import list_objects, read_object

    make_capture(tmp_path / "caps" / "mug_01", frames=4)
    (tmp_path / "caps" / "not_a_capture").mkdir()
    assert main(["data", "capture", str(tmp_path / "caps"), "-o", str(tmp_path / "ds"), "--resolution", "64",
                 "--views", "3", "--license", "CC-BY-4.0"]) == 0
    assert list_objects(tmp_path / "ds") == ["capture-mug_01"]
    meta = read_object(tmp_path / "ds", "capture-mug_01").meta
    assert meta["license"] == "CC-BY-4.0" and meta["split"] in ("train", "val") and meta["views"] == 3
    assert main(["data", "capture", str(tmp_path / "caps" / "not_a_capture"), "-o", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("turn", [False, True])
def test_capture_from_one_spot_is_refused(turn):
    """Identical poses (or a camera turning on one spot) have no convergence point to centre: the
    import refuses them instead of writing NaN cameras."""
    from lrm.errors import LRMError

    c2w = np.tile(np.linalg.inv(np.eye(4)), (4, 1, 1))
    c2w[:, :3, 3] = [1.0, 2.0, 3.0]
    if turn:
        c2w[:, :3, :3] = np.stack([rotation(s) for s in range(4)])
    with pytest.raises(LRMError, match="one camera position"):
        normalize_capture(np.linalg.inv(c2w), 2.0)
