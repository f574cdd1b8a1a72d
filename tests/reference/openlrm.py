"""Slow reference of OpenLRM v1.1's forward pass, field and renderer, from openlrm-v1.1.md,
reading the upstream state dict directly. Plain tensor ops, no lrm imports.

    planes = forward_planes(sd, images, cam16, heads, enc_heads)    # §3-§8
    sigma, rgb = query(sd, planes, xyz)                             # §9-§10 (activated density)
    out = render(sd, planes, cams25, R, bg, jitter, u)              # §11 (EG3D-style renderer)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tests.reference.encoders import attention, dinov2_forward, gelu, layer_norm, linear

OUTSIDE = -torch.finfo(torch.float32).max / 8  # §11.5 raw density of out-of-box samples


def silu(x):
    return x * torch.sigmoid(x)


def camera_embed(sd, cam16):
    """§5.2: W2 · SiLU(W1 · cam + b1) + b2."""
    return linear(silu(linear(cam16, sd, "camera_embedder.mlp.0")), sd, "camera_embedder.mlp.2")


def modln(sd, name, x, cam):
    """§6: LN(x) * (1 + scale) + shift with [shift | scale] = Linear(SiLU(cam)), shift first."""
    h = layer_norm(x, sd[name + ".norm.weight"], sd[name + ".norm.bias"], 1e-6)
    ss = linear(silu(cam), sd, name + ".mlp.1")
    d = x.shape[-1]
    return h * (1 + ss[:, None, d:]) + ss[:, None, :d]


def deconv(x, w, b):
    """§8: out[c, 2h+i, 2w+j] = b[c] + sum_d x[d, h, w] W[d, c, i, j]. x: [..., D, h, w]"""
    y = torch.einsum("...dhw,dcij->...chiwj", x, w)
    *lead, c, h, i, ww, j = y.shape
    return y.reshape(*lead, c, h * i, ww * j) + b[:, None, None]


def forward_planes(sd, images, cam16, heads, enc_heads):
    """images: [N, 3, S, S]; cam16: [N, 16] -> planes [N, 3, C, 2r, 2r]"""
    feats = dinov2_forward(sd, images, enc_heads)
    cam = camera_embed(sd, cam16)
    x = sd["pos_embed"].expand(images.shape[0], -1, -1)
    d = x.shape[-1]
    layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.layers."))
    for i in range(layers):
        b = f"transformer.layers.{i}."
        h = modln(sd, b + "norm1", x, cam)
        if b + "cross_attn.in_proj_weight" in sd:  # packed rows: q, k, v
            wq, wk, wv = sd[b + "cross_attn.in_proj_weight"].split(d)
        else:
            wq, wk, wv = (sd[b + f"cross_attn.{n}_proj_weight"] for n in "qkv")
        a = attention(h @ wq.T, feats @ wk.T, feats @ wv.T, heads)
        x = x + a @ sd[b + "cross_attn.out_proj.weight"].T
        h = modln(sd, b + "norm2", x, cam)
        wq, wk, wv = sd[b + "self_attn.in_proj_weight"].split(d)
        x = x + attention(h @ wq.T, h @ wk.T, h @ wv.T, heads) @ sd[b + "self_attn.out_proj.weight"].T
        h = modln(sd, b + "norm3", x, cam)
        x = x + linear(gelu(linear(h, sd, b + "mlp.0")), sd, b + "mlp.3")
    x = layer_norm(x, sd["transformer.norm.weight"], sd["transformer.norm.bias"], 1e-6)
    r = int(round(math.sqrt(x.shape[1] // 3)))
    x = x.reshape(x.shape[0], 3, r, r, d).permute(0, 1, 4, 2, 3)  # token t = p*r*r + h*r + w
    return deconv(x, sd["upsampler.weight"], sd["upsampler.bias"])


def bilinear(plane, u, v):
    """grid_sample semantics (bilinear, align_corners=False, zero padding), written out.
    plane: [C, H, W]; u -> column, v -> row, both in [-1, 1]: [N] -> [N, C]"""
    c, h, w = plane.shape
    col = ((u + 1) * w - 1) / 2
    row = ((v + 1) * h - 1) / 2
    c0, r0 = torch.floor(col), torch.floor(row)
    out = torch.zeros(u.shape[0], c, dtype=plane.dtype)
    for dr in (0, 1):
        for dc in (0, 1):
            rr, cc = r0 + dr, c0 + dc
            wgt = (1 - (row - rr).abs()) * (1 - (col - cc).abs())
            ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            vals = plane[:, rr.clamp(0, h - 1).long(), cc.clamp(0, w - 1).long()].T  # [N, C]
            out = out + (wgt * ok)[:, None] * vals
    return out


# §9: plane 0 (x, y), plane 1 (x, z), plane 2 (z, y); (first -> column, second -> row)
PLANE_AXES = ((0, 1), (0, 2), (2, 1))


def triplane_features(planes, xyz, axes, scale=1.0):
    """planes: [3, C, H, W]; xyz: [N, 3] world -> [N, 3C] (concatenated in plane order)"""
    q = xyz * scale
    return torch.cat([bilinear(planes[p], q[:, a], q[:, b]) for p, (a, b) in enumerate(axes)], -1)


def decode(sd, feats):
    """§10: 4 Linear layers with ReLU -> raw density, rgb = sigmoid*1.002 - 0.001."""
    h = feats
    for j in range(3):
        h = torch.relu(linear(h, sd, f"synthesizer.decoder.net.{2 * j}"))
    o = linear(h, sd, "synthesizer.decoder.net.6")
    return o[:, 0], torch.sigmoid(o[:, 1:]) * (1 + 2 * 0.001) - 0.001


def query(sd, planes, xyz):
    """planes: [3, C, H, W]; xyz: [N, 3] -> activated density softplus(raw - 1) [N], rgb [N, 3]"""
    raw, rgb = decode(sd, triplane_features(planes, xyz, PLANE_AXES))
    return F.softplus(raw - 1), rgb


def rays(cam25, res):
    """§11.2. cam25: [25] (c2w 4x4 row-major, normalised K 3x3 row-major) -> o [R, 3], d [R, 3]"""
    c2w, k = cam25[:16].view(4, 4), cam25[16:].view(3, 3)
    fx, sk, cx, fy, cy = k[0, 0], k[0, 1], k[0, 2], k[1, 1], k[1, 2]
    i, j = torch.meshgrid(torch.arange(res), torch.arange(res), indexing="ij")
    xc, yc = (j.flatten() + 0.5) / res, (i.flatten() + 0.5) / res
    x = (xc - cx + cy * sk / fy - sk * yc / fy) / fx
    y = (yc - cy) / fy
    cam_pts = torch.stack([x, y, torch.ones_like(x), torch.ones_like(x)], -1)  # OpenCV camera frame
    world = (c2w @ torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0])) @ cam_pts.T).T[:, :3]
    o = c2w[:3, 3].expand_as(world)
    return o, F.normalize(world - o, dim=-1)


def ray_bounds(o, d):
    """§11.3 slab test on [-1, 1]^3, including the invalid-ray fill."""
    inv = 1.0 / d
    lo_hi = torch.tensor([-1.0, 1.0])
    neg = (inv < 0).long()
    tmin = (lo_hi[neg] - o) * inv  # [R, 3] per-axis entry
    tmax = (lo_hi[1 - neg] - o) * inv
    start, end = tmin[:, 0], tmax[:, 0]
    invalid = torch.zeros_like(start, dtype=torch.bool)
    for a in (1, 2):
        invalid |= (start > tmax[:, a]) | (tmin[:, a] > end)
        start, end = torch.maximum(start, tmin[:, a]), torch.minimum(end, tmax[:, a])
    start = torch.where(invalid, torch.full_like(start, -1.0), start)
    end = torch.where(invalid, torch.full_like(end, -2.0), end)
    valid = end > start
    if valid.any():
        start = torch.where(valid, start, start[valid].min())
        end = torch.where(valid, end, start[valid].max())  # sic: max of the starts
    return start, end


def masked_query(sd, planes, pts):
    """§11.5. pts: [R, S, 3] -> raw density [R, S] (-FLT_MAX/8 outside), rgb [R, S, 3] (0 outside)"""
    r, s, _ = pts.shape
    raw, rgb = decode(sd, triplane_features(planes, pts.reshape(-1, 3), PLANE_AXES))
    raw, rgb = raw.reshape(r, s), rgb.reshape(r, s, 3)
    inside = ((pts >= -1) & (pts <= 1)).all(-1)
    return torch.where(inside, raw, torch.full_like(raw, OUTSIDE)), rgb * inside[..., None]


def march(t, raw, rgb, bg):
    """§11.6 midpoint quadrature. t, raw: [R, S]; rgb: [R, S, 3]; bg: [R, 1] -> rgb, depth, opacity, w"""
    delta = t[:, 1:] - t[:, :-1]
    c = (rgb[:, 1:] + rgb[:, :-1]) / 2
    tm = (t[:, 1:] + t[:, :-1]) / 2
    sigma = F.softplus((raw[:, 1:] + raw[:, :-1]) / 2 - 1)
    alpha = 1 - torch.exp(-sigma * delta)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha + 1e-10], 1), 1)[:, :-1]
    w = alpha * trans
    opacity = w.sum(1)
    out = (w[..., None] * c).sum(1) + bg * (1 - opacity[:, None])
    depth = (w * tm).sum(1) / opacity
    depth = torch.nan_to_num(depth, nan=float("inf"))  # clamped by the caller over the whole call
    return out, depth, opacity, w


def importance(t, w, u):
    """§11.7. t: [R, S] coarse depths; w: [R, S-1] coarse weights; u: [R, F] -> fine depths [R, F]"""
    s = t.shape[1]
    m = torch.cat([w[:, :1], torch.maximum(w[:, :-1], w[:, 1:]), w[:, -1:]], 1)  # [R, S]
    a = (m[:, :-1] + m[:, 1:]) / 2 + 0.01  # [R, S-1]
    bins = (t[:, :-1] + t[:, 1:]) / 2  # [R, S-1]
    omega = a[:, 1:-1] + 1e-5  # [R, S-3]
    p = omega / omega.sum(1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(p[:, :1]), torch.cumsum(p, 1)], 1)  # [R, S-2]
    i = torch.searchsorted(cdf, u, right=True)
    below, above = (i - 1).clamp(min=0), i.clamp(max=s - 3)
    cb, ca = cdf.gather(1, below), cdf.gather(1, above)
    bb, ba = bins.gather(1, below), bins.gather(1, above)
    den = torch.where(ca - cb < 1e-5, torch.ones_like(ca), ca - cb)
    return bb + (u - cb) / den * (ba - bb)


def render(sd, planes, cams25, res, bg, jitter, u):
    """§11. planes: [N, 3, C, H, W]; cams25: [N, M, 25]; bg: [N, M]; jitter: [N*M, R², S_c, 1] in
    [0, 1); u: [N*M*R², S_f] -> rgb [N, M, 3, R, R], depth [N, M, 1, R, R], opacity [N, M, 1, R, R]"""
    n, m = cams25.shape[:2]
    s_c, rr = jitter.shape[2], res * res
    views = [rays(cams25.reshape(n * m, 25)[v], res) for v in range(n * m)]
    # §11.3 on all rays of the call at once (the invalid-ray fill uses min/max over the call)
    start, end = ray_bounds(torch.cat([o for o, _ in views]), torch.cat([d for _, d in views]))
    rgbs, depths, ops, all_t = [], [], [], []
    for v, (o, d) in enumerate(views):
        s0, e0 = start[v * rr:(v + 1) * rr, None], end[v * rr:(v + 1) * rr, None]
        k = torch.arange(s_c, dtype=torch.float32) / (s_c - 1)
        t = s0 + k * (e0 - s0) + jitter[v, :, :, 0] * (e0 - s0) / (s_c - 1)  # §11.4
        raw, rgb = masked_query(sd, planes[v // m], o[:, None] + t[..., None] * d[:, None])
        bgv = torch.full((rr, 1), float(bg.reshape(-1)[v]))
        _, _, _, w = march(t, raw, rgb, bgv)
        t_f = importance(t, w, u[v * rr:(v + 1) * rr])  # §11.7
        raw_f, rgb_f = masked_query(sd, planes[v // m], o[:, None] + t_f[..., None] * d[:, None])
        t_all, order = torch.sort(torch.cat([t, t_f], 1), 1)  # §11.8
        raw_all = torch.cat([raw, raw_f], 1).gather(1, order)
        rgb_all = torch.cat([rgb, rgb_f], 1).gather(1, order[..., None].expand(-1, -1, 3))
        out, depth, opacity, _ = march(t_all, raw_all, rgb_all, bgv)
        rgbs.append(out.T.reshape(3, res, res))
        depths.append(depth.reshape(1, res, res))
        ops.append(opacity.reshape(1, res, res))
        all_t.append(t_all)
    t_cat = torch.cat(all_t)
    depths = [dp.clamp(t_cat.min(), t_cat.max()) for dp in depths]  # §11.6: global clamp
    shape = lambda xs: torch.stack(xs).reshape(n, m, *xs[0].shape)  # noqa: E731
    return shape(rgbs), shape(depths), shape(ops)
