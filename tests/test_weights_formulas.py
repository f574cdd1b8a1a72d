"""Hand-checkable tests of the formulas whose exactness the published weights depend on:
ModLN, position-table interpolation (three rules), the source-camera vector, plane axes."""

import math

import pytest
import torch

from lrm.model.camera import ModLN
from lrm.model.encoder import resize_pos_embed
from lrm.model.presets import openlrm_base
from lrm.model.triplane import OPENLRM_AXES, TRIPOSR_AXES, sample_triplane
from lrm.hub import build_empty
from tests.reference import interp
from tests.reference.openlrm import PLANE_AXES as REF_OPENLRM_AXES
from tests.reference.openlrm import triplane_features
from tests.reference.triposr import PLANE_AXES as REF_TRIPOSR_AXES


def test_modln_two_dims_by_hand():
    # x = [1, 3]: mean 2, variance 1 -> LN(x) = [-1, 1] / sqrt(1 + 1e-6).
    # c = [2]: SiLU(2) = 2 * sigmoid(2) = 1.7615941559557646.
    # [shift | scale] = W SiLU(c) + b with W = [0, 0, 1, 0]^T, b = [0.5, -0.5, 0, 2]
    #   -> shift = [0.5, -0.5], scale = [1.76159..., 2]   (shift comes FIRST)
    # out = LN(x) * (1 + scale) + shift = [-(2.76159...) + 0.5, 3 - 0.5] = [-2.26159..., 2.5]
    m = ModLN(2, 1, eps=1e-6)
    with torch.no_grad():
        m.norm.weight.fill_(1.0)
        m.norm.bias.zero_()
        m.mod.weight.copy_(torch.tensor([[0.0], [0.0], [1.0], [0.0]]))
        m.mod.bias.copy_(torch.tensor([0.5, -0.5, 0.0, 2.0]))
    out = m(torch.tensor([[[1.0, 3.0]]]), torch.tensor([[2.0]]))
    ln = 1 / math.sqrt(1 + 1e-6)
    expected = [-ln * (1 + 1.7615941559557646) + 0.5, ln * 3 - 0.5]
    assert out.flatten().tolist() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx([-2.2615941, 2.5], abs=1e-5)


def test_cubic_kernel_by_hand():
    # a = -0.75 (plain bicubic), t = 0.25: taps at distances 1.25, 0.25, 0.75, 1.75
    w = [interp.cubic(d, -0.75) for d in (1.25, 0.25, 0.75, 1.75)]
    assert w == pytest.approx([-0.10546875, 0.87890625, 0.26171875, -0.03515625], abs=1e-12)
    # a = -0.5 (antialiased path)
    w = [interp.cubic(d, -0.5) for d in (0.25, 0.75, 1.25, 1.75)]
    assert w == pytest.approx([0.8671875, 0.2265625, -0.0703125, -0.0234375], abs=1e-12)


@pytest.mark.parametrize("grid,n,rule", [(37, 16, "dinov2"), (37, 24, "dinov2"), (37, 32, "dinov2"),
                                         (14, 32, "hf4"), (14, 32, "hf5")])
def test_constant_table_stays_constant(grid, n, rule):
    table = torch.full((1, grid * grid, 3), 0.7)
    out = resize_pos_embed(table, (n, n), rule)
    assert out.shape == (1, n * n, 3)
    assert torch.allclose(out, torch.full_like(out, 0.7), atol=1e-6)


def _column_ramp(g: int) -> torch.Tensor:
    """[1, g*g, 1] table whose value is the column index (rows constant)."""
    return torch.arange(g, dtype=torch.float32).repeat(g)[None, :, None]


def test_ramp_hf5_size_rule_by_hand():
    # size=(8, 8) from a 4x4 grid: s_i = (i + 0.5) * 4/8 - 0.5; i = 3 -> s = 1.25 (x0 = 1, t = 0.25)
    # value = 0*(-0.10546875) + 1*0.87890625 + 2*0.26171875 + 3*(-0.03515625) = 1.296875
    out = resize_pos_embed(_column_ramp(4), (8, 8), "hf5").reshape(8, 8)
    assert out[:, 3].tolist() == pytest.approx([1.296875] * 8, abs=1e-6)


def test_ramp_hf4_plus_point_one_rule_by_hand():
    # scale_factor = (8 + 0.1)/4: s_i = (i + 0.5) * 4/8.1 - 0.5; i = 3 -> s = 1.2283950617 (t = 0.2283950617)
    s = 3.5 * 4 / 8.1 - 0.5
    t = s - 1
    w = [interp.cubic(d, -0.75) for d in (1 + t, t, 1 - t, 2 - t)]  # taps 0, 1, 2, 3
    expected = sum(k * wk for k, wk in enumerate(w))
    out = resize_pos_embed(_column_ramp(4), (8, 8), "hf4").reshape(8, 8)
    assert out[:, 3].tolist() == pytest.approx([expected] * 8, abs=1e-6)
    assert expected == pytest.approx(1.2762602, abs=1e-6)
    assert abs(expected - 1.296875) > 0.02  # the two transformers rules differ visibly


def test_ramp_dinov2_antialiased_by_hand():
    # 8 -> 4 (scale 0.5): output 0 centred at 1.0 input px, support 4 -> inputs 0..4 with weights
    # W_{-0.5}(|j + 0.5 - 1| / 2) = [0.8671875, 0.8671875, 0.2265625, -0.0703125, -0.0234375] (sum 1.8671875)
    # ramp value = (1*0.8671875 + 2*0.2265625 - 3*0.0703125 - 4*0.0234375) / 1.8671875 = 1.015625 / 1.8671875
    out = resize_pos_embed(_column_ramp(8), (4, 4), "dinov2").reshape(4, 4)
    assert out[:, 0].tolist() == pytest.approx([1.015625 / 1.8671875] * 4, abs=1e-6)


@pytest.mark.parametrize("grid,n,rule", [(37, 16, "dinov2"), (37, 24, "dinov2"), (37, 32, "dinov2"),
                                         (14, 32, "hf4"), (14, 32, "hf5"), (14, 14, "hf4")])
def test_resize_matches_explicit_weight_matrices(grid, n, rule):
    table = torch.randn(1, grid * grid, 4, generator=torch.Generator().manual_seed(1))
    ours = resize_pos_embed(table, (n, n), rule)
    ref = interp.resize_table(table, n, rule)
    assert (ours - ref).abs().max() < 1e-5  # PyTorch's kernels round their coordinates in float32


def test_canonical_camera_vector():
    # openlrm-v1.1.md §5.1 with d = 2
    model = build_empty(openlrm_base())
    assert model.source_camera(1).tolist()[0] == [1, 0, 0, 0, 0, 0, -1, -2, 0, 1, 0, 0, 0.75, 0.75, 0.5, 0.5]
    assert model.source_camera(2, distance=1.5)[1, 7].item() == -1.5


def test_plane_axes():
    # 4x4 planes whose value is the column index (channel 0) and the row index (channel 1).
    # align_corners=False: u = -0.75, -0.25, 0.25, 0.75 hit column centres 0..3 exactly.
    idx = torch.arange(4, dtype=torch.float32)
    plane = torch.stack([idx.expand(4, 4), idx[:, None].expand(4, 4)])  # [2, 4, 4]
    planes = plane.expand(1, 3, 2, 4, 4)
    xyz = torch.tensor([[[-0.75, -0.25, 0.75]]])  # x -> index 0, y -> 1, z -> 3
    # OpenLRM: (x, y), (x, z), (z, y) -> (col, row) = (0, 1), (0, 3), (3, 1)
    assert REF_OPENLRM_AXES == OPENLRM_AXES
    got = sample_triplane(planes, xyz, OPENLRM_AXES).flatten().tolist()
    assert got == [0, 1, 0, 3, 3, 1]
    assert triplane_features(planes[0], xyz[0], REF_OPENLRM_AXES).flatten().tolist() == got
    # TripoSR: (x, y), (x, z), (y, z) -> (0, 1), (0, 3), (1, 3)
    assert REF_TRIPOSR_AXES == TRIPOSR_AXES
    got = sample_triplane(planes, xyz, TRIPOSR_AXES).flatten().tolist()
    assert got == [0, 1, 0, 3, 1, 3]
    assert triplane_features(planes[0], xyz[0], REF_TRIPOSR_AXES).flatten().tolist() == got


def test_bilinear_zero_padding_outside():
    # Beyond the outer pixel centre the outside taps contribute 0 (padding_mode="zeros"):
    # u = 1.0 on a 4-px row is column 3.5 -> half of column 3.
    plane = torch.ones(1, 1, 1, 4, 4).expand(1, 3, 1, 4, 4)
    v = sample_triplane(plane, torch.tensor([[[1.0, 0.0, 0.0]]]), OPENLRM_AXES).flatten().tolist()
    assert v == [0.5, 0.5, 1.0]  # planes 0, 1 use x as u; plane 2 uses z

