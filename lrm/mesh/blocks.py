"""Index arithmetic for block-structured grids (used by lrm.mesh.sparse).

One axis of R grid points is cut into n = ceil((R - 1) / s) blocks of s cells; block a spans
the closed point range [a·s, min((a + 1)·s, R - 1)], so neighbours share their common face.
The lattice of spacing `step` (a divisor of s) is the point set {min(c·step, R - 1)}.
Every lattice point is *owned* by exactly one block: the one where it is not on the high face
(the last block also owns the point R - 1). Points are handled as integer keys
(x << 2s) | (y << s) | z with s = bits(R - 1): sortable in x-major order, cheap to split.
"""

from __future__ import annotations

import numpy as np

SHIFTS = np.array([s for s in np.ndindex(2, 2, 2) if any(s)])  # [7, 3] high-side neighbours
FACES = np.concatenate([np.eye(3, dtype=np.int64), -np.eye(3, dtype=np.int64)])  # [6, 3] face neighbours


def n_blocks(r: int, s: int) -> int:
    return -(-(r - 1) // s)


def flat(x: np.ndarray, y: np.ndarray, z: np.ndarray, n: int) -> np.ndarray:
    """Row-major index into a dense [n, n, n] array."""
    return (x * n + y) * n + z


def key_bits(r: int) -> int:
    return max(1, (r - 1).bit_length())


def pack(x: np.ndarray, y: np.ndarray, z: np.ndarray, r: int) -> np.ndarray:
    """Grid coordinates -> point keys (int64)"""
    s = key_bits(r)
    return (np.asarray(x, np.int64) << (2 * s)) | (np.asarray(y, np.int64) << s) | np.asarray(z, np.int64)


def unpack(key: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point keys -> grid coordinates x, y, z"""
    s = key_bits(r)
    m = (1 << s) - 1
    return key >> (2 * s), (key >> s) & m, key & m


def _owned_axis(a: np.ndarray, s: int, step: int, r: int, end: bool) -> tuple[np.ndarray, np.ndarray]:
    """Lattice coordinates owned by blocks a: [K] -> coords [K, L], valid [K, L], L = s/step
    (+ 1 with `end`: a slot for R - 1, owned by the last block)"""
    c = a[:, None] * s + np.arange(0, s, step)[None]
    valid = c < r - 1
    if end:
        c = np.concatenate([c, np.full((len(a), 1), r - 1)], axis=1)
        valid = np.concatenate([valid, (a == n_blocks(r, s) - 1)[:, None]], axis=1)
    return c, valid


def block_points(blocks: np.ndarray, s: int, step: int, r: int, member: np.ndarray) -> np.ndarray:
    """Keys of the lattice points (spacing `step`) in the closed ranges of `blocks`, each once.

    blocks: [K, 3] at spacing s; member: [n, n, n] bool, True for the blocks of this set (and
    any whose points are known already) -> [M] int64. A point is listed through its owner:
    the blocks of the set list what they own; a block outside the set lists the part of what
    it owns that lies on the closed range of a member below it (its low faces)."""
    n = n_blocks(r, s)
    outside = np.zeros((n,) * 3, bool)  # owners outside the set of high-face points
    for sh in SHIFTS:
        nb = blocks + sh
        nb = nb[(nb < n).all(axis=1)]
        outside[nb[:, 0], nb[:, 1], nb[:, 2]] = True
    owners = np.argwhere(outside & ~member)
    below = np.zeros((len(owners), len(SHIFTS)), bool)  # which members lie below each owner
    for j, sh in enumerate(SHIFTS):
        a = owners - sh
        ok = (a >= 0).all(axis=1)
        below[ok, j] = member[a[ok, 0], a[ok, 1], a[ok, 2]]
    parts = []
    for group, keep in ((blocks, None), (owners, below)):
        at_end = (group == n - 1).any(axis=1)  # only these can own the point R - 1
        for sel, end in ((~at_end, False), (at_end, True)):
            g = group[sel]
            if len(g) == 0:
                continue
            axes = [_owned_axis(g[:, i], s, step, r, end) for i in range(3)]
            (x, vx), (y, vy), (z, vz) = axes
            ok = vx[:, :, None, None] & vy[:, None, :, None] & vz[:, None, None, :]
            if keep is not None:  # owned points on a low face shared with a member below
                low = [np.arange(v.shape[1]) == 0 for v in (vx, vy, vz)]
                face = np.zeros(ok.shape, bool)
                for j, sh in enumerate(SHIFTS):
                    m = np.ones(ok.shape[1:], bool)
                    for i in range(3):
                        if sh[i]:
                            m &= low[i].reshape([-1 if d == i else 1 for d in range(3)])
                    face |= keep[sel][:, j, None, None, None] & m[None]
                ok &= face
            parts.append(pack(x[:, :, None, None], y[:, None, :, None], z[:, None, None, :], r)[ok])
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def shared_points(blocks: np.ndarray, d: np.ndarray, b: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid points (spacing 1) that blocks share with their neighbours blocks + d.
    blocks: [K, 3] at spacing b; d: [3] in {-1, 0, 1} -> keys [K, P], valid [K, P]"""
    axes = []
    for i in range(3):
        a = blocks[:, i:i + 1]
        if d[i] == 0:
            c = a * b + np.arange(b + 1)[None]
            axes.append((np.minimum(c, r - 1), c <= r - 1))
        else:
            c = (a + 1) * b if d[i] > 0 else a * b
            axes.append((c, np.ones_like(c, bool)))
    (x, vx), (y, vy), (z, vz) = axes
    shape = (len(blocks), x.shape[1] * y.shape[1] * z.shape[1])
    lin = pack(x[:, :, None, None], y[:, None, :, None], z[:, None, None, :], r).reshape(shape)
    ok = (vx[:, :, None, None] & vy[:, None, :, None] & vz[:, None, None, :]).reshape(shape)
    return lin, ok


def closed_lattice(blocks: np.ndarray, s: int, step: int, r: int) -> np.ndarray:
    """Keys of the lattice points (spacing `step`) of the blocks' closed ranges, clipped at
    R - 1 (so repeated where a block is cut by the grid's end). blocks: [K, 3] at spacing s
    -> [K, L, L, L], L = s / step + 1"""
    offs = np.arange(0, s + 1, step)
    c = [np.minimum(blocks[:, i:i + 1] * s + offs[None], r - 1) for i in range(3)]
    return pack(c[0][:, :, None, None], c[1][:, None, :, None], c[2][:, None, None, :], r)


def containing_blocks(lin: np.ndarray, r: int, b: int, side: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Blocks (spacing b) whose closed range contains each point: up to 8 pairs of
    (flat block index in a [side]³ array [N], valid [N])."""
    n = n_blocks(r, b)
    first, second, has = [], [], []
    for p in unpack(lin, r):
        q = p // b
        first.append(np.minimum(q, n - 1))
        second.append(q - 1)
        has.append((p % b == 0) & (p > 0))
    out = []
    for choice in np.ndindex(2, 2, 2):
        idx = [second[i] if c else first[i] for i, c in enumerate(choice)]
        valid = np.ones(len(lin), bool)
        for i, c in enumerate(choice):
            if c:
                valid &= has[i]
        out.append((flat(idx[0], idx[1], idx[2], side), valid))
    return out


def unique_rows(a: np.ndarray, n: int) -> np.ndarray:
    """Unique block coordinates: [K, 3] in [0, n) -> [K', 3]"""
    lin = np.unique(flat(a[:, 0], a[:, 1], a[:, 2], n))
    return np.stack(np.unravel_index(lin, (n,) * 3), axis=-1)
