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


def _owned_axis(a: np.ndarray, s: int, step: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Lattice coordinates owned by blocks a: [K] -> coords [K, s/step + 1], valid [K, s/step + 1]"""
    offs = np.arange(0, s, step)
    c = a[:, None] * s + offs[None]
    valid = c < r - 1
    last = a == n_blocks(r, s) - 1
    c = np.concatenate([c, np.full((len(a), 1), r - 1)], axis=1)
    valid = np.concatenate([valid, last[:, None]], axis=1)
    return c, valid


def _combine(axes: list[tuple[np.ndarray, np.ndarray]], r: int) -> np.ndarray:
    """Per-axis (coords [K, Lx], valid [K, Lx]) -> keys of the valid products [M]"""
    (x, vx), (y, vy), (z, vz) = axes
    lin = pack(x[:, :, None, None], y[:, None, :, None], z[:, None, None, :], r)
    ok = vx[:, :, None, None] & vy[:, None, :, None] & vz[:, None, None, :]
    return lin[ok]


def block_points(blocks: np.ndarray, s: int, step: int, r: int, member: np.ndarray) -> np.ndarray:
    """Keys of the lattice points (spacing `step`) in the closed ranges of `blocks`,
    each once. blocks: [K, 3] at spacing s; member: [n, n, n] bool, True for blocks of this
    set (their owned points are listed through them) -> [M] int64, unique"""
    if len(blocks) == 0:
        return np.zeros(0, np.int64)
    n = n_blocks(r, s)
    owned = [_owned_axis(blocks[:, i], s, step, r) for i in range(3)]
    parts = [_combine(owned, r)]
    extras = []
    for sh in SHIFTS:  # high faces owned by neighbours outside the set
        nb = blocks + sh
        sel = (nb < n).all(axis=1)
        sel[sel] = ~member[nb[sel, 0], nb[sel, 1], nb[sel, 2]]
        a = blocks[sel]
        axes = []
        for i in range(3):
            if sh[i]:
                axes.append(((a[:, i:i + 1] + 1) * s, np.ones((len(a), 1), bool)))
            else:
                c, v = owned[i]
                axes.append((c[sel], v[sel]))
        extras.append(_combine(axes, r))
    parts.append(np.unique(np.concatenate(extras)))
    return np.concatenate(parts)


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
