"""The lift (lrm/model/lift.py): each triplane texel reads the input pixels its line projects to."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lrm import cameras
from lrm.configs import from_dict, to_dict
from lrm.errors import LRMError
from lrm.model.lift import ImageLift, LiftConfig, texel_points
from lrm.hub import load_model
from lrm.model.lrm import LRM, LRMConfig
from lrm.model.presets import tiny
from lrm.model.triplane import OPENLRM_AXES

S, RES, E = 64, 8, 4


def ramp_image() -> torch.Tensor:
    """[1, 3, S, S]: R = the pixel centre's normalised column, G = its row, B = 1. Bilinear
    reads of a linear ramp are exact between pixel centres."""
    c = (torch.arange(S) + 0.5) / S
    return torch.stack([c[None, :].expand(S, S), c[:, None].expand(S, S), torch.ones(S, S)])[None]


def lift_reading_rgb(samples: int = 1) -> ImageLift:
    """A lift whose 3 output channels are the R, G, B read at sample 0 of each texel's line."""
    lift = ImageLift(LiftConfig(samples), E, 3, OPENLRM_AXES, 1.0)
    with torch.no_grad():
        for ch in range(3):
            lift.weight[:, ch, E + ch] = 1.0  # stack layout: sample-major, then [E tokens, R, G, B]
    return lift


def read(lift: ImageLift, distance: float, focal: float = 0.75) -> torch.Tensor:
    cam = cameras.camera_vector(cameras.canonical_c2w(distance), cameras.intrinsics(focal)[0])[None]
    tokens = torch.zeros(1, 1 + 4, E)  # a 2 x 2 patch grid of zero features
    return lift(ramp_image(), tokens, cam, RES)[0]  # [3, 3, RES, RES]


def test_front_plane_reads_the_pixel_behind_each_texel():
    """Canonical camera at (0, -d, 0) looking along +y, image up = +z. With one sample (y = 0),
    texel (row i, column j) of the (x, z) plane is the point (u_j, 0, v_i): it projects to
    column 0.5 + f u_j / d and row 0.5 - f v_i / d (worked out by hand from the pinhole model)."""
    d, f = 2.0, 0.75
    out = read(lift_reading_rgb(), d, f)
    centre = (torch.arange(RES) + 0.5) / RES * 2 - 1
    torch.testing.assert_close(out[1, 0], (0.5 + f * centre / d)[None, :].expand(RES, RES), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1, 1], (0.5 - f * centre / d)[:, None].expand(RES, RES), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1, 2], torch.ones(RES, RES), atol=1e-5, rtol=0)


def test_top_plane_sees_perspective_and_nothing_behind_the_camera():
    """The (x, y) plane's texel (u_j, v_i, 0) lies at depth v_i + d: column 0.5 + f u_j / (v_i + d),
    row 0.5, or nothing where that column falls off the image. With d = 0.5 the texels with v_i < -0.5 are behind the camera and read nothing."""
    d, f = 0.5, 0.75
    out = read(lift_reading_rgb(), d, f)
    centre = (torch.arange(RES) + 0.5) / RES * 2 - 1
    front = centre > -d + 1e-6
    depth = centre[front][:, None] + d
    want = 0.5 + f * centre[None, :] / depth
    inside = (want > 0.5 / S) & (want < 1 - 0.5 / S)  # between the outermost pixel centres
    got = out[0, 0][front]
    torch.testing.assert_close(got[inside], want.expand_as(got)[inside], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0, 1][front][inside], torch.full_like(got, 0.5)[inside], atol=1e-5, rtol=0)
    outside = (want < 0) | (want > 1)  # more than half a pixel beyond the image: zero padding
    assert outside.any() and out[0][:, front][:, outside].abs().max() == 0
    assert out[0][:, ~front].abs().max() == 0  # behind the camera: zero padding, zero bias


def test_texel_points_follow_the_plane_axes():
    pts = texel_points(4, 2, OPENLRM_AXES, 0.5)  # [3, K, res, res, 3]
    # plane 2 spans (z, y): column -> z, row -> y, samples along x
    assert pts[2, 1, 3, 0].tolist() == pytest.approx([0.25, 0.375, -0.375])
    assert pts[0, 0, 0, 2].tolist() == pytest.approx([0.125, -0.375, -0.25])


def test_a_new_lift_leaves_the_model_unchanged_and_then_learns():
    """Zero-initialised: a trained model that gains a lift gives the same planes; one gradient
    step moves the lift's weights (its input is not zero)."""
    from lrm.train.loop import add_lift

    torch.manual_seed(0)
    model = LRM(tiny()).eval()
    grown = add_lift(model, LiftConfig(4)).eval()
    img = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(grown(img), model(img), atol=0, rtol=0)
    grown(img).square().mean().backward()
    assert grown.lift.weight.grad.abs().max() > 0


def test_lift_config_round_trips_and_is_checked(tmp_path):
    cfg = dataclasses.replace(tiny(), lift=LiftConfig(8))
    assert from_dict(LRMConfig, to_dict(cfg)).lift.samples == 8
    assert from_dict(LRMConfig, {"name": "old"}).lift.samples == 0  # configs saved before the lift
    torch.manual_seed(0)
    model = LRM(cfg)
    with torch.no_grad():
        model.lift.weight.normal_()
    model.save_pretrained(tmp_path / "m")
    back = load_model(tmp_path / "m").eval()
    img = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(back(img), model.eval()(img))
    with pytest.raises(LRMError, match="lift samples"):
        from_dict(LRMConfig, {"lift": {"samples": -1}})
    with pytest.raises(LRMError, match="source camera"):
        from_dict(LRMConfig, {"lift": {"samples": 2}, "inference": {"source_distance": 0.0}})
