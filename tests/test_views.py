"""Several posed views in (lrm/views.py): transforms.json and Zero123++ sheets, their errors, and
`lrm reconstruct --views-from` end to end on a reduced InstantMesh-architecture model."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from lrm import cameras
from lrm.cli.main import main
from lrm.errors import LRMError
from lrm.views import read_views
from test_cli import _assert_one_line_error
from tests.colmap_helpers import rotation, write_colmap_text
from test_weights_instantmesh import small_cfg


def test_zero123pp_sheet_is_cut_row_major_with_the_rig():
    sheet = np.zeros((960, 640, 3), np.uint8)
    for k in range(6):
        r, c = divmod(k, 2)
        sheet[r * 320:(r + 1) * 320, c * 320:(c + 1) * 320] = 40 * k
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "sheet.png"
    Image.fromarray(sheet).save(path)
    views = read_views(f"zero123pp:{path}")
    assert [v.shape for v in views.images] == [(320, 320, 4)] * 6
    assert [round(float(v[..., 0].mean()) * 255) for v in views.images] == [0, 40, 80, 120, 160, 200]
    torch.testing.assert_close(views.cameras16, cameras.zero123pp_cameras())
    Image.fromarray(sheet[:900]).save(path)
    with pytest.raises(LRMError, match="3 rows x 2 columns"):
        read_views(f"zero123pp:{path}")


def write_scene(folder, n=3, size=64, angle=0.7, radius=4.0, **frame_extra):
    """n views on a ring at elevation 20 degrees: a grey disc on transparent ground."""
    folder.mkdir(parents=True, exist_ok=True)
    c2w = cameras.orbit_cameras(n, radius, 20.0, 0.0)
    frames = []
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        img = np.zeros((size, size, 4), np.uint8)
        disc = (yy - size / 2) ** 2 + (xx - size / 2 + 4 * i) ** 2 < (size / 4) ** 2
        img[disc] = [100 + 40 * i, 90, 80, 255]
        Image.fromarray(img, "RGBA").save(folder / f"r_{i}.png")
        frames.append({"file_path": f"./r_{i}", "transform_matrix": c2w[i].tolist(), **frame_extra})
    (folder / "transforms.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    return c2w


def test_transforms_json_poses_and_focal(tmp_path):
    c2w = write_scene(tmp_path / "scene", angle=0.7)
    views = read_views(str(tmp_path / "scene"))  # the folder, or the file itself
    assert views.name == "scene" and len(views.images) == 3
    f = 0.5 / math.tan(0.35)  # camera_angle_x 0.7 rad over the image width, normalised
    torch.testing.assert_close(views.cameras16[:, 12:], torch.tensor([[f, f, 0.5, 0.5]] * 3))
    torch.testing.assert_close(views.cameras16[:, :12], c2w[:, :3, :4].reshape(3, 12))
    # explicit pixel intrinsics win over the angle
    write_scene(tmp_path / "px", n=1, fl_x=80.0, cx=30.0, w=64, h=64)
    cam = read_views(str(tmp_path / "px" / "transforms.json")).cameras16[0, 12:]
    torch.testing.assert_close(cam, torch.tensor([80 / 64, 80 / 64, 30 / 64, 0.5]))


def write_colmap_capture(folder, n=8, radius=10.0, width=128, height=96, f=100.0):
    """A COLMAP text capture: n cameras on a ring of `radius` around (3, -1, 5) in a rotated world,
    all looking at that point; frame i is a 128 x 96 image whose centre square has grey 20 * i and
    whose 16-px side strips are red. -> the OpenGL c2w [n, 4, 4] written."""
    az = np.radians(np.linspace(-90, 170, n))
    ring = np.stack([radius * np.cos(az), radius * np.sin(az), np.full(n, 2.0)], 1)
    world = np.eye(4)
    world[:3, :3], world[:3, 3] = rotation(5), [3.0, -1.0, 5.0]
    c2w = world @ cameras.look_at(torch.from_numpy(ring).float()).double().numpy()
    (folder / "images").mkdir(parents=True)
    names = [f"f{i:02d}.png" for i in range(n)]
    for i, name in enumerate(names):
        img = np.full((height, width, 3), 20 * i, np.uint8)
        img[:, :16], img[:, -16:] = [255, 0, 0], [255, 0, 0]
        Image.fromarray(img).save(folder / "images" / name)
    write_colmap_text(folder / "sparse" / "0", c2w, names, width, height, f, width / 2, height / 2)
    return c2w


def test_colmap_capture_views(tmp_path):
    """A COLMAP folder gives 6 of its 8 frames (evenly spaced, the first kept), normalised as `lrm
    data capture` does: frame 0 at the rig's radius 4 as the canonical front camera, every camera
    still on one ring around the origin, relative poses kept, squares cropped from the centre."""
    c2w = write_colmap_capture(tmp_path / "cap")
    views = read_views(str(tmp_path / "cap"))
    assert views.name == "cap" and len(views.images) == 6
    picked = [0, 1, 3, 4, 6, 7]  # round(linspace(0, 7, 6))
    assert [round(float(v[160, 160, 0]) * 255 / 20) for v in views.images] == picked  # grey 20 * i
    assert all(v.shape == (320, 320, 4) for v in views.images)
    assert all(float(np.abs(v[..., 0] - v[..., 1]).max()) < 0.02 for v in views.images)  # red strips cropped off
    got = torch.zeros(6, 4, 4, dtype=torch.float64)
    got[:, :3, :4] = views.cameras16[:, :12].reshape(6, 3, 4).double()
    got[:, 3, 3] = 1
    torch.testing.assert_close(got[0], cameras.canonical_c2w(4.0).double(), atol=1e-5, rtol=0)
    torch.testing.assert_close(got[:, :3, 3].norm(dim=1), torch.full((6,), 4.0, dtype=torch.float64),
                               atol=1e-4, rtol=0)
    given = torch.from_numpy(c2w[picked])
    rel_given = torch.linalg.inv(given[:1]) @ given  # poses relative to frame 0, in the capture's units
    rel_got = torch.linalg.inv(got[:1]) @ got
    torch.testing.assert_close(rel_got[:, :3, :3], rel_given[:, :3, :3], atol=1e-5, rtol=0)
    scale = math.hypot(10.0, 2.0) / 4  # capture distance of every camera from the ring's centre / rig radius
    torch.testing.assert_close(rel_got[:, :3, 3] * scale, rel_given[:, :3, 3], atol=1e-4, rtol=0)
    # the 96 x 96 centre square of a 128 x 96 frame: fx = 100 / 96, principal point in the middle
    torch.testing.assert_close(views.cameras16[:, 12:], torch.tensor([[100 / 96, 100 / 96, 0.5, 0.5]] * 6))


def test_broken_colmap_capture_is_a_one_line_error(tmp_path, capsys):
    write_colmap_capture(tmp_path / "cap", n=3)
    (tmp_path / "cap" / "images" / "f01.png").unlink()
    with pytest.raises(LRMError, match="not a readable COLMAP capture"):
        read_views(str(tmp_path / "cap"))
    (tmp_path / "cap" / "sparse" / "0" / "cameras.txt").write_text("1 PINHOLE 128 wide\n")
    code = main(["reconstruct", "--views-from", str(tmp_path / "cap"), "-o", str(tmp_path / "out")])
    _assert_one_line_error(code, capsys.readouterr().err, "COLMAP")


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d["frames"][0].update(file_path="../outside"), "leads out of"),
    (lambda d: d["frames"][1].update(file_path="missing.png"), "no such image"),
    (lambda d: d["frames"][0].update(transform_matrix=[[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]),
     "rigid"),
    (lambda d: d["frames"][0].update(transform_matrix=[[1, 0], [0, 1]]), "4 x 4"),
    (lambda d: d.pop("camera_angle_x"), "no focal length"),
    (lambda d: d.update(camera_angle_x=-1), "positive number"),
    (lambda d: d.update(frames=[]), "non-empty list"),
])
def test_bad_transforms_are_one_line_errors(tmp_path, edit, fragment):
    write_scene(tmp_path / "s")
    data = json.loads((tmp_path / "s" / "transforms.json").read_text())
    edit(data)
    (tmp_path / "s" / "transforms.json").write_text(json.dumps(data))
    with pytest.raises(LRMError, match=fragment):
        read_views(str(tmp_path / "s"))


def test_non_square_views_are_refused(tmp_path):
    write_scene(tmp_path / "s", n=1)
    Image.new("RGBA", (64, 48)).save(tmp_path / "s" / "r_0.png")
    with pytest.raises(LRMError, match="must be square"):
        read_views(str(tmp_path / "s"))


@pytest.fixture
def multiview_dir(tmp_path):
    """A reduced InstantMesh-architecture model (random weights) saved as a model folder."""
    from lrm.model.lrm import LRM

    torch.manual_seed(0)
    model = LRM(small_cfg()).eval()
    model.save_pretrained(tmp_path / "im")
    return tmp_path / "im", model


def test_views_from_end_to_end(tmp_path, multiview_dir, model_dir, capsys):
    """`lrm reconstruct --views-from` writes the mesh of the planes the model computes from all
    views with their cameras; the CLI and the API agree; single-view models are refused."""
    from lrm.pipeline import Reconstructor

    folder, model = multiview_dir
    write_scene(tmp_path / "scene", n=3, size=64)
    views = read_views(str(tmp_path / "scene"))
    rec = Reconstructor(model, device="cpu", dtype="fp32")
    api = rec.reconstruct_views(views.images, views.cameras16, mesh=False)
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(tmp_path / "scene" / f"r_{i}.png"), np.float32) / 255)
                     for i in range(3)])
    rgb = x[..., :3] * x[..., 3:] + (1 - x[..., 3:])  # on white, as the model's background
    with torch.no_grad():
        direct = model(rgb.permute(0, 3, 1, 2)[None], views.cameras16[None])
    torch.testing.assert_close(api.planes, direct, atol=1e-5, rtol=0)
    threshold = float(torch.quantile(rec.density_fn(api.planes)(torch.rand(4096, 3) * 2 - 1), 0.8))
    code = main(["reconstruct", "--views-from", str(tmp_path / "scene"), "-o", str(tmp_path / "out"),
                 "--model", str(folder), "--mesh-resolution", "32", "--mesh-threshold", str(threshold),
                 "--dtype", "fp32"])
    assert code == 0
    out = tmp_path / "out" / "scene"
    assert (out / "mesh.glb").stat().st_size > 1000 and (out / "input.png").is_file()
    assert "(3 views)" in capsys.readouterr().err
    # a single-view model, and IMAGEs together with --views-from: one line, exit 2
    code = main(["reconstruct", "--views-from", str(tmp_path / "scene"), "-o", str(tmp_path / "o2"),
                 "--model", str(model_dir)])
    _assert_one_line_error(code, capsys.readouterr().err, "takes one view")
    code = main(["reconstruct", "x.png", "--views-from", str(tmp_path / "scene"), "-o", str(tmp_path / "o3")])
    _assert_one_line_error(code, capsys.readouterr().err, "one of the two")
