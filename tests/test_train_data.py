"""Training samples: pose normalisation, crops, backgrounds and the deterministic data stream."""

import numpy as np
import pytest
import torch

from lrm import cameras
from lrm.data.format import read_object
from lrm.render.rays import camera_rays
from lrm.train.config import DataConfig
from lrm.train.data import FolderSource, StepBatches, TrainSamples, make_sample
from lrm.train.synthetic import random_cameras, random_object, render_spheres
from train_helpers import dataset, one_thread  # noqa: F401 (autouse fixture)


def test_crop_of_a_normalised_sample_matches_a_ray_cast_of_the_rotated_object():
    """No resize (full res = image size): the alpha crop at `anchor` equals an exact ray cast
    of the object, rotated by the normalisation, through the crop's rays at the new poses."""
    rng = np.random.default_rng(3)
    spheres = random_object(rng)
    c2w, intr = random_cameras(4, rng)
    c2w[0] = cameras.look_at(torch.tensor([[1.2, -1.5, 0.7]]))[0]  # a source off the canonical pose
    rgba = render_spheres(spheres, c2w, intr, 40)
    from lrm.data.format import ObjectViews

    cfg = DataConfig(render_low=40, render_high=40, region=16, backgrounds=(0.0, 1.0))
    s = make_sample(ObjectViews("x", rgba, c2w.numpy(), intr.numpy()), np.random.default_rng(0), cfg, 32)
    d = float(c2w[0, :3, 3].norm())
    assert torch.allclose(s["c2w"][0], cameras.canonical_c2w(d), atol=1e-5)
    assert torch.allclose(s["source_camera"], cameras.camera_vector(cameras.canonical_c2w(d), intr[0]), atol=1e-5)
    m = s["c2w"][0] @ torch.linalg.inv(c2w[0])
    moved = [((m[:3, :3] @ torch.tensor(c, dtype=torch.float32) + m[:3, 3]).numpy(), r, col) for c, r, col in spheres]
    for v in range(4):
        full = render_spheres(moved, s["c2w"][v:v + 1], s["intrinsics"][v:v + 1], 40)[0, ..., 3] / 255.0
        r, c = (int(x) for x in s["anchor"][v])
        crop = torch.from_numpy(full[r:r + 16, c:c + 16]).float()
        assert torch.equal(s["alpha"][v, 0], crop), v
        # Where the object is absent the target is the drawn background grey.
        bg = s["target"][v][:, crop == 0]
        assert torch.all(bg == s["background"][v])


def test_anchor_rays_are_the_full_image_rays_of_the_region():
    c2w, intr = random_cameras(2, np.random.default_rng(0))
    anchor = torch.tensor([[3.0, 11.0], [20.0, 1.0]])
    o, d = camera_rays(c2w, intr, 32, 8, anchor)
    _, full = camera_rays(c2w, intr, 32)
    full = full.reshape(2, 32, 32, 3)
    for b, (r, c) in enumerate(anchor.long().tolist()):
        assert torch.allclose(d[b].reshape(8, 8, 3), full[b, r:r + 8, c:c + 8])


def test_source_view_is_on_its_background_and_resized(tmp_path):
    root = dataset(tmp_path, objects=2, views=5, size=24)
    data = TrainSamples(FolderSource(str(root), "train"), DataConfig(root=str(root)), 48, seed=1)
    s = data[0]
    assert s["source"].shape == (3, 48, 48) and s["target"].shape == (4, 3, 32, 32)
    assert s["source"][:, 0, 0].tolist() == [1.0, 1.0, 1.0]  # corner: white background
    assert s["resolution"].unique().numel() == 1 and 64 <= int(s["resolution"][0]) <= 128
    assert set(s["background"].tolist()) <= {0.0, 0.5, 1.0}


def test_stream_is_a_pure_function_of_seed_and_index(tmp_path):
    root = dataset(tmp_path, objects=3, views=5, size=16)
    cfg = DataConfig(root=str(root), render_low=16, render_high=24, region=8)
    a = TrainSamples(FolderSource(str(root), "train"), cfg, 16, seed=5)
    b = TrainSamples(FolderSource(str(root), "train"), cfg, 16, seed=5)
    for g in (0, 7):
        assert all(torch.equal(a[g][k], b[g][k]) for k in a[g])
    assert not torch.equal(a[0]["target"], a[1]["target"])
    # Every object exactly once per epoch; epochs are shuffled differently.
    orders = [[a.object_index(e * 3 + i) for i in range(3)] for e in range(4)]
    assert all(sorted(o) == [0, 1, 2] for o in orders)
    assert len({tuple(o) for o in orders}) > 1


@pytest.mark.parametrize("world,acc", [(1, 1), (2, 1), (3, 2)])
def test_step_batches_split_the_stream_across_ranks(world, acc):
    seen = []
    for rank in range(world):
        batches = list(StepBatches(2, 5, 4, acc, rank, world))
        assert len(batches) == 3 * acc and all(len(b) == 4 for b in batches)
        seen += [g for b in batches for g in b]
    # Steps 2..4 cover one contiguous range of global indices, each index once.
    per_step = 4 * acc * world
    assert sorted(seen) == list(range(2 * per_step, 5 * per_step))


def test_views_are_distinct_and_fixed_source_view_is_honoured(tmp_path):
    root = dataset(tmp_path, objects=1, views=5, size=16)
    src = FolderSource(str(root), "train")
    cfg = DataConfig(root=str(root), render_low=16, render_high=16, region=16, source_view=2,
                     backgrounds=(1.0,))
    data = TrainSamples(src, cfg, 16, seed=0)
    front = read_object(str(root), src.ids[0], views=[2])
    want = torch.from_numpy(front.rgba[0]).permute(2, 0, 1).float() / 255
    want = want[:3] * want[3:] + (1 - want[3:])
    for g in range(4):
        s = data[g]
        assert torch.allclose(s["target"][0], want, atol=1e-6)  # supervised source = view 2
        cams = s["c2w"][:, :3, 3]
        assert len({tuple(np.round(c.tolist(), 4)) for c in cams}) == 4  # 4 distinct views


def test_surface_jitter_moves_points_along_their_normals_and_keeps_colours():
    """data.surface_jitter: each surface point moves by a N(0, jitter) distance along its own
    normal (after the frame change), colours unchanged; 0 leaves the points where they are."""
    from lrm.data.samples import PointSamples
    from lrm.train.data import point_targets

    n = 4000
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-0.5, 0.5, (n, 3)).astype(np.float32)
    normal = rng.normal(size=(n, 3)).astype(np.float32)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    rgb = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    points = PointSamples(xyz, rgb, normal, np.zeros((8, 3), np.float32), np.zeros(8, np.float32))
    angle = 0.7  # a rotation about z plus a shift: offsets must follow the rotated normals
    frame = torch.eye(4)
    frame[:2, :2] = torch.tensor([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    frame[:3, 3] = torch.tensor([0.1, -0.2, 0.3])

    def targets(jitter: float) -> dict:
        cfg = DataConfig(occupancy_points=8, surface_points=n, surface_jitter=jitter)
        return point_targets(points, np.random.default_rng(5), cfg, frame)

    still, moved = targets(0.0), targets(0.05)
    assert torch.equal(still["surface_rgb"], moved["surface_rgb"])
    order = still["surface_rgb"].numpy()  # the same subset in the same order (same seed)
    assert np.allclose(order, moved["surface_rgb"].numpy())
    delta = (moved["surface_xyz"] - still["surface_xyz"]).numpy()
    rot = frame[:3, :3].numpy()
    picked = [int(np.flatnonzero((rgb == c).all(1))[0]) for c in order[:200]]
    world_normal = normal[picked] @ rot.T
    along = (delta[:200] * world_normal).sum(1)
    assert np.allclose(delta[:200], along[:, None] * world_normal, atol=1e-5)  # purely along the normal
    assert abs(np.std((delta * delta).sum(1) ** 0.5) - 0.05 * np.sqrt(1 - 2 / np.pi)) < 0.005
    assert abs(np.mean(np.abs((delta * delta).sum(1) ** 0.5)) - 0.05 * np.sqrt(2 / np.pi)) < 0.003
    with pytest.raises(Exception, match="surface_jitter"):
        DataConfig(surface_jitter=-0.1)
