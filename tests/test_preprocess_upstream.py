"""Upstream-exact preprocessing (lrm/preprocess_upstream.py) against values worked out by hand
from the spec (docs/spec: TripoSR run.py section 12, OpenLRM v1.1 section 13.2)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lrm.errors import LRMError
from lrm.preprocess_upstream import STYLES, openlrm_app_image, prepare_upstream, triposr_foreground


def _photo() -> np.ndarray:
    """40 x 30 RGBA uint8: an opaque blue block on rows 5..14, columns 8..19 (inclusive), one
    half-transparent red pixel at (10, 10), transparent elsewhere."""
    img = np.zeros((30, 40, 4), np.uint8)
    img[5:15, 8:20] = [0, 0, 255, 255]
    img[10, 10] = [255, 0, 0, 128]
    return img


def test_triposr_crop_drops_the_last_row_and_column_and_pads_twice():
    fg = triposr_foreground(_photo(), 0.85)
    # bbox rows 5..14, cols 8..19; upstream crops [5:14, 8:19]: 9 x 11, square 11, then int(11 / 0.85) = 12
    assert fg.shape == (12, 12, 4)
    # square: 1 row on top (floor((11 - 9) / 2)), then the 12-side pad adds 0 on top and left, 1 below and right
    alpha = fg[..., 3] > 0
    assert alpha.sum() == 9 * 11 and alpha[1:10, 0:11].all()
    assert tuple(fg[1 + (10 - 5), 10 - 8]) == (255, 0, 0, 128)  # the red pixel moved with the crop


def test_triposr_composites_on_grey_and_truncates_to_uint8():
    out = prepare_upstream(_photo(), "triposr", size=12, ratio=0.85)  # size 12: the resize is the identity
    # red at alpha 128: 1.0 * 128/255 + 0.5 * (1 - 128/255) = 0.75098 -> x 255 = 191.5 -> 191 (truncated)
    assert round(float(out[6, 2, 0]) * 255, 3) == 191
    assert round(float(out[6, 2, 2]) * 255, 3) == 63  # blue channel: 0.5 * 127/255 * 255 = 63.5 -> 63
    assert np.allclose(out[0, 0], 127 / 255) and np.allclose(out[1, 0], [0, 0, 1])  # grey 0.5 -> 127; blue
    big = prepare_upstream(_photo(), "triposr", size=512, ratio=0.85)
    grey = np.asarray(out, np.float32)
    want = F.interpolate(torch.from_numpy(grey).permute(2, 0, 1)[None], size=(512, 512), mode="bilinear",
                         align_corners=False, antialias=True)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(big, want, atol=1e-6)


def test_triposr_without_background_removal_drops_alpha_as_is():
    out = prepare_upstream(_photo(), "triposr", size=40, remove_bg=False)[:30]  # 40 x 30 stretched to 40 x 40
    ref = F.interpolate(torch.from_numpy(_photo()[..., :3].astype(np.float32) / 255).permute(2, 0, 1)[None],
                        size=(40, 40), mode="bilinear", align_corners=False, antialias=True)[0].permute(1, 2, 0)
    np.testing.assert_allclose(out, ref.numpy()[:30], atol=1e-6)


def test_openlrm_cli_is_white_composite_and_corner_aligned_bicubic():
    img = np.zeros((6, 4, 4), np.uint8)
    img[..., 3] = 255
    img[0, 0] = [255, 0, 0, 255]
    img[5, 3] = [0, 0, 0, 0]  # transparent: white
    img[2, 1] = [0, 0, 0, 102]  # black at alpha 0.4: white composite 0.6
    out = prepare_upstream(img, "openlrm-cli", size=7)
    assert out.shape == (7, 7, 3)  # non-square input stretched
    np.testing.assert_allclose(out[0, 0], [1, 0, 0], atol=1e-6)  # align_corners=True keeps the corners
    np.testing.assert_allclose(out[6, 6], [1, 1, 1], atol=1e-6)
    same = prepare_upstream(img[:4], "openlrm-cli", size=4)  # 4 x 4 at size 4: no resampling
    np.testing.assert_allclose(same[2, 1], [0.6, 0.6, 0.6], atol=1e-6)


def test_pipeline_and_cli_use_the_style(tiny_model):
    from lrm.cli.main import build_parser
    from lrm.pipeline import Reconstructor

    rec = Reconstructor(tiny_model, device="cpu", dtype="fp32")
    rec.preprocess_style = "triposr"
    want = prepare_upstream(_photo(), "triposr", rec.inference.source_size, rec.inference.foreground_ratio)
    np.testing.assert_array_equal(rec.preprocess(_photo()), want)
    sub = next(a for a in build_parser()._subparsers._group_actions[0].choices["reconstruct"]._actions
               if a.dest == "preprocess")
    assert tuple(sub.choices) == STYLES
    with pytest.raises(LRMError, match="unknown preprocessing"):
        prepare_upstream(_photo(), "openlrm-gradio", 64)


def _app_photo() -> np.ndarray:
    """2048 x 1024 RGBA uint8, transparent, with an opaque box on rows 400..2037 and columns
    200..609 (inclusive): red on rows 400..1199, blue below. Every edge sits on an even pixel, so
    both of the app's 2x INTER_AREA reductions average uniform 2 x 2 blocks: exact by hand."""
    img = np.zeros((2048, 1024, 4), np.uint8)
    img[400:1200, 200:610] = [255, 0, 0, 255]
    img[1200:2038, 200:610] = [0, 0, 255, 255]
    return img


def test_openlrm_app_canvas_worked_by_hand():
    pytest.importorskip("cv2")
    out = openlrm_app_image(_app_photo(), remove_bg=False)
    # load: longest side 2048 -> 1024, so 1024 x 512; the box becomes rows 200..1018, cols 100..304
    # recentre: end-exclusive box 818 x 204; fit 409 / 818 = 0.5 -> 409 x int(204 * 0.5) = 102,
    # pasted at ((512 - 409) // 2, (512 - 102) // 2) = (51, 205); the crop's 400 red rows -> 200
    assert out.shape == (512, 512, 4) and out.dtype == np.uint8
    alpha = out[..., 3] > 0
    assert alpha.sum() == 409 * 102 and alpha[51:460, 205:307].all()
    assert (out[51:251, 205:307] == [255, 0, 0, 255]).all() and (out[251:460, 205:307] == [0, 0, 255, 255]).all()
    assert (out[~alpha] == 0).all()  # transparent black canvas
    rgb = prepare_upstream(_app_photo(), "openlrm-app", size=512, remove_bg=False)  # then the CLI path:
    np.testing.assert_allclose(rgb[100, 250], [1, 0, 0], atol=1e-6)  # white composite, identity resize
    np.testing.assert_allclose(rgb[10, 10], [1, 1, 1], atol=1e-6)
    small = prepare_upstream(_app_photo(), "openlrm-app", size=336, remove_bg=False)
    white = out[..., :3].astype(np.float32) / 255 * (out[..., 3:] / 255) + (1 - out[..., 3:] / 255)
    want = F.interpolate(torch.from_numpy(white.astype(np.float32)).permute(2, 0, 1)[None], size=(336, 336),
                         mode="bicubic", align_corners=True).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(small, want, atol=1e-6)
    plain = openlrm_app_image(_app_photo(), remove_bg=False, recenter=False)  # unticked: a plain 512² resize
    assert plain.shape == (512, 512, 4) and (plain[150, 100:150] == [255, 0, 0, 255]).all()


def test_openlrm_app_recentres_small_images_and_refuses_empty_ones():
    pytest.importorskip("cv2")
    img = np.zeros((64, 32, 4), np.uint8)
    img[8:56, 8:24] = [0, 255, 0, 255]  # 48 x 16 box; load enlarges 16x: 1024 x 512
    out = openlrm_app_image(img, remove_bg=False)
    rows, cols = np.nonzero(out[..., 3] > 0)
    # enlarged box rows 128..895 (end-exclusive 767 tall, nearest-edge blur aside), fit 409 / box
    assert 405 <= rows.max() - rows.min() + 1 <= 410 and (512 - (rows.max() + 1 + rows.min())) in (-1, 0, 1)
    assert 120 <= cols.max() - cols.min() + 1 <= 140
    with pytest.raises(LRMError, match="no foreground"):
        openlrm_app_image(np.zeros((20, 20, 4), np.uint8), remove_bg=False)
    line = np.zeros((2048, 2048, 4), np.uint8)  # one row at half size: an end-exclusive box of height 0
    line[6, 100:900] = 255
    with pytest.raises(LRMError, match="one pixel"):
        openlrm_app_image(line, remove_bg=False)


def test_openlrm_app_hands_rembg_the_bgra_array(monkeypatch):
    """The app passes OpenCV's BGRA array to rembg: a fake rembg that cuts out where its channel 0
    is bright finds a blue object (channel 0 = blue in BGRA), and the colours come back as RGBA."""
    pytest.importorskip("cv2")
    import sys
    import types

    from lrm import preprocess

    seen = []

    def remove(arr, session):
        seen.append(arr.copy())
        out = arr.copy()
        keep = arr[..., 0] > 128
        out[..., 3] = np.where(keep, 255, 0)
        out[~keep] = 0
        return out

    monkeypatch.setitem(sys.modules, "rembg", types.SimpleNamespace(new_session=lambda model: model, remove=remove))
    monkeypatch.setattr(preprocess, "_rembg_sessions", {})
    img = np.zeros((512, 512, 3), np.uint8)  # an RGB photo: a blue square on black
    img[100:300, 200:400] = [0, 0, 255]
    out = openlrm_app_image(np.dstack([img, np.full((512, 512), 255, np.uint8)]))
    assert len(seen) == 1 and seen[0].shape == (1024, 1024, 4) and seen[0][400, 600, 0] == 255
    alpha = out[..., 3] > 0
    assert alpha.any() and (out[alpha][:, :3] == [0, 0, 255]).all()
