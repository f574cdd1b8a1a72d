"""The dataset builder: failures logged and skipped, resume after a kill, shards, splits, packing."""

import json
from functools import partial

import numpy as np
import pytest
import trimesh

from lrm.data import format as fmt
from lrm.data.build import BuildConfig, build, in_shard, split_of
from lrm.data.sources import Asset, folder
from lrm.data.views import ViewConfig
from lrm.errors import LRMError

from lrm.data.gl_render import egl_error  # noqa: E402

if egl_error():  # no moderngl or no EGL (Debian: libegl1 libegl-mesa0 libgl1-mesa-dri libgles2)
    pytest.skip(egl_error(), allow_module_level=True)

CFG = BuildConfig(resolution=32, views=ViewConfig(views=3, ring=2))


@pytest.fixture
def meshes(tmp_path):
    """A folder with three good meshes, a corrupt one and an empty one."""
    d = tmp_path / "meshes"
    d.mkdir()
    for i, m in enumerate([trimesh.creation.box(), trimesh.creation.icosphere(1), trimesh.creation.cone(1, 2)]):
        m.visual.face_colors = [40 * i, 200, 100, 255]
        m.export(d / f"good{i}.ply")
    (d / "corrupt.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage")
    (d / "empty.obj").write_text("# nothing\n")
    return d


def test_corrupt_meshes_are_logged_and_skipped(meshes, tmp_path):
    out = tmp_path / "ds"
    stats = build(folder.assets(str(meshes)), out, CFG, progress=False)
    assert (stats["ok"], stats["failed"]) == (3, 2)
    assert fmt.list_objects(out) == ["folder-good0_ply", "folder-good1_ply", "folder-good2_ply"]
    log = [json.loads(line) for line in (out / "logs" / "shard-0-of-1.jsonl").read_text().splitlines()]
    assert {r["id"] for r in log} == {"folder-corrupt_glb", "folder-empty_obj"}
    reasons = {r["id"]: r["reason"] for r in log if r["status"] == "failed"}
    assert reasons["folder-corrupt_glb"].startswith("ValueError: trimesh cannot read this file")
    assert reasons["folder-empty_obj"] == "ValueError: no triangles in the file"
    again = build(folder.assets(str(meshes)), out, CFG, progress=False)  # logged failures are not retried
    assert again["todo"] == 0
    assert build(folder.assets(str(meshes)), out, CFG, retry_failed=True, progress=False)["failed"] == 2


def test_object_contents_meta_and_manifest(meshes, tmp_path):
    out = tmp_path / "ds"
    good = [a for a in folder.assets(str(meshes)) if "good" in a.id]
    held = Asset("holdout-cube", "test-source", "CC0-1.0", good[0].load, {"path": "x"}, split="test")
    build(good + [held], out, CFG, progress=False)
    obj = fmt.read_object(out, "holdout-cube", ring=True)
    assert obj.rgba.shape == (3, 32, 32, 4) and obj.ring_rgba.shape == (2, 32, 32, 4)
    meta = obj.meta
    for key in ("id", "source", "license", "faces", "split", "distances", "fov", "focal", "fit", "scale"):
        assert key in meta, key
    assert meta["split"] == "test" and meta["faces"] == 12 and meta["license"] == "CC0-1.0"
    np.testing.assert_allclose(meta["distances"], np.linalg.norm(obj.c2w[:, :3, 3], axis=1), atol=1e-3)
    ply = trimesh.load(fmt.mesh_path(out, "holdout-cube"))
    assert np.linalg.norm(ply.vertices, axis=1).max() == pytest.approx(1.0, abs=1e-5)  # normalised frame
    assert fmt.mesh_path(out, good[0].id) is None  # only test objects keep their mesh by default
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 4 and fmt.list_objects(out, "test") == ["holdout-cube"]
    with pytest.raises(LRMError, match="other settings"):
        build(good, out, BuildConfig(resolution=64, views=CFG.views), progress=False)


def test_resume_after_a_kill(meshes, tmp_path, monkeypatch):
    from PIL import Image

    out = tmp_path / "ds"
    good = [a for a in folder.assets(str(meshes)) if "good" in a.id]
    saves, real_save = [], Image.Image.save

    def dying_save(self, *args, **kwargs):  # the process dies while writing the 2nd object
        saves.append(1)
        if len(saves) == 5 + 3:
            raise KeyboardInterrupt
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        build(good, out, CFG, progress=False)
    monkeypatch.setattr(Image.Image, "save", real_save)
    done = fmt.list_objects(out) if (out / "manifest.jsonl").exists() else sorted(
        p.name for p in (out / "objects").iterdir() if fmt.is_complete(out, p.name))
    assert done == [good[0].id]
    assert [p.name for p in (out / "objects").iterdir()] == [good[0].id]  # no partial or temp folder
    first = (fmt.object_dir(out, good[0].id) / "meta.json").stat().st_mtime_ns
    stats = build(good, out, CFG, progress=False)
    assert (stats["todo"], stats["ok"]) == (2, 2)
    assert fmt.list_objects(out) == sorted(a.id for a in good)
    assert (fmt.object_dir(out, good[0].id) / "meta.json").stat().st_mtime_ns == first  # not redone


def test_shards_partition_and_splits(meshes, tmp_path):
    ids = [f"obj-{i}" for i in range(200)]
    owners = [[i for i in range(3) if in_shard(x, i, 3)] for x in ids]
    assert all(len(o) == 1 for o in owners) and {o[0] for o in owners} == {0, 1, 2}
    splits = [split_of(Asset(x, "s", "l", None), 0.1) for x in ids]
    assert set(splits) == {"train", "val"} and 5 < splits.count("val") < 40
    assert split_of(Asset("x", "s", "l", None, split="test"), 0.5) == "test"
    good = [a for a in folder.assets(str(meshes)) if "good" in a.id]
    out = tmp_path / "ds"
    a = build(good, out, CFG, shard=(0, 2), progress=False)
    b = build(good, out, CFG, shard=(1, 2), progress=False)
    assert a["shard"] + b["shard"] == 3 and fmt.list_objects(out) == sorted(x.id for x in good)


def test_pack_and_stream_round_trip(meshes, tmp_path):
    from lrm.data.shards import iter_shard, iter_shards, pack, shard_files

    good = [a for a in folder.assets(str(meshes)) if "good" in a.id]
    assets = good[:2] + [Asset("held", "s", "CC0-1.0", good[2].load, split="test")]
    build(assets, tmp_path / "ds", CFG, progress=False)
    files = pack(tmp_path / "ds", tmp_path / "shards", objects_per_shard=1)
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    assert len(files) == 3 and index["dataset"]["resolution"] == 32
    assert [e["split"] for e in index["shards"]] == ["train", "train", "test"]
    streamed = list(iter_shards(shard_files(tmp_path / "shards"), ring=True))
    assert sorted(o.id for o in streamed) == sorted(x.id for x in assets)
    for o in streamed:
        ref = fmt.read_object(tmp_path / "ds", o.id, ring=True)
        np.testing.assert_array_equal(o.rgba, ref.rgba)
        np.testing.assert_array_equal(o.ring_rgba, ref.ring_rgba)
        np.testing.assert_array_equal(o.c2w, ref.c2w)
        assert o.meta == ref.meta
    with open(files[0], "rb") as stream:  # a plain binary stream works too (pipes, HTTP bodies)
        assert len(list(iter_shard(stream))) == 1
    assert len(list(iter_shards(shard_files(tmp_path / "shards", "train"), rank=1, world=2))) == 1


def test_cli_render_and_errors(meshes, tmp_path, capsys):
    from lrm.cli.main import main

    out = tmp_path / "cli"
    assert main(["data", "render", str(meshes), "-o", str(out), "--resolution", "32", "--views", "2",
                 "--ring", "0", "--quiet"]) == 0
    assert len(fmt.list_objects(out)) == 3
    assert main(["data", "info", str(out)]) == 0
    assert main(["data", "render", "no-such-source", "-o", str(out)]) == 2
    assert main(["data", "render", str(meshes), "-o", str(out), "--shard", "3/2"]) == 2
    err = capsys.readouterr().err
    assert "lrm: error: unknown source 'no-such-source'" in err and "Traceback" not in err


def test_nothing_visible_is_a_failure(tmp_path):
    from lrm.data.mesh import AssetMesh, Part

    def invisible():  # all texels below the alpha cutoff
        pos = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1]], np.float32)
        return AssetMesh([Part(pos, np.array([[0, 1, 2]]), uv=np.zeros((3, 2), np.float32),
                          texture=np.zeros((2, 2, 4), np.uint8), alpha_cutoff=0.5)])

    stats = build([Asset("ghost", "s", "l", partial(invisible))], tmp_path / "ds", CFG, progress=False)
    assert stats["failed"] == 1
    log = json.loads((tmp_path / "ds" / "logs" / "shard-0-of-1.jsonl").read_text())
    assert log["reason"] == "ValueError: no visible surface (every texel cut out)"


def test_a_bug_in_lrm_stops_the_run_instead_of_failing_objects(meshes, tmp_path, monkeypatch):
    """Only what bad assets raise becomes a "failed" record (never retried); a bug in lrm's own
    code surfaces with its traceback, and nothing is logged against the objects."""
    from lrm.data import build as build_mod

    def buggy(*args, **kwargs):
        raise TypeError("write_object() got an unexpected keyword argument")

    monkeypatch.setattr(build_mod.fmt, "write_object", buggy)
    good = [a for a in folder.assets(str(meshes)) if "good" in a.id]
    with pytest.raises(TypeError, match="unexpected keyword"):
        build(good, tmp_path / "ds", CFG, progress=False)
    logs = list((tmp_path / "ds" / "logs").glob("*.jsonl"))
    assert all(p.read_text() == "" for p in logs)
