"""Coarse-to-fine surface extraction that reproduces the dense grid's mesh (docs/mesh.md).

The R³ grid is split into fine blocks of `block` cells a side. Every fine block ends up either
*evaluated* (all its grid points queried) or *settled* with a side label (all outside, or all
inside). Marching cubes then runs on the evaluated blocks only; the cells of a settled block
would give no triangle, so the mesh equals the dense one whenever every label is true.

1. Top-down: the lattice of spacing `coarse` is queried; a block whose corners are all
   <= τ/m is settled outside, all > τ·m settled inside, otherwise (optionally dilated) it is
   refined: its children at half the spacing get their corners queried, and so on down to the
   fine blocks, which are queried whole. m tapers from `margin` to `fine_margin`.
2. Closure: every queried point is checked against the settled fine blocks that contain it; a
   block whose label disagrees with a queried point (e.g. a thin plate running out of the
   refined band) is queried whole, and its new points are checked in turn, until no
   disagreement is left.
3. Rough fields: a fixed pseudo-random set of probe points (one grid point in `probe_every`)
   is queried; a probe on the wrong side of its settled block is a piece no lattice point saw.
   Then, or when the refined blocks of a level below the coarsest cover more than `dense_above`
   of the box, or that much of the grid was queried anyway (noise everywhere), the result is
   marked rough and `extract_mesh` computes the dense grid instead (the busy case stops at once).

Guarantee: the mesh is identical to the dense grid's (same vertices, same faces) unless some
connected piece of the inside set {density > τ} (or of the outside set: a cavity) contains no
queried point at all. Anything 26-connected to a queried point on its side is followed to its
end whatever its thickness; every piece holding a lattice point is found, and an isolated one
between lattice points when its density exceeds τ/m at the lattice corners around it, level
by level. The limit: an isolated sliver thinner than the lattice spacing with no density near
the threshold at the surrounding corners (a hard-edged floater) is missed unless a probe lands
in it (each grid point inside it is a probe with probability 1/probe_every): a field with many
such pieces goes dense, a single small one can still be lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from lrm.mesh.blocks import (FACES, block_points, closed_lattice, containing_blocks, flat, n_blocks, pack,
                             shared_points, unique_rows, unpack)
from lrm.mesh.grid import Field, grid_axis, index_to_world, query_density
from lrm.mesh.marching import marching_cubes, merge_parts, snap_to_edges
from lrm.mesh.store import PointStore


@dataclass
class SparseConfig:
    block: int = 2  # side of the fine blocks, in cells (a power of two): evaluated whole or settled
    coarse: int = 8  # spacing of the first lattice, in cells (block times a power of two; halved
    # while it exceeds a quarter of the grid)
    margin: float = 4.0  # coarsest level: settle a block when its corners are all <= τ/m or all > τ·m
    fine_margin: float = 1.25  # the same at the finest level (geometric taper in between)
    dilate: int = 0  # at every level, also refine blocks within this many blocks of a refined one
    mc_chunk: int = 32  # marching cubes runs on chunks of this many cells a side (multiple of block)
    probe_every: int = 256  # one grid point in this many, fixed pseudo-random, is probed (0: none);
    # one on the wrong side of its settled block marks the field rough: extract_mesh goes dense
    dense_above: float = 0.5  # a field whose refined blocks cover this fraction of the box at a
    # level below the coarsest, or that needed this fraction of the grid queried, is rough too:
    # the dense grid then costs about as much and cannot miss a piece


SHIFTS_ALL = np.array(list(np.ndindex(2, 2, 2)))  # [8, 3] corner offsets


@dataclass
class SparseResult:
    verts: np.ndarray  # [V, 3] float64 index space
    faces: np.ndarray  # [F, 3] int64
    evaluated: int  # grid points queried
    sample: np.ndarray  # [M] all densities queried (for messages)
    stats: dict = field(default_factory=dict)  # counts per stage


class _Samples:
    """The field's values at the grid points queried so far (sparse storage)."""

    def __init__(self, fn: Field, resolution: int, radius: float, coarse: int, chunk: int, device) -> None:
        self.fn, self.r, self.chunk, self.device = fn, resolution, chunk, device
        self.axis = grid_axis(resolution, radius)
        self.store = PointStore(resolution, coarse)
        self.queried: list[tuple[np.ndarray, np.ndarray]] = []  # (point keys, values) per call
        self.count = 0
        self.query_s = 0.0  # time spent in the field

    def ensure(self, lin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Query the points lin: [N] (unique point keys) not stored yet -> (those, values)"""
        lin = lin[np.isnan(self.store.get(lin))]
        xyz = index_to_world(np.stack(unpack(lin, self.r), axis=-1), self.axis)
        t0 = time.perf_counter()
        vals = query_density(self.fn, xyz, self.chunk, self.device)
        self.query_s += time.perf_counter() - t0
        self.store.set(lin, vals)
        self.queried.append((lin, vals))
        self.count += lin.size
        return lin, vals

    def get(self, lin: np.ndarray) -> np.ndarray:
        """lin: keys of queried points, any shape -> values, same shape"""
        out = self.store.get(lin.reshape(-1)).reshape(lin.shape)
        assert not np.isnan(out).any()
        return out


def _members(blocks: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros((n,) * 3, bool)
    m[blocks[:, 0], blocks[:, 1], blocks[:, 2]] = True
    return m


def sparse_surface(
    fn: Field, resolution: int, radius: float, threshold: float, cfg: SparseConfig, chunk: int, device=None
) -> SparseResult:
    r, b, tau = resolution, cfg.block, float(threshold)
    assert b & (b - 1) == 0 and cfg.coarse % b == 0 and cfg.coarse & (cfg.coarse - 1) == 0, cfg
    assert cfg.mc_chunk % b == 0, cfg
    coarse = cfg.coarse
    while coarse > b and 4 * coarse > r - 1:  # keep at least ~4 lattice cells per axis
        coarse //= 2
    n_levels = int(round(np.log2(coarse // b)))
    samples = _Samples(fn, r, radius, coarse, chunk, device)
    nb = n_blocks(r, b)
    side = n_blocks(r, coarse) * (coarse // b)  # padded fine-block count per axis
    labels = np.zeros((side,) * 3, np.int8)  # +1 settled inside, -1 settled outside, 0 evaluated
    stats: dict = {"refined_per_level": [], "closure_rounds": 0, "closure_blocks": 0}

    def rough(why: str) -> SparseResult:  # no mesh: extract_mesh computes the dense grid instead
        stats["rough"] = why
        sample = np.concatenate([v for _, v in samples.queried])
        return SparseResult(np.zeros((0, 3)), np.zeros((0, 3), np.int64), samples.count, sample, stats)

    # 1. top-down: settle blocks whose corners are clearly on one side, refine the others
    s, level = coarse, 0
    n = n_blocks(r, s)
    cand = np.stack(np.unravel_index(np.arange(n ** 3), (n,) * 3), axis=-1)
    samples.ensure(block_points(cand, s, s, r, np.ones((n,) * 3, bool)))
    vals = samples.get(closed_lattice(cand, s, s, r)).reshape(-1, 8)  # [K, 8] corner values
    while True:
        m = cfg.margin ** (1 - level / max(n_levels, 1)) * cfg.fine_margin ** (level / max(n_levels, 1))
        lo, hi = (tau / m, tau * m) if tau > 0 else (tau - m, tau + m)
        outside, inside = (vals <= lo).all(axis=1), (vals > hi).all(axis=1)
        refine = cand[~(outside | inside)]
        if cfg.dilate and refine.size:
            d = np.arange(-cfg.dilate, cfg.dilate + 1)
            offs = np.stack(np.meshgrid(d, d, d, indexing="ij"), axis=-1).reshape(-1, 3)
            grown = (refine[:, None] + offs[None]).reshape(-1, 3)
            refine = unique_rows(grown[((grown >= 0) & (grown < n)).all(axis=1)], n)
        settled = outside | inside
        f = s // b
        view = labels.reshape(side // f, f, side // f, f, side // f, f)
        sb = cand[settled]
        view[sb[:, 0], :, sb[:, 1], :, sb[:, 2], :] = np.where(inside[settled], 1, -1).astype(np.int8)[
            :, None, None, None]
        stats["refined_per_level"].append(len(refine))
        # most of the box still refined below the coarsest level (which refines crudely): noise everywhere
        if level > 0 and len(refine) * s ** 3 >= cfg.dense_above * (r - 1) ** 3:
            stats["probes"] = 0
            return rough("busy")
        if s == b or refine.size == 0:
            break
        # the next lattice inside the refined blocks = the corners of their children
        samples.ensure(block_points(refine, s, s // 2, r, _members(refine, n)))
        grid = samples.get(closed_lattice(refine, s, s // 2, r))  # [K, 3, 3, 3]
        s, level, n = s // 2, level + 1, n_blocks(r, s // 2)
        kids = np.concatenate([refine * 2 + shift for shift in SHIFTS_ALL])  # [8K, 3]
        vals = np.concatenate([grid[:, i:i + 2, j:j + 2, k:k + 2].reshape(-1, 8) for i, j, k in SHIFTS_ALL])
        ok = (kids < n).all(axis=1)
        cand, vals = kids[ok], vals[ok]
    lattice = np.concatenate([lin for lin, _ in samples.queried])  # all on a lattice so far
    lattice_vals = np.concatenate([v for _, v in samples.queried])

    # 2. query the refined fine blocks whole; then close: a settled block that disagrees
    # with a queried point it contains is queried whole too, until none is left
    def evaluate(blocks: np.ndarray) -> np.ndarray:
        labels[blocks[:, 0], blocks[:, 1], blocks[:, 2]] = 0
        samples.ensure(block_points(blocks, b, 1, r, labels[:nb, :nb, :nb] == 0))
        return disagreeing_neighbours(blocks)

    def disagrees(lab: np.ndarray, vals: np.ndarray) -> np.ndarray:  # ties count as disagreement
        return ((lab < 0) & (vals >= tau)) | ((lab > 0) & (vals <= tau))

    def disagreeing_neighbours(blocks: np.ndarray) -> np.ndarray:
        # Faces suffice: two settled blocks that share a point also share a corner of the
        # finer one, a lattice point checked above, so they carry the same label; a point on
        # an edge or corner of `blocks` is thus checked through a face of `blocks` or of an
        # evaluated face neighbour (which ran this check itself).
        found = []
        for d in FACES:
            nbr = blocks + d
            ok = ((nbr >= 0) & (nbr < nb)).all(axis=1)
            ok[ok] = labels[nbr[ok, 0], nbr[ok, 1], nbr[ok, 2]] != 0
            lin, valid = shared_points(blocks[ok], d, b, r)
            lab = labels[nbr[ok, 0], nbr[ok, 1], nbr[ok, 2]][:, None]
            bad = (disagrees(lab, samples.store.get(lin.reshape(-1)).reshape(lin.shape)) & valid).any(axis=1)
            found.append(nbr[ok][bad])
        return unique_rows(np.concatenate(found), nb)

    todo = [evaluate(refine)] if s == b and refine.size else []
    flat_labels = labels.reshape(-1)
    for blk, valid in containing_blocks(lattice, r, b, side):
        bad = valid & disagrees(flat_labels[np.where(valid, blk, 0)], lattice_vals)
        todo.append(np.stack(np.unravel_index(blk[bad], (side,) * 3), axis=-1))
    todo = unique_rows(np.concatenate(todo), nb) if todo else np.zeros((0, 3), np.int64)
    todo = todo[labels[todo[:, 0], todo[:, 1], todo[:, 2]] != 0]
    while todo.size:
        stats["closure_rounds"] += 1
        stats["closure_blocks"] += len(todo)
        todo = evaluate(todo)

    # 3. probes: a fixed pseudo-random set of grid points (one in cfg.probe_every) is queried.
    # One inside a settled block on the wrong side of its label belongs to a piece of the
    # surface no lattice point saw (a rough field: noise, floaters): the result is marked
    # `rough` and extract_mesh falls back to the dense grid rather than drop surface.
    stats["probes"], stats["rough"] = 0, ""
    if samples.count >= cfg.dense_above * r ** 3:
        return rough("busy")
    if cfg.probe_every:
        coords = np.random.default_rng(0).integers(0, r, size=(max(1, r ** 3 // cfg.probe_every), 3))
        probe_lin, probe_vals = samples.ensure(np.unique(pack(coords[:, 0], coords[:, 1], coords[:, 2], r)))
        stats["probes"] = int(probe_lin.size)
        for blk, valid in containing_blocks(probe_lin, r, b, side):
            if (valid & disagrees(flat_labels[np.where(valid, blk, 0)], probe_vals)).any():
                return rough("probe")

    # 4. marching cubes over the chunks that hold evaluated blocks
    t0 = time.perf_counter()
    verts, faces = _march_chunks(samples, labels[:nb, :nb, :nb], r, b, tau, cfg.mc_chunk, stats)
    stats["marching_s"] = time.perf_counter() - t0
    stats["evaluated_fine_blocks"] = int((labels[:nb, :nb, :nb] == 0).sum())
    stats["store_mb"] = samples.store.nbytes() / 2 ** 20
    stats["query_s"] = samples.query_s
    sample = np.concatenate([v for _, v in samples.queried])
    return SparseResult(verts, faces, samples.count, sample, stats)


def _march_chunks(samples: _Samples, labels: np.ndarray, r: int, b: int, tau: float, m: int, stats: dict):
    """Marching cubes per chunk (m cells a side) over the bounding box of the chunk's evaluated
    fine blocks; cells outside them are in settled blocks and give no triangle. Points not
    queried lie only in settled blocks: they get a value on their block's side."""
    blocks = np.argwhere(labels == 0)  # [E, 3] evaluated fine blocks
    if len(blocks) == 0:
        stats["mc_chunks"] = stats["mc_cells"] = 0
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    per = m // b
    key = flat(*(blocks // per).T, labels.shape[0])
    order = np.argsort(key, kind="stable")
    blocks, key = blocks[order], key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    lows = np.minimum.reduceat(blocks, starts, axis=0) * b
    highs = np.minimum((np.maximum.reduceat(blocks, starts, axis=0) + 1) * b, r - 1)
    fill_in, fill_out = np.float32(tau + abs(tau) + 1.0), np.float32(tau - abs(tau) - 1.0)
    parts, marched = [], 0
    for lo, hi in zip(lows, highs):
        sub = samples.store.box(lo, hi)
        miss = np.isnan(sub)
        if miss.any():
            ax = [np.minimum(np.arange(a, c + 1) // b, labels.shape[0] - 1) for a, c in zip(lo, hi)]
            lab = labels[np.ix_(*ax)]
            sub[miss] = np.where(lab[miss] > 0, fill_in, fill_out)
        if sub.max() < tau or sub.min() > tau:
            continue
        marched += 1
        v, f = marching_cubes(sub, tau)
        if len(f):
            parts.append((v + lo, f))
    stats["mc_chunks"] = marched
    stats["mc_cells"] = int(np.prod(highs - lows, axis=1).sum())

    def values_at(idx: np.ndarray) -> np.ndarray:
        return samples.get(pack(idx[:, 0], idx[:, 1], idx[:, 2], r))

    return merge_parts(parts, m, lambda v: snap_to_edges(v, values_at, tau))
