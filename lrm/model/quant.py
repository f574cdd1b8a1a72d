"""int8 inference for the big matmuls, for CPUs without fast bf16 (no AVX-512 BF16 / AMX).

`Int8Linear` is a dynamic W8A8 linear layer: weights int8 per output channel, activations
int8 per token (row), both symmetric, int32 accumulation with `torch._int_mm` (VNNI on x86),
fp32 output. `quantize_(model)` swaps it in for the Linear layers of the encoder and
transformer blocks (attention projections and MLPs: ~69% of the forward FLOPs for
OpenLRM-base); the attention itself (SDPA), norms, camera modulation, upsampler and the field
decoder stay fp32. Accuracy against fp32 is measured in tests/test_quant.py and
benchmarks/bench_inference.py (docs/performance.md).
"""

from __future__ import annotations

import torch
from torch import nn


def int8_available() -> bool:
    """Whether torch._int_mm runs on CPU in this build."""
    try:
        a = torch.ones(32, 32, dtype=torch.int8)
        return bool(torch._int_mm(a, a)[0, 0] == 32)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x: [M, K] float -> int8 values [M, K], scales [M, 1] with x ≈ values * scales."""
    # two plain reductions beat aminmax and abs().amax() on CPU (no temporary, vectorised)
    scale = torch.maximum(x.amax(-1, keepdim=True), x.amin(-1, keepdim=True).neg_()).clamp_(min=1e-12).div_(127)
    return (x * scale.reciprocal()).round_().to(torch.int8), scale


class Int8Linear(nn.Module):
    """Dynamic W8A8 replacement of an nn.Linear (inference only)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        qweight, wscale = quantize_rows(linear.weight.detach().float())  # [O, I], [O, 1]
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("qweight_t", qweight.t())  # [I, O] view of the [O, I] storage
        self.register_buffer("wscale", wscale.reshape(-1))  # [O]
        bias = linear.bias.detach().float() if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., I] -> [..., O] float32"""
        lead = x.shape[:-1]
        q, scale = quantize_rows(x.reshape(-1, self.in_features).float())
        y = torch._int_mm(q, self.qweight_t).float().mul_(self.wscale)  # int32 [M, O] -> float32
        y = torch.addcmul(self.bias, y, scale) if self.bias is not None else y.mul_(scale)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def _big_linears(model: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, name, layer) for the Linear layers inside encoder and transformer blocks,
    except the camera modulation (ModLN.mod, the encoder's ada: one vector per image)."""
    out = []
    for part in (model.encoder.blocks, model.transformer.blocks):
        for parent in part.modules():
            for name, child in parent.named_children():
                if isinstance(child, nn.Linear) and name not in ("mod", "ada"):
                    out.append((parent, name, child))
    return out


@torch.no_grad()
def quantize_(model: nn.Module) -> int:
    """Swap Int8Linear in for the big Linear layers of an LRM, in place. -> number swapped"""
    layers = _big_linears(model)
    for parent, name, layer in layers:
        setattr(parent, name, Int8Linear(layer))
    return len(layers)


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, Int8Linear) for m in model.modules())
