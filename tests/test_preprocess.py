"""Image loading in every Pillow mode, recentring and compositing."""

import numpy as np
import pytest
from PIL import Image

from lrm.errors import LRMError
from lrm.preprocess import composite, has_transparency, load_image, prepare, recenter


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_modes(tmp_path):
    grey = _save(Image.new("L", (4, 3), 128), tmp_path / "grey.png")
    out = load_image(grey)
    assert out.shape == (3, 4, 4) and np.allclose(out[..., :3], 128 / 255) and np.all(out[..., 3] == 1)

    pal = Image.new("P", (2, 2), 0)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.info["transparency"] = 1
    out = load_image(_save(pal, tmp_path / "pal.png", transparency=1))
    assert np.allclose(out[0, 0], [1, 0, 0, 1]) and out[1, 1, 3] == 0

    cmyk = _save(Image.new("CMYK", (2, 2), (0, 255, 255, 0)), tmp_path / "c.jpg", quality=100)
    out = load_image(cmyk)
    assert out[0, 0, 0] > 0.9 and out[0, 0, 1] < 0.1 and out[0, 0, 3] == 1

    sixteen = Image.fromarray(np.full((2, 2), 65535 // 2, np.uint16))
    out = load_image(_save(sixteen, tmp_path / "16.png"))
    assert np.allclose(out[..., 0], 0.5, atol=1e-3)

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = [10, 20, 30, 255]
    out = load_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
    assert has_transparency(out) and np.allclose(out[0, 0], np.array([10, 20, 30, 255]) / 255)


def test_exif_orientation(tmp_path):
    arr = np.zeros((2, 4, 3), np.uint8)
    arr[0, 0] = 255  # top-left white
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "e.jpg"
    img.save(path, exif=exif, quality=100)
    out = load_image(path)
    assert out.shape[:2] == (4, 2)
    assert out[0, -1, 0] > 0.8  # top-left moved to top-right


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"not an image at all", "cannot read image"),
    (b"", "cannot read image"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "x.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LRMError, match=message):
        load_image(path)


def test_recenter_ratio_and_centering():
    rgba = np.zeros((100, 60, 4), np.float32)
    rgba[10:30, 20:40] = 1.0  # a 20x20 opaque square off-centre
    out = recenter(rgba, 0.5)
    assert out.shape == (40, 40, 4)
    ys, xs = np.nonzero(out[..., 3] > 0.5)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (10, 29, 10, 29)


def test_composite_and_prepare():
    rgba = np.zeros((8, 8, 4), np.float32)
    rgba[2:6, 2:6] = [1, 0, 0, 1]
    rgba[0, 0] = [0, 1, 0, 0.5]
    rgb = composite(rgba, 0.5)
    assert np.allclose(rgb[0, 0], [0.25, 0.75, 0.25]) and np.allclose(rgb[3, 3], [1, 0, 0])
    img, square = prepare((rgba * 255).astype(np.uint8), 16, 1.0, 0.5, remove_bg=False)
    assert img.shape == (16, 16, 3) and img.dtype == np.float32
    assert np.allclose(img[0, 0], 1.0) and img[8, 8, 0] > 0.9 and img[8, 8, 1] < 0.1


def test_opaque_without_removal_keeps_whole_image():
    img, square = prepare(np.full((4, 8, 3), 0.2, np.float32), 8, 1.0, 0.8, remove_bg=False)
    assert square.shape == (8, 8, 4)
    assert np.allclose(img[4, 4], 0.2, atol=1e-3) and np.allclose(img[0, 0], 1.0, atol=1e-3)


def test_missing_rembg_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kw):
        if name == "rembg":
            raise ImportError("no rembg")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(LRMError, match="lrm\\[rembg\\]"):
        prepare(np.full((4, 4, 3), 0.2, np.float32), 8, 1.0, 0.8, remove_bg=True)


def test_rembg_one_session_per_model_permissive_default(monkeypatch, capsys):
    """A folder of photos loads rembg's model once, the Apache-2.0 u2net unless told otherwise;
    a non-commercial model's licence is printed once. (A fake rembg: no weights offline.)"""
    import sys
    import types

    from PIL import Image

    from lrm import preprocess

    made = []

    def new_session(name):
        made.append(name)
        return f"session:{name}"

    def remove(img, session=None):
        assert session == f"session:{made[-1]}"
        alpha = np.zeros(img.size[::-1], np.uint8)
        alpha[1:3, 1:3] = 255  # the centre is the object
        return Image.fromarray(np.dstack([np.asarray(img), alpha]), "RGBA")

    monkeypatch.setitem(sys.modules, "rembg", types.SimpleNamespace(new_session=new_session, remove=remove))
    monkeypatch.setattr(preprocess, "_rembg_sessions", {})
    photo = np.full((4, 4, 3), 0.2, np.float32)
    for _ in range(3):
        _, square = prepare(photo, 8, 1.0, 0.5, remove_bg=True)
    assert made == ["u2net"] and square[..., 3].max() == 1.0 and square[0, 0, 3] == 0.0
    for _ in range(2):
        prepare(photo, 8, 1.0, 0.5, remove_bg=True, rembg_model="bria-rmbg")
    assert made == ["u2net", "bria-rmbg"]
    assert capsys.readouterr().err.count("not for commercial use") == 1
