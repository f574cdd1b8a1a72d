"""Batch mode: worker processes and distributed shards write exactly what single runs write."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrm.batch import Shard, shard_from_env
from lrm.cli.main import main


@pytest.fixture
def image_dir(tmp_path):
    """Three small RGBA images (coloured discs), one name repeated in a sub-folder-free set."""
    folder = tmp_path / "images"
    folder.mkdir()
    yy, xx = np.mgrid[:64, :64]
    for i, colour in enumerate([(220, 30, 30), (30, 200, 40), (40, 60, 210)]):
        img = np.zeros((64, 64, 4), np.uint8)
        img[(yy - 30 - 2 * i) ** 2 + (xx - 32 + 3 * i) ** 2 < (18 + 2 * i) ** 2] = [*colour, 255]
        Image.fromarray(img, "RGBA").save(folder / f"obj{i}.png")
    return folder


def _outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _args(model_dir, out, *extra):
    base = ["reconstruct", "-o", str(out), "--model", str(model_dir), "--no-mesh", "--views", "2",
            "--render-size", "16", "--source-size", "64", "--dtype", "fp32", "--threads", "1"]
    if _has_mesh():
        base = [a for a in base if a != "--no-mesh"] + ["--mesh-resolution", "24", "--mesh-threshold",
                                                        f"{_mesh_threshold(model_dir):.6f}"]
    return base + list(extra)


def _mesh_threshold(model_dir) -> float:
    """The median density of the toy model's field: a surface for every test image."""
    import torch

    from lrm.pipeline import Reconstructor

    rec = Reconstructor(str(model_dir), device="cpu", dtype="fp32")
    planes = rec.encode(np.full((64, 64, 3), 0.5, np.float32))
    xyz = torch.rand(4096, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return float(torch.quantile(rec.density_fn(planes)(xyz), 0.5))


def _has_mesh() -> bool:
    try:
        import lrm.mesh.extract  # noqa: F401
        return True
    except ImportError:
        return False


def test_shard_take_and_env(monkeypatch):
    items = list(range(7))
    assert Shard(1, 3).take(items) == [1, 4]
    parts = [Shard(r, 3).take(items) for r in range(3)]
    assert sorted(sum(parts, [])) == items  # disjoint and complete
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert shard_from_env() == Shard(2, 4, 0)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert shard_from_env() == Shard()


def test_workers_and_shards_match_single_runs(tmp_path, model_dir, image_dir, monkeypatch):
    single = tmp_path / "single"
    for img in sorted(image_dir.iterdir()):  # one image per run
        assert main([*_args(model_dir, single), str(img)]) == 0
    pooled = tmp_path / "pooled"
    assert main([*_args(model_dir, pooled, "--workers", "2", "--threads", "2"), str(image_dir)]) == 0
    want = _outputs(single)
    assert len(want) == 3 * (4 + _has_mesh()) and _outputs(pooled) == want  # input.png, 2 views, .lrm-done.json (+ mesh)

    sharded = tmp_path / "sharded"
    for rank in range(2):  # what `accelerate launch` with two processes does
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        assert main([*_args(model_dir, sharded), str(image_dir)]) == 0
    assert _outputs(sharded) == want
