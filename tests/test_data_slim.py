"""`lrm data slim`: the small copy a remote trainer gets keeps exactly the input views, their
cameras and a fixed subset of the point samples, and trains like the full dataset."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lrm.cli.main import main
from lrm.data import format as fmt
from lrm.data.samples import read_samples
from lrm.train.config import DataConfig
from lrm.train.data import FolderSource, TrainSamples
from lrm.train.synthetic import write_synthetic


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    # 3 train + 1 val objects of 6 views; 2048 surface and 4096 occupancy points each
    return write_synthetic(tmp_path_factory.mktemp("full") / "data", objects=3, views=6, size=24, val=1, points=True)


def _rows(a: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in a.reshape(len(a), -1)}


def test_slim_keeps_input_views_cameras_and_a_point_subset(full, tmp_path):
    out = tmp_path / "slim"
    rc = main(["data", "slim", str(full), "-o", str(out), "--occupancy-points", "100", "--surface-points", "50",
               "--val-views", "3", "--quiet"])
    assert rc == 0
    assert fmt.list_objects(out, "train") == fmt.list_objects(full, "train")
    assert fmt.list_objects(out, "val") == fmt.list_objects(full, "val")
    for split, views in (("train", 1), ("val", 3)):
        for oid in fmt.list_objects(out, split):
            d = fmt.object_dir(out, oid)
            assert sorted(p.name for p in d.glob("*.png")) == [f"rgba_{i:03d}.png" for i in range(views)]
            src, got = fmt.read_object(full, oid), fmt.read_object(out, oid)
            assert got.meta["views"] == views and got.meta["ring"] == 0
            assert got.meta["split"] == split
            np.testing.assert_array_equal(got.rgba, src.rgba[:views])  # lossless PNGs
            np.testing.assert_array_equal(got.c2w, src.c2w[:views])
            np.testing.assert_array_equal(got.intrinsics, src.intrinsics[:views])
            a, b = read_samples(fmt.object_dir(full, oid)), read_samples(d)
            assert len(b.occupancy) == 100 and len(b.surface_xyz) == 50
            # every kept point is a row of the original, with its own label / colour / normal
            whole = _rows(np.concatenate([a.occupancy_xyz, a.occupancy[:, None]], 1))
            assert _rows(np.concatenate([b.occupancy_xyz, b.occupancy[:, None]], 1)) <= whole
            whole = _rows(np.concatenate([a.surface_xyz, a.surface_rgb, a.surface_normal], 1))
            kept = _rows(np.concatenate([b.surface_xyz, b.surface_rgb, b.surface_normal], 1))
            assert kept <= whole and len(kept) == 50  # no point twice
            # inside and outside both survive a random subset of a half-and-half set
            assert 0.2 < b.occupancy.mean() < 0.8


def test_slim_is_deterministic_resumable_and_trainable(full, tmp_path):
    args = ["--occupancy-points", "64", "--surface-points", "32", "--quiet"]
    assert main(["data", "slim", str(full), "-o", str(tmp_path / "a"), *args]) == 0
    assert main(["data", "slim", str(full), "-o", str(tmp_path / "b"), *args]) == 0
    for oid in fmt.list_objects(full, "train"):
        a = (fmt.object_dir(tmp_path / "a", oid) / "samples.npz").read_bytes()
        assert a == (fmt.object_dir(tmp_path / "b", oid) / "samples.npz").read_bytes()
    # resumable: a finished object is kept as it is, a missing one is written again
    first = fmt.list_objects(full, "train")[0]
    marker = fmt.object_dir(tmp_path / "a", first) / "rgba_000.png"
    Image.fromarray(np.zeros((24, 24, 4), np.uint8), "RGBA").save(marker)
    import shutil

    shutil.rmtree(fmt.object_dir(tmp_path / "a", fmt.list_objects(full, "train")[1]))
    assert main(["data", "slim", str(full), "-o", str(tmp_path / "a"), *args]) == 0
    assert np.asarray(Image.open(marker)).max() == 0
    assert len(fmt.list_objects(tmp_path / "a", "train")) == 3
    # the trainer reads it: a sample holds all 64 + 32 points of the object
    source = FolderSource(str(tmp_path / "b"), "train")
    source.require_points()
    cfg = DataConfig(root=str(tmp_path / "b"), side_views=0, source_view=0, occupancy_points=64,
                     surface_points=32, render_low=16, render_high=16, region=16)
    sample = TrainSamples(source, cfg, 24, seed=0)[0]
    assert sample["occupancy_xyz"].shape == (64, 3) and sample["surface_xyz"].shape == (32, 3)
    assert sample["target"].shape == (1, 3, 16, 16)


def test_slim_zero_keeps_all_and_test_split_on_request(full, tmp_path):
    assert main(["data", "slim", str(full), "-o", str(tmp_path / "s"), "--occupancy-points", "0",
                 "--surface-points", "0", "--splits", "val", "--quiet"]) == 0
    [oid] = fmt.list_objects(tmp_path / "s")
    assert oid == fmt.list_objects(full, "val")[0]
    a, b = read_samples(fmt.object_dir(full, oid)), read_samples(fmt.object_dir(tmp_path / "s", oid))
    np.testing.assert_array_equal(a.occupancy_xyz, b.occupancy_xyz)
    np.testing.assert_array_equal(a.surface_rgb, b.surface_rgb)


@pytest.mark.parametrize("args, words", [
    (["--views", "0"], "at least 1"),
    (["--surface-points", "-1"], ">= 0"),
    (["--splits", "train,nope"], "--splits"),
    (["--splits", "test"], "no complete objects"),
])
def test_slim_bad_arguments_are_one_line_errors(full, tmp_path, args, words):
    proc = subprocess.run([sys.executable, "-m", "lrm", "data", "slim", str(full), "-o", str(tmp_path / "x"),
                           *args, "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_slim_refuses_its_own_dataset_and_a_foreign_output(full, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lrm", "data", "slim", str(full), "-o", str(full), "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "another folder" in proc.stderr
    other = write_synthetic(tmp_path / "other", objects=1, views=2, size=16, val=0)
    proc = subprocess.run([sys.executable, "-m", "lrm", "data", "slim", str(full), "-o", str(other), "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "not a slim copy" in proc.stderr
    assert len(fmt.list_objects(other)) == 1  # untouched
