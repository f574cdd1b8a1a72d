"""FoldedField (first layer folded into the planes, embedding_bag lookup) vs Field.forward."""

import pytest
import torch

from lrm.model.fastfield import FoldedField
from lrm.model.field import Field
from lrm.model.presets import openlrm_base, tiny, triposr


@pytest.mark.parametrize("make", [openlrm_base, triposr, tiny], ids=["openlrm", "triposr", "tiny"])
def test_folded_field_equals_reference(make):
    cfg = make().field
    torch.manual_seed(0)
    field = Field(cfg).eval()
    planes = torch.randn(2, 3, cfg.channels, 16, 16)
    # points inside, on the border texels, and outside the planes (zero padding)
    xyz = (torch.rand(2, 3000, 3) * 2.6 - 1.3) * cfg.radius
    xyz[:, :4] = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [-1.03, 0.2, 1.03], [0.0, 0.0, 0.0]]) * cfg.radius
    with torch.no_grad():
        raw_ref, rgb_ref = field(planes, xyz)
    raw, rgb = FoldedField(field, planes, chunk=700)(xyz)
    assert raw.shape == raw_ref.shape and rgb.shape == rgb_ref.shape
    torch.testing.assert_close(raw, raw_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rgb, rgb_ref, atol=1e-5, rtol=1e-5)
    far = xyz.abs().amax(-1) > cfg.radius * (1 + 2 / 16)  # every tap outside: features are zero
    assert far.any()


def test_folded_field_hand_worked_bilinear():
    """One channel, identity-like decoder: the raw density is the bilinear sum of the three planes."""
    from lrm.model.field import FieldConfig

    cfg = FieldConfig(channels=1, hidden=3, layers=2, activation="relu")
    field = Field(cfg).eval()
    with torch.no_grad():
        field.mlp[0].weight.copy_(torch.eye(3))
        field.mlp[0].bias.fill_(10.0)  # keep ReLU in its linear part
        field.mlp[2].weight.zero_()
        field.mlp[2].weight[0].fill_(1.0)
        field.mlp[2].bias.zero_()
    planes = torch.zeros(1, 3, 1, 2, 2)
    planes[0, 0, 0] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # (x, y) plane: row = y, column = x
    xyz = torch.tensor([[[0.0, 0.0, 0.0], [-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [-0.75, -0.5, 0.0]]])
    raw, _ = FoldedField(field, planes)(xyz)
    # centre: mean of the four texels; texel centres at +-0.5; at x=-0.75 half a tap is padding
    torch.testing.assert_close(raw[0], torch.tensor([2.5, 1.0, 2.0, 0.75]) + 30.0)
