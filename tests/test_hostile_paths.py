"""Names from files users hand us never lead out of the folders they belong to: dataset ids in
manifest.jsonl, COLMAP image names. Each is refused in one line (LRMError: exit code 2)."""

import json

import pytest

from lrm.data.capture import read_colmap
from lrm.data.format import list_objects, object_dir
from lrm.errors import LRMError
from lrm.train.synthetic import write_synthetic


@pytest.mark.parametrize("bad", ["../outside", "/etc", "a/../../b", "..", "", "x\\..\\y"])
def test_manifest_ids_that_leave_the_dataset_are_refused(tmp_path, bad):
    root = write_synthetic(tmp_path / "d", objects=2, views=2, size=8, val=0)
    lines = (root / "manifest.jsonl").read_text().splitlines()
    meta = json.loads(lines[0])
    meta["id"] = bad
    (root / "manifest.jsonl").write_text("\n".join([json.dumps(meta), *lines[1:]]) + "\n")
    with pytest.raises(LRMError, match="is not a plain folder name"):
        list_objects(root)
    with pytest.raises(LRMError, match="is not a plain folder name"):
        object_dir(root, bad)
    assert object_dir(root, "sphere001") == root / "objects" / "sphere001"  # plain ids still work


@pytest.mark.parametrize("name", ["../x.jpg", "/abs/path.jpg", "sub/../../x.jpg", "C:\\x.jpg"])
def test_colmap_image_names_that_leave_images_are_refused(tmp_path, name):
    (tmp_path / "cameras.txt").write_text("1 PINHOLE 8 8 6 6 4 4\n")
    (tmp_path / "images.txt").write_text(f"1 1 0 0 0 0 0 4 1 {name}\n\n")
    with pytest.raises(LRMError, match="leads outside images/"):
        read_colmap(tmp_path)
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 4 1 cam0/frame.jpg\n\n")  # a subfolder is fine
    assert [f.name for f in read_colmap(tmp_path)] == ["cam0/frame.jpg"]


def test_pack_refuses_existing_shards_and_symlinks(tmp_path):
    import os

    from lrm.data.shards import iter_shard, pack, shard_files

    root = write_synthetic(tmp_path / "d", objects=2, views=2, size=8, val=0)
    out = tmp_path / "shards"
    first = pack(root, out, objects_per_shard=1, split="train")
    assert [p.name for p in first] == ["train-000000.tar", "train-000001.tar"]
    with pytest.raises(LRMError, match="already holds shards"):
        pack(root, out, split="train")
    assert [o.id for f in shard_files(out) for o in iter_shard(f)] == ["sphere000", "sphere001"]  # kept
    (out / "index.json").unlink()  # a pack stopped before its index: named as unfinished, still refused
    with pytest.raises(LRMError, match="an unfinished pack"):
        pack(root, out, split="train")
    assert len(pack(root, out, split="train", overwrite=True)) == 1
    secret = tmp_path / "secret.txt"
    secret.write_text("not part of the dataset")
    os.symlink(secret, root / "objects" / "sphere001" / "extra.txt")
    with pytest.raises(LRMError, match="symlinks are not packed"):
        pack(root, tmp_path / "other", split="train")
