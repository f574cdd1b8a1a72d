"""Source readers on tiny hand-made files: 0 A.D. PMD + actor XML, KiCad VRML, Red Eclipse OBJ,
trimesh folders and an Objaverse cache."""

import gzip
import io
import json
import struct
import zipfile

import numpy as np
import pytest
from PIL import Image

from lrm.data.mesh import Y_UP
from lrm.data.sources import SkipAsset, make_id
from lrm.data.sources import kicad, nieb, zero_ad
from lrm.errors import LRMError


def pmd_bytes(positions, uvs, faces, bones=(), props=()) -> bytes:
    """A PMD v4 file with one UV set. bones: [(t3, q4)]; props: [(name, t3, q4, bone)]."""
    body = struct.pack("<II", len(positions), 1)
    for p, uv in zip(positions, uvs):
        body += struct.pack("<3f3f2f4B4f", *p, 0, 0, 1, *uv, 0, 0, 0, 0, 1, 0, 0, 0)
    body += struct.pack("<I", len(faces)) + b"".join(struct.pack("<3H", *f) for f in faces)
    body += struct.pack("<I", len(bones)) + b"".join(struct.pack("<7f", *t, *q) for t, q in bones)
    body += struct.pack("<I", len(props))
    for name, t, q, bone in props:
        body += struct.pack("<I", len(name)) + name.encode() + struct.pack("<7fB", *t, *q, bone)
    return b"PSMD" + struct.pack("<II", 4, len(body)) + body


TRI = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]


def test_pmd_reader_layout_and_prop_points():
    half_turn_z = (0, 0, 1, 0)  # quaternion (x, y, z, w): 180° about z
    data = pmd_bytes(TRI, [(0, 0), (1, 0), (0, 1)], [(0, 1, 2)],
                     bones=[((10, 0, 0), half_turn_z)],
                     props=[("root", (0, 0, 0), (0, 0, 0, 1), 255), ("hand", (1, 2, 3), (0, 0, 0, 1), 0)])
    pmd = zero_ad.read_pmd(data)
    np.testing.assert_allclose(pmd.positions, TRI)
    np.testing.assert_array_equal(pmd.faces, [[0, 1, 2]])
    np.testing.assert_allclose(pmd.uv, [(0, 0), (1, 0), (0, 1)])
    np.testing.assert_allclose(pmd.props["root"], np.eye(4), atol=1e-6)
    # the prop point is relative to its bone: bone(T=(10,0,0), R=180° about z) · (1, 2, 3)
    np.testing.assert_allclose(pmd.props["hand"][:3, 3], [10 - 1, -2, 3], atol=1e-5)
    with pytest.raises(ValueError):
        zero_ad.read_pmd(b"JUNK" + data[4:])


def _actor(mesh: str, tex: str, props: str = "", extra_group: str = "") -> str:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<actor version="1"><group>
  <variant frequency="1" name="rare"><mesh>{mesh}_rare.dae</mesh></variant>
  <variant frequency="100" name="main"><mesh>{mesh}.dae</mesh><props>{props}</props>
    <textures><texture file="{tex}" name="baseTex"/></textures></variant>
</group>{extra_group}<material>player_trans.xml</material></actor>"""


def test_zero_ad_actor_with_prop_and_player_colour(tmp_path):
    png = io.BytesIO()
    tex = np.zeros((2, 2, 4), np.uint8)
    tex[..., :3], tex[0, :, 3], tex[1, :, 3] = 200, 255, 0  # bottom row: player colour (alpha 0)
    Image.fromarray(tex).save(png, "PNG")
    path = tmp_path / "public.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("art/actors/structures/house.xml", _actor(
            "structural/house", "structural/house.png",
            '<prop actor="props/structures/roof.xml" attachpoint="top"/><prop attachpoint="nothing"/>',
            '<group><variant name="x"><props><prop actor="props/x.xml" attachpoint="nothing"/></props></variant></group>'))
        z.writestr("art/actors/props/structures/roof.xml", _actor("props/roof", "structural/house.png"))
        z.writestr("art/meshes/structural/house.dae.cached.pmd", pmd_bytes(
            TRI, [(0, 0)] * 3, [(0, 1, 2)], props=[("top", (0, 5, 0), (0, 0, 0, 1), 255)]))
        z.writestr("art/meshes/props/roof.dae.cached.pmd", pmd_bytes(TRI, [(0, 0)] * 3, [(0, 1, 2)]))
        z.writestr("art/textures/skins/structural/house.png", png.getvalue())
    found = zero_ad.assets(str(tmp_path), min_faces=0)
    assert [a.id for a in found] == ["0ad-props-structures-roof", "0ad-structures-house"]
    house = found[1].load()
    assert len(house.parts) == 2 and house.faces == 2  # the base mesh and the roof prop
    roof = house.parts[1].positions @ np.linalg.inv(zero_ad.AXES).T  # back to file axes
    np.testing.assert_allclose(roof, np.array(TRI) + [0, 5, 0], atol=1e-5)  # placed at "top"
    texture = house.parts[0].texture
    np.testing.assert_array_equal(texture[0, 0], [200, 200, 200, 255])  # alpha 255: texture colour
    np.testing.assert_array_equal(texture[1, 0, :3], (200 * zero_ad.PLAYER_COLOR).astype(np.uint8))
    # the file's +y (up) is our +z; its -z (where units look) is our -y (the front)
    np.testing.assert_allclose(zero_ad.AXES @ [0, 1, 0], [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(zero_ad.AXES @ [0, 0, -1], [0, -1, 0], atol=1e-6)
    with pytest.raises(SkipAsset):
        zero_ad.load(str(path), "structures/house.xml", min_faces=10)


WRL = """#VRML V2.0 utf8
#kicad StepUp wrl exported
Shape {
    appearance Appearance {material DEF PIN-01 Material {
        ambientIntensity 0.271
        diffuseColor 0.8 0.7 0.1
        transparency 0.0
        }
    }
}
Shape {
    appearance Appearance {material DEF BODY Material {
        diffuseColor 0.1 0.1 0.1
        }
    }
}
Shape { geometry IndexedFaceSet
{ creaseAngle 0.50 coordIndex [0,1,2,3,-1]
coord Coordinate { point [0 0 0,1 0 0,1 1 0,0 1 0]
}}
appearance Appearance{material USE BODY }
}
Shape { geometry IndexedFaceSet
{ creaseAngle 0.50 coordIndex [0,1,2,-1]
coord Coordinate { point [0 0 1,1 0 1,0 1 1]
}}
appearance Appearance{material USE PIN-01 }
}
"""


def test_kicad_vrml_reader():
    mesh = kicad.read_wrl(WRL)
    assert len(mesh.parts) == 2
    quad, tri = mesh.parts
    np.testing.assert_array_equal(quad.faces, [[0, 1, 2], [0, 2, 3]])  # fan-triangulated
    np.testing.assert_allclose(quad.colors[0], [0.1, 0.1, 0.1, 1])
    np.testing.assert_allclose(tri.colors[0], [0.8, 0.7, 0.1, 1])
    np.testing.assert_allclose(tri.positions[:, 2], 1)  # Z up, untouched
    with pytest.raises(SkipAsset):
        kicad.read_wrl("#VRML V2.0 utf8\nTransform { children [ Shape { } ] }")
    with pytest.raises(ValueError):
        kicad.read_wrl(WRL.replace("0,1,2,-1]", "0,1,7,-1]"))  # index out of range


def test_kicad_near_duplicates_collapse(tmp_path):
    fam = tmp_path / "Connector_PinHeader_2.54mm.3dshapes"
    fam.mkdir()
    for n in (1, 2, 3, 10):
        (fam / f"PinHeader_1x{n:02d}_P2.54mm_Vertical.wrl").write_text(WRL)
    (fam / "Special_Header.wrl").write_text(WRL)
    found = kicad.assets(str(tmp_path))
    assert len(found) == 2 and {a.info["duplicates"] for a in found} == {4, 1}
    assert len(kicad.assets(str(tmp_path), dedupe=False)) == 5


OBJ = """# two groups, standard OBJ uvs
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
vt 0 0
vt 1 0
vt 1 1
vt 0 1
g base
f 1/1 2/2 3/3 4/4
g screen
f 1/1/1 3/3/1 -1/-1/1
"""


def test_nieb_obj_reader_and_skins(tmp_path):
    groups = nieb.read_obj(OBJ)
    assert set(groups) == {"base", "screen"}
    pos, faces, uv = groups["base"]
    assert faces.shape == (2, 3) and uv.shape == (4, 2)
    np.testing.assert_allclose(uv[faces[0]], [[0, 0], [1, 0], [1, 1]])  # corners keep their uv
    folder = tmp_path / "monitor"
    folder.mkdir()
    (folder / "model.obj").write_text(OBJ)
    for name, rgb in (("base_diffuse.png", (255, 0, 0)), ("screen_diffuse.png", (0, 0, 255))):
        Image.new("RGB", (4, 4), rgb).save(folder / name)
    (folder / "obj.cfg").write_text('objload model.obj\nobjskin base base_diffuse.png m.png 0 0\n'
                                    'objskin screen "<mix:1>screen_diffuse.png" m.png 0 0\nmdlscale 400\n')
    found = nieb.assets(str(tmp_path))
    assert [a.id for a in found] == ["nieb-monitor"] and found[0].split == "test"
    mesh = found[0].load()
    colours = sorted(tuple(p.texture[0, 0, :3]) for p in mesh.parts)
    assert colours == [(0, 0, 255), (255, 0, 0)]
    np.testing.assert_allclose(nieb.AXES @ [1, 0, 0], [0, -1, 0], atol=1e-6)  # file front +x -> -y
    np.testing.assert_allclose(nieb.AXES @ [0, 1, 0], [0, 0, 1], atol=1e-6)  # file up +y -> +z


def test_folder_reader_textures_colours_and_up_axis(tmp_path):
    import trimesh

    from lrm.data.sources import folder

    box = trimesh.creation.box(extents=(1, 2, 4))  # tallest along the file's z
    tex = Image.new("RGB", (8, 8), (10, 200, 30))
    box.visual = trimesh.visual.TextureVisuals(uv=np.random.default_rng(0).random((8, 2)), image=tex)
    (tmp_path / "sub").mkdir()
    box.export(tmp_path / "sub" / "green.glb")
    cone = trimesh.creation.cone(0.5, 1.0)
    cone.visual.vertex_colors = [255, 0, 0, 255]
    cone.export(tmp_path / "red.ply")
    (tmp_path / "notes.txt").write_text("not a mesh")
    found = folder.assets(str(tmp_path), up="y")
    assert [a.id for a in found] == ["folder-red_ply", "folder-sub-green_glb"]
    green = found[1].load()
    assert green.parts[0].texture is not None and tuple(green.parts[0].texture[0, 0, :3]) == (10, 200, 30)
    lo, hi = green.bounds()
    np.testing.assert_allclose(hi - lo, [1, 4, 2], atol=1e-5)  # y up: the file's z (front) is our -y
    red = found[0].load()
    np.testing.assert_allclose(red.parts[0].colors[0], [1, 0, 0, 1])
    z_up = folder.assets(str(tmp_path), up="z")[1].load()
    np.testing.assert_allclose(np.ptp(z_up.bounds(), 0), [1, 2, 4], atol=1e-5)


def test_make_id_is_safe_and_unique():
    assert make_id("0ad", "units/romans/hero.xml".removesuffix(".xml")) == "0ad-units-romans-hero"
    a, b = make_id("x", "a b.c"), make_id("x", "a_b_c")
    assert a != b and "." not in a and " " not in a
    assert make_id("kicad", "TO-220/3 Pin") == make_id("kicad", "TO-220/3 Pin")


def _objaverse_cache(root, uid):
    import trimesh

    base = root / "hf-objaverse-v1"
    (base / "glbs" / "000-001").mkdir(parents=True)
    (base / "metadata").mkdir()
    trimesh.creation.box().export(base / "glbs" / "000-001" / f"{uid}.glb")
    with gzip.open(base / "object-paths.json.gz", "wt") as f:
        json.dump({uid: f"glbs/000-001/{uid}.glb", "f" * 32: "glbs/000-001/missing.glb"}, f)
    with gzip.open(base / "metadata" / "000-001.json.gz", "wt") as f:
        json.dump({uid: {"license": "by", "name": "box"}}, f)
    return base


def test_objaverse_from_a_local_cache_and_offline(tmp_path, monkeypatch):
    objaverse = pytest.importorskip("objaverse")
    import urllib.error
    import urllib.request

    from lrm.data.sources import objaverse as source

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlretrieve", no_network)
    uid = "a" * 32
    monkeypatch.setattr(objaverse, "_VERSIONED_PATH", str(_objaverse_cache(tmp_path / "cache", uid)))
    found = source.assets(uid)
    assert [a.id for a in found] == [f"objaverse-{uid}"]
    mesh = found[0].load()
    assert mesh.faces == 12 and mesh.meta["license"] == "by"
    assert len(source.assets("2")) == 2
    missing = source.assets("f" * 32)[0]  # listed, but its file is not in the cache: needs the hub
    with pytest.raises(LRMError, match="offline"):
        missing.load()
    monkeypatch.setattr(objaverse, "_VERSIONED_PATH", str(tmp_path / "empty"))
    with pytest.raises(LRMError) as err:
        source.assets("10")
    assert "huggingface.co" in str(err.value) and "\n" not in str(err.value)


def test_y_up_rotation_is_proper():
    assert np.isclose(np.linalg.det(Y_UP), 1) and np.isclose(np.linalg.det(zero_ad.AXES), 1)
    assert np.isclose(np.linalg.det(nieb.AXES), 1)
