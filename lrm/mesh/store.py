"""Sparse storage of grid values, with memory proportional to the points stored.

The grid's coarse lattice (spacing c, the points min(i·c, R - 1)) is held in a small dense
array; every other point lives in an c³ brick, the one of the coarse block [a·c, (a+1)·c) per
axis that contains it (an extra layer of bricks, a = n, holds the points at R - 1 when R - 1
is a multiple of c), allocated on first write. A dense R³ array would cost 226 MB at R = 384
and, on fresh memory, more time in page faults than the queries it saves. NaN marks a point
not stored (queried densities are never NaN).
"""

from __future__ import annotations

import numpy as np

from lrm.mesh.blocks import n_blocks, unpack


class PointStore:
    def __init__(self, r: int, coarse: int) -> None:
        assert coarse & (coarse - 1) == 0, "the coarse spacing must be a power of two"
        self.r, self.c, self.k = r, coarse, coarse.bit_length() - 1
        self.n = n_blocks(r, coarse)  # coarse blocks per axis
        self.lattice = np.full((self.n + 1) ** 3, np.nan, np.float32)  # [(n+1)³] lattice values
        self.slot = np.full((self.n + 1) ** 3, -1, np.int64)  # brick of each block (-1: none)
        self.bricks = np.zeros((0, coarse ** 3), np.float32)  # [used, c³]
        self.used = 0
        i = np.arange(r)
        self.on_axis = ((i % coarse) == 0) | (i == r - 1)  # [R] lattice coordinate?
        self.lat_axis = -(-i // coarse)  # [R] lattice index of a lattice coordinate

    def _split(self, key: np.ndarray):
        return unpack(key, self.r)

    def _lattice(self, x, y, z):
        """-> (on the lattice [N] bool, lattice index [M] of the points on it)"""
        on = self.on_axis[x] & self.on_axis[y] & self.on_axis[z]
        n1, la = self.n + 1, self.lat_axis
        return on, (la[x[on]] * n1 + la[y[on]]) * n1 + la[z[on]]

    def _brick(self, x, y, z):
        """-> (brick block index [N], index inside the brick [N])"""
        m, k, c, n1 = self.c - 1, self.k, self.c, self.n + 1
        block = ((x >> k) * n1 + (y >> k)) * n1 + (z >> k)
        return block, ((x & m) * c + (y & m)) * c + (z & m)

    def get(self, lin: np.ndarray) -> np.ndarray:
        """lin: [N] point keys (lrm.mesh.blocks.pack) -> values [N], NaN where nothing is stored"""
        x, y, z = self._split(lin)
        on, lat = self._lattice(x, y, z)
        block, local = self._brick(x, y, z)
        slot = self.slot[block]
        has = slot >= 0
        out = np.full(len(lin), np.nan, np.float32)
        out[has] = self.bricks[slot[has], local[has]]
        out[on] = self.lattice[lat]
        return out

    def set(self, lin: np.ndarray, values: np.ndarray) -> None:
        """Store values [N] (not NaN) at point keys lin [N]."""
        x, y, z = self._split(lin)
        on, lat = self._lattice(x, y, z)
        self.lattice[lat] = values[on]
        block, local = self._brick(x[~on], y[~on], z[~on])
        mark = np.zeros(len(self.slot), bool)
        mark[block] = True
        need = np.flatnonzero(mark & (self.slot < 0))  # blocks that get their first brick
        if need.size:
            if self.used + need.size > len(self.bricks):
                grown = np.full((max(self.used + need.size, 2 * len(self.bricks), 64), self.c ** 3), np.nan, np.float32)
                grown[: self.used] = self.bricks[: self.used]
                self.bricks = grown
            self.slot[need] = np.arange(self.used, self.used + need.size)
            self.used += need.size
        self.bricks[self.slot[block], local] = values[~on]

    def box(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Values of the closed box [lo, hi] (grid coordinates [3]) -> [X, Y, Z] float32, NaN
        where nothing is stored. Whole bricks are gathered, not points one by one."""
        c, k, n1 = self.c, self.k, self.n + 1
        b0, b1 = lo >> k, hi >> k  # brick range per axis
        nb = b1 - b0 + 1
        ix = [np.arange(b0[i], b1[i] + 1) for i in range(3)]
        slots = self.slot[((ix[0][:, None, None] * n1 + ix[1][None, :, None]) * n1 + ix[2][None, None, :])]
        bricks = np.full((*nb, c, c, c), np.nan, np.float32)
        have = slots >= 0
        bricks[have] = self.bricks[slots[have]].reshape(-1, c, c, c)
        full = bricks.transpose(0, 3, 1, 4, 2, 5).reshape(nb[0] * c, nb[1] * c, nb[2] * c)
        off = lo - b0 * c
        out = np.ascontiguousarray(full[off[0]:off[0] + hi[0] - lo[0] + 1, off[1]:off[1] + hi[1] - lo[1] + 1,
                                        off[2]:off[2] + hi[2] - lo[2] + 1])
        lat = []  # lattice coordinates inside the box, per axis
        for a, b in zip(lo, hi):
            pts = np.arange(-(-a // c) * c, b + 1, c)
            if b == self.r - 1 and (len(pts) == 0 or pts[-1] != b):
                pts = np.append(pts, b)
            lat.append(pts)
        li = [(p + c - 1) >> k for p in lat]
        out[np.ix_(*[p - a for p, a in zip(lat, lo)])] = self.lattice.reshape((n1,) * 3)[np.ix_(*li)]
        return out

    def nbytes(self) -> int:
        return self.lattice.nbytes + self.slot.nbytes + self.bricks[: self.used].nbytes
