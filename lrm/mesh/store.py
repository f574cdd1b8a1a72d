"""Sparse storage of grid values, with memory proportional to the points stored.

The grid's coarse lattice (spacing c) is held in a small dense array; every other point lives
in the brick of the coarse block that owns it (a block owns [a·c, (a+1)·c) per axis, the last
one also R - 1), allocated on first write. A dense R³ array would cost 226 MB at R = 384 and,
on fresh memory, more time in page faults than the queries it saves.
"""

from __future__ import annotations

import numpy as np

from lrm.mesh.blocks import n_blocks


class PointStore:
    """Values at grid points; NaN marks a point not stored (queried densities are never NaN)."""

    def __init__(self, r: int, coarse: int) -> None:
        assert coarse & (coarse - 1) == 0, "the coarse spacing must be a power of two"
        self.r, self.c, self.shift = r, coarse, coarse.bit_length() - 1
        self.n = n_blocks(r, coarse)  # coarse blocks per axis
        self.side = coarse + 1  # brick side (the last block of an axis may hold c + 1 points)
        self.lattice = np.full((self.n + 1) ** 3, np.nan, np.float32)
        self.slot = np.full(self.n ** 3, -1, np.int64)  # brick index per coarse block, -1: none
        self.bricks = np.zeros((0, self.side ** 3), np.float32)
        self.used = 0

    def _locate(self, x: np.ndarray, y: np.ndarray, z: np.ndarray):
        """-> (on the lattice [N] bool, owning coarse block [N], index in its brick [N])"""
        k, mask, n, r = self.shift, self.c - 1, self.n, self.r
        on = (((x & mask) == 0) | (x == r - 1)) & (((y & mask) == 0) | (y == r - 1)) & (((z & mask) == 0) | (z == r - 1))
        bx, by, bz = np.minimum(x >> k, n - 1), np.minimum(y >> k, n - 1), np.minimum(z >> k, n - 1)
        block = (bx * n + by) * n + bz
        local = ((x - (bx << k)) * self.side + (y - (by << k))) * self.side + (z - (bz << k))
        return on, block, local

    def _lattice_index(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        k, mask, n1 = self.shift, self.c - 1, self.n + 1
        return (((x + mask) >> k) * n1 + ((y + mask) >> k)) * n1 + ((z + mask) >> k)

    def get_xyz(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Values at grid coordinates (integer arrays of one shape); NaN where nothing is stored."""
        on, block, local = self._locate(x, y, z)
        slot = self.slot[block]
        has = slot >= 0
        out = np.full(x.shape, np.nan, np.float32)
        out[has] = self.bricks[slot[has], local[has]]
        out[on] = self.lattice[self._lattice_index(x[on], y[on], z[on])]
        return out

    def get(self, lin: np.ndarray) -> np.ndarray:
        """lin: flat grid indices (x·R + y)·R + z -> values, NaN where nothing is stored"""
        x, yz = np.divmod(lin, self.r * self.r)
        y, z = np.divmod(yz, self.r)
        return self.get_xyz(x.astype(np.int32), y.astype(np.int32), z.astype(np.int32))

    def box(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Values of the closed box [lo, hi] (grid coordinates [3]) -> [X, Y, Z], NaN where
        nothing is stored. Copies whole brick pieces instead of locating points one by one."""
        k, c, n, side, r = self.shift, self.c, self.n, self.side, self.r
        out = np.full(tuple(hi - lo + 1), np.nan, np.float32)
        ranges = [range(lo[i] >> k, min(hi[i] >> k, n - 1) + 1) for i in range(3)]
        for bx in ranges[0]:
            for by in ranges[1]:
                for bz in ranges[2]:
                    slot = self.slot[(bx * n + by) * n + bz]
                    if slot < 0:
                        continue
                    brick = self.bricks[slot].reshape(side, side, side)
                    src, dst = [], []
                    for a, l, h in zip((bx, by, bz), lo, hi):  # owned points [a·c, end] of this axis
                        end = min(a * c + c - 1, r - 1) if a < n - 1 else r - 1
                        s0, s1 = max(a * c, l), min(end, h)
                        src.append(slice(s0 - a * c, s1 - a * c + 1))
                        dst.append(slice(s0 - l, s1 - l + 1))
                    out[tuple(dst)] = brick[tuple(src)]
        lat = [np.unique(np.minimum(np.arange(-(-l // c) * c, h + c, c), r - 1)) for l, h in zip(lo, hi)]
        lat = [a[(a >= l) & (a <= h)] for a, l, h in zip(lat, lo, hi)]
        li = [-(-a // c) for a in lat]
        out[np.ix_(*[a - l for a, l in zip(lat, lo)])] = self.lattice.reshape((n + 1,) * 3)[np.ix_(*li)]
        return out

    def set(self, lin: np.ndarray, values: np.ndarray) -> None:
        """Store values [N] (not NaN) at flat grid indices lin [N]."""
        x, yz = np.divmod(lin, self.r * self.r)
        y, z = np.divmod(yz, self.r)
        on, block, local = self._locate(x, y, z)
        self.lattice[self._lattice_index(x[on], y[on], z[on])] = values[on]
        off = ~on
        need = np.unique(block[off])
        need = need[self.slot[need] < 0]
        if need.size:
            self._grow(self.used + need.size)
            self.slot[need] = np.arange(self.used, self.used + need.size)
            self.used += need.size
        self.bricks[self.slot[block[off]], local[off]] = values[off]

    def _grow(self, size: int) -> None:
        if size <= len(self.bricks):
            return
        grown = np.full((max(size, 2 * len(self.bricks), 64), self.side ** 3), np.nan, np.float32)
        grown[: self.used] = self.bricks[: self.used]
        self.bricks = grown

    def nbytes(self) -> int:
        return self.lattice.nbytes + self.slot.nbytes + self.bricks.nbytes
