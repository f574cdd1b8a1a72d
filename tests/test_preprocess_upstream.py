"""Upstream-exact preprocessing (lrm/preprocess_upstream.py) against values worked out by hand
from the spec (docs/spec: TripoSR run.py section 12, OpenLRM v1.1 section 13.2)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lrm.errors import LRMError
from lrm.preprocess_upstream import STYLES, prepare_upstream, triposr_foreground


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
        prepare_upstream(_photo(), "openlrm-app", 64)
