"""Volume rendering on hand-worked numbers and analytic fields."""

import math

import pytest
import torch

from lrm import cameras
from lrm.render.march import accumulate, interval_weights, point_weights, transmittance_weights
from lrm.render.rays import camera_rays, ray_box, ray_sphere
from lrm.render.renderer import RenderConfig, render_rays
from lrm.render.sampling import importance, smooth_weights, stratified


def test_transmittance_hand_worked():
    alpha = torch.tensor([0.3, 0.8, 0.5])
    w = transmittance_weights(alpha)
    # T = 1, 0.7, 0.7 * 0.2 = 0.14 -> w = 0.3, 0.56, 0.07
    torch.testing.assert_close(w, torch.tensor([0.3, 0.56, 0.07]), atol=1e-6, rtol=0)
    colors = torch.eye(3)  # red, green, blue
    rgb, depth, opacity = accumulate(w, colors, torch.tensor([1.0, 2.0, 3.0]), torch.tensor(1.0))
    torch.testing.assert_close(rgb, torch.tensor([0.37, 0.63, 0.14]), atol=1e-6, rtol=0)
    assert opacity.item() == pytest.approx(0.93, abs=1e-6)
    assert depth.item() == pytest.approx((0.3 * 1 + 0.56 * 2 + 0.07 * 3) / 0.93, abs=1e-6)


def test_interval_quadrature_averages_raw_density_before_activation():
    t = torch.tensor([0.0, 1.0, 2.0, 3.0])
    raw = torch.tensor([1.0, 1.0, 3.0, 3.0])
    rgb = torch.tensor([[0.0, 0, 0], [1, 1, 1], [0, 0, 0], [1, 1, 1]])
    w, colors, depths = interval_weights(t, raw, rgb, activation=lambda s: s)
    alpha = 1 - torch.exp(-torch.tensor([1.0, 2.0, 3.0]))  # averaged raw: 1, 2, 3; delta 1
    trans = torch.tensor([1.0, 1 - alpha[0], (1 - alpha[0]) * (1 - alpha[1])])
    torch.testing.assert_close(w, alpha * trans, atol=1e-6, rtol=0)
    torch.testing.assert_close(colors, torch.full((3, 3), 0.5))
    torch.testing.assert_close(depths, torch.tensor([0.5, 1.5, 2.5]))
    # softplus(avg - 1) differs from avg(softplus(raw - 1)): the order matters
    w_sp, _, _ = interval_weights(t, torch.tensor([0.0, 4.0, 0.0, 0.0]), rgb, lambda s: torch.nn.functional.softplus(s - 1))
    assert w_sp[0].item() == pytest.approx(1 - math.exp(-math.log1p(math.exp(1.0))), abs=1e-6)


def test_point_quadrature_uses_fixed_delta():
    sigma = torch.tensor([0.0, 128.0, 0.0, 0.0])  # delta = 1/4
    w = point_weights(sigma)
    assert w[1].item() == pytest.approx(1 - math.exp(-32.0), abs=1e-6)
    assert w[0].item() == 0 and w[2].item() < 1e-12


def test_stratified_layouts():
    near, far = torch.tensor([1.0]), torch.tensor([3.0])
    # deterministic: the jitter's mean 0.5 (no sample exactly on the entry/exit faces)
    torch.testing.assert_close(stratified(near, far, 5), torch.tensor([[1.25, 1.75, 2.25, 2.75, 3.25]]))
    torch.testing.assert_close(stratified(near, far, 4, "midpoints"), torch.tensor([[1.25, 1.75, 2.25, 2.75]]))
    g = torch.Generator().manual_seed(0)
    jittered = stratified(near, far, 5, generator=g)
    base = stratified(near, far, 5)
    assert ((jittered - base) >= -0.25).all() and ((jittered - base) < 0.25).all()
    assert not torch.equal(jittered, base)


def test_smooth_weights_rule():
    w = torch.tensor([0.0, 1.0, 0.0, 0.0])  # S-1 = 4
    # max-pool (pad 1): [0, 1, 1, 0, 0]; avg-pool: [0.5, 1, 0.5, 0]; + 0.01
    torch.testing.assert_close(smooth_weights(w), torch.tensor([0.51, 1.01, 0.51, 0.01]))


def test_importance_samples_concentrate_where_weights_are():
    t = torch.linspace(0, 1, 17)[None]  # S = 17, bins = midpoints (16), 14 usable bins
    w = torch.zeros(1, 16)
    w[0, 8] = 1.0
    fine = importance(t, w, 64)
    assert fine.shape == (1, 64)
    assert (fine[:, 1:] >= fine[:, :-1]).all(), "deterministic u gives sorted samples"
    bins = 0.5 * (t[0, 1:] + t[0, :-1])
    assert fine.min() >= bins[0] and fine.max() <= bins[-2] + 1e-6  # the last bin is never sampled
    near_peak = ((fine > t[0, 7]) & (fine < t[0, 10])).float().mean()
    assert near_peak > 0.8


def test_canonical_camera_rays():
    c2w = cameras.canonical_c2w(2.0)[None]
    o, d = camera_rays(c2w, cameras.intrinsics(0.75), resolution=2)
    torch.testing.assert_close(o[0, 0], torch.tensor([0.0, -2.0, 0.0]))
    # pixel (row 0, col 0) is top-left: image left = -x, image up = +z, forward = +y
    x = (0.25 - 0.5) / 0.75
    expected = torch.tensor([x, 1.0, -x]) / math.sqrt(2 * x * x + 1)
    torch.testing.assert_close(d[0, 0], expected)


def test_crop_rays_equal_full_image_rays():
    c2w = cameras.orbit_cameras(1, 2.0, 20.0, -90.0)
    k = cameras.intrinsics(0.75)
    _, full = camera_rays(c2w, k, 16)
    _, crop = camera_rays(c2w, k, 16, region=4, anchor=torch.tensor([[3, 5]]))
    full = full.reshape(16, 16, 3)[3:7, 5:9].reshape(-1, 3)
    torch.testing.assert_close(crop[0], full)


def test_ray_bounds():
    o = torch.tensor([[0.0, -3.0, 0.0]])
    d = torch.tensor([[0.0, 1.0, 0.0]])
    near, far = ray_box(o, d, 1.0)
    assert near.item() == pytest.approx(2.0) and far.item() == pytest.approx(4.0)
    near, far = ray_sphere(o, d, 0.5)
    assert near.item() == pytest.approx(2.5) and far.item() == pytest.approx(3.5)
    near, far = ray_sphere(o, torch.tensor([[1.0, 0.0, 0.0]]), 0.5)
    assert far.item() <= near.item()  # miss


def sphere_field(radius, color, density=200.0):
    def query(xyz):
        inside = (xyz.norm(dim=-1) < radius).float()
        return inside * density, torch.tensor(color).expand(*xyz.shape[:-1], 3)
    return query


@pytest.mark.parametrize("quadrature", ["interval", "point"])
def test_sphere_renders_analytic_silhouette_and_colour(quadrature):
    r, dist, focal, res = 0.5, 2.0, 0.75, 48
    c2w = cameras.orbit_cameras(1, dist, 30.0, 10.0)
    o, d = camera_rays(c2w, cameras.intrinsics(focal), res)
    cfg = RenderConfig(samples=128, importance=0 if quadrature == "point" else 64, quadrature=quadrature,
                       spacing="endpoints" if quadrature == "interval" else "midpoints", chunk=1000)
    if quadrature == "point":
        cfg.bounds, cfg.radius = "sphere", 1.0
    out = render_rays(sphere_field(r, (0.2, 0.4, 0.6), 2000.0 if quadrature == "point" else 200.0),
                      lambda s: s, o, d, torch.tensor([1.0, 1.0, 1.0]), cfg)
    # analytic: the ray hits the sphere iff its angle to the centre is below asin(r / dist)
    forward = -c2w[0, :3, 2]
    angle = torch.acos((d[0] @ forward).clamp(-1, 1))
    hit = angle < math.asin(r / dist)
    rendered = out["opacity"][0] > 0.5
    iou = (hit & rendered).sum() / (hit | rendered).sum()
    assert iou > 0.97
    interior = angle < math.asin(r / dist) * 0.9
    torch.testing.assert_close(out["rgb"][0][interior], torch.tensor([0.2, 0.4, 0.6]).expand(int(interior.sum()), 3),
                               atol=2e-3, rtol=0)
    exterior = angle > math.asin(r / dist) * 1.1
    torch.testing.assert_close(out["rgb"][0][exterior], torch.ones(int(exterior.sum()), 3))
    # depth of the centre ray is the near surface (dist - r) within a sample step
    centre = angle.argmin()
    assert out["depth"][0, centre].item() == pytest.approx(dist - r, abs=0.03)


def test_chunked_equals_whole():
    c2w = cameras.orbit_cameras(1, 2.0, 30.0, 10.0)
    o, d = camera_rays(c2w, cameras.intrinsics(0.75), 16)
    field = sphere_field(0.6, (0.9, 0.1, 0.3), 30.0)
    whole = render_rays(field, lambda s: s, o, d, 0.5, RenderConfig(samples=32, importance=32, chunk=10_000))
    chunked = render_rays(field, lambda s: s, o, d, 0.5, RenderConfig(samples=32, importance=32, chunk=37))
    for k in whole:
        torch.testing.assert_close(whole[k], chunked[k])


@pytest.mark.parametrize("quadrature", ["interval", "point"])
def test_skipping_matches_the_reference_on_a_batch_of_two_fields(quadrature):
    """The empty-space-skipping renderer against the reference on TripoSR's default (point
    quadrature, midpoint samples, no importance) and OpenLRM's (interval, importance), with two
    different fields in one batch (its batched branch): equal to within the optical depth the
    grid may skip (skip_threshold), and most of the field queries saved."""
    import torch.nn.functional as F

    from lrm.render.occupancy import occupancy_grid, skip_threshold
    from lrm.render.skipping import render_rays_skipping

    cfg = RenderConfig(samples=64, importance=0 if quadrature == "point" else 32, quadrature=quadrature,
                       spacing="midpoints" if quadrature == "point" else "endpoints", chunk=700)
    centres = torch.tensor([[0.35, 0.0, 0.1], [-0.3, 0.2, -0.1]])  # one ball per field of the batch

    def raw(xyz, centre):  # [..., 3] -> raw density: dense inside a ball of radius 0.3, empty far off
        return 60.0 * (0.3 - (xyz - centre).norm(dim=-1))

    calls = []

    def query(xyz):  # xyz [B, N, 3] -> raw [B, N], rgb [B, N, 3]
        calls.append(xyz.shape[0] * xyz.shape[1])
        return raw(xyz, centres[: xyz.shape[0], None]), ((xyz + 1) / 2).clamp(0, 1)

    grid = occupancy_grid(lambda x: torch.maximum(F.softplus(raw(x, centres[0])), F.softplus(raw(x, centres[1]))),
                          1.0, 32, skip_threshold(cfg))
    c2w = cameras.orbit_cameras(2, 2.2, 20.0, -90.0)
    o, d = camera_rays(c2w, cameras.intrinsics(0.75, 2), 40)  # [2, 1600, 3]: one camera per field
    ref = render_rays(query, F.softplus, o, d, 1.0, cfg)
    reference_calls, calls[:] = sum(calls), []
    fast = render_rays_skipping(query, F.softplus, o, d, 1.0, cfg, grid)
    assert ref["opacity"].amax() > 0.9 and (ref["opacity"] < 0.01).float().mean() > 0.3  # balls and empty space
    tau = 3e-3  # skip_threshold's optical-depth budget: at most 1 - exp(-tau) of opacity lost
    assert (fast["opacity"] - ref["opacity"]).abs().max() < tau  # measured 3e-7 / 2e-6
    assert (fast["rgb"] - ref["rgb"]).abs().max() < tau
    assert sum(calls) < 0.2 * reference_calls, (sum(calls), reference_calls)  # measured 8-12 %
