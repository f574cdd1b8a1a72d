"""The CUDA paths: the bundled model on a GPU in fp32 and under bf16 autocast, PyTorch SDPA on
CUDA against plain softmax attention, and one bf16 training step. Skipped without CUDA (CI has
none); scripts/gpu_train.sh runs them on a GPU machine. Tolerances: fp32 with TF32 off agrees
with the CPU to float rounding (1e-4 on planes of size ~1); bf16 keeps 8 mantissa bits, so its
planes may differ by a few 1e-2 relative, and its renders by well under 0.05."""

from __future__ import annotations

import pytest
import torch

from lrm import cameras
from lrm.hub import load_model
from lrm.model.attention import Attention

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _inputs(b: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 3, 128, 128, generator=g)  # [B, 3, S, S]


def _views(model, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    c2w = cameras.canonical_c2w(model.cfg.inference.source_distance)[None, None].expand(b, 1, 4, 4)
    intr = cameras.intrinsics(model.cfg.inference.source_focal)[None].expand(b, 1, 4)
    return c2w, intr  # [B, 1, 4, 4], [B, 1, 4]


def test_model_fp32_on_cuda_matches_cpu():
    cpu = load_model("default")
    gpu = load_model("default", device="cuda")
    x = _inputs()
    with torch.no_grad():
        want = cpu(x)
        got = gpu(x.cuda()).cpu()
        c2w, intr = _views(cpu, 2)
        want_img = cpu.render(want, c2w, intr, 32)["rgb"]
        got_img = gpu.render(got.cuda(), c2w.cuda(), intr.cuda(), 32)["rgb"].cpu()
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
    assert torch.allclose(got_img, want_img, atol=1e-4), (got_img - want_img).abs().max()


def test_model_bf16_autocast_close_to_fp32():
    gpu = load_model("default", device="cuda")
    x = _inputs().cuda()
    with torch.no_grad():
        ref = gpu(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = gpu(x)
        c2w, intr = (t.cuda() for t in _views(gpu, 2))
        img_ref = gpu.render(ref, c2w, intr, 32)["rgb"]
        img_low = gpu.render(low.float(), c2w, intr, 32)["rgb"]
    rel = (low.float() - ref).norm() / ref.norm()
    assert torch.isfinite(low).all() and rel < 0.05, rel
    assert (img_low - img_ref).abs().mean() < 0.02, (img_low - img_ref).abs().mean()
    # a change of input must still change the output by far more than bf16 rounding
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        other = gpu(x.flip(0))
    assert (other.float() - low.float()).norm() / ref.norm() > 4 * rel


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sdpa_on_cuda_matches_softmax_attention(dtype):
    torch.manual_seed(0)
    att = Attention(64, 4, context_dim=48).cuda()
    x = torch.randn(3, 50, 64, device="cuda")  # [B, L, D]
    ctx = torch.randn(3, 70, 48, device="cuda")  # [B, Lc, Dc]
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        got = att(x, ctx).float()
    with torch.no_grad():  # the slow reference, in fp32
        q = att.q(x).reshape(3, 50, 4, 16).transpose(1, 2)
        k, v = (t.reshape(3, 70, 4, 16).transpose(1, 2) for t in att.kv(ctx).chunk(2, -1))
        w = torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1)
        want = att.out((w @ v).transpose(1, 2).reshape(3, 50, 64))
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    assert (got - want).abs().max() < tol * max(1.0, want.abs().max().item()), (got - want).abs().max()


def test_bf16_training_step_on_cuda():
    model = load_model("default", device="cuda").train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = _inputs().cuda()
    c2w, intr = (t.cuda() for t in _views(model, 2))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        planes = model(x)
        out = model.render(planes, c2w, intr, 16)
    loss = (out["rgb"].float() - 0.5).square().mean() + out["opacity"].float().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert torch.isfinite(loss) and grads and all(torch.isfinite(g).all() for g in grads)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
