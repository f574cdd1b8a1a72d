"""PSNR / SSIM against hand-computed values and skimage's reference implementation."""

import math

import numpy as np
import pytest

from lrm.evaluate.image_metrics import load_lpips, psnr, ssim
from lrm.preprocess import composite


def test_psnr_hand_computed():
    a = np.zeros((16, 16, 3))
    assert psnr(a + 0.1, a) == pytest.approx(20.0)  # MSE 0.01
    b = a.copy()
    b[:8] = 0.5  # half the pixels off by 0.5: MSE 0.125
    assert psnr(b, a) == pytest.approx(10 * math.log10(8))
    # two views: PSNR is averaged per view, not computed on the pooled MSE
    assert psnr(np.stack([a + 0.1, b]), np.stack([a, a])) == pytest.approx((20 + 10 * math.log10(8)) / 2)


def test_ssim_of_constant_images_is_the_luminance_term():
    # constant images: variances are 0, so SSIM = (2ab + C1) / (a² + b² + C1)
    a, b, c1 = 0.5, 0.25, 0.01**2
    got = ssim(np.full((20, 20, 3), a), np.full((20, 20, 3), b))
    assert got == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)
    img = np.random.default_rng(0).random((20, 24, 3))
    assert ssim(img, img) == pytest.approx(1.0)


def test_ssim_matches_skimage():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    gt = rng.random((2, 40, 33, 3))
    pred = np.clip(gt + 0.1 * rng.standard_normal(gt.shape), 0, 1)
    ref = np.mean([
        structural_similarity(p, g, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=1.0, channel_axis=-1)
        for p, g in zip(pred, gt)
    ])
    assert ssim(pred, gt) == pytest.approx(ref, abs=1e-6)


def test_composite_over_background():
    rgba = np.array([[[255, 0, 0, 255], [0, 0, 0, 0], [0, 255, 0, 51]]], np.uint8)
    out = composite(rgba, 1.0)  # uint8 in, float out
    np.testing.assert_allclose(out[0, 0], [1, 0, 0])
    np.testing.assert_allclose(out[0, 1], [1, 1, 1])
    np.testing.assert_allclose(out[0, 2], [0.8, 1.0, 0.8], atol=1e-6)


def test_lpips_with_local_weights(tmp_path):
    # stand-in weight files (random VGG, positive heads) in the layout lrm.losses.lpips reads
    import torch
    from safetensors.torch import save_file

    from lrm.losses.lpips import CHANNELS, LPIPS

    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in LPIPS().vgg.state_dict().items()}, str(tmp_path / "vgg16.safetensors"))
    save_file({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(CHANNELS)},
              str(tmp_path / "lpips_vgg.safetensors"))
    metric = load_lpips(str(tmp_path))
    img = np.random.default_rng(2).random((2, 32, 32, 3))
    assert metric(img, img) == pytest.approx(0.0, abs=1e-6)
    assert metric(img, 1 - img) > 0


def test_lpips_absent_is_none_not_zero(tmp_path, monkeypatch):
    """Without weights the metric is absent (None: reported as "n/a"), never a silent 0; with
    weights (when this machine has them) it is 0 only for identical images."""
    from lrm.losses import lpips

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no caches to fall back on
    monkeypatch.setattr(lpips, "_lpips_package_dir", lambda: None)
    assert load_lpips() is None
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from train_helpers import fake_lpips_files

    (tmp_path / "w").mkdir()
    fake_lpips_files(tmp_path / "w")  # random weights in the real file layouts
    metric = load_lpips(str(tmp_path / "w"))
    img = np.random.default_rng(2).random((1, 64, 64, 3))
    assert metric(img, img) == pytest.approx(0.0, abs=1e-6)
    assert metric(img, 1 - img) > 0.0
