"""Connected pieces of a mesh, and dropping the small ones (floaters).

A small model's field has specks of density away from the object; marching cubes turns each into
a small closed piece. `drop_small_pieces` keeps the pieces whose surface area is at least
`min_fraction` of the largest piece's. Two faces are in one piece when they share a vertex
(marching cubes output shares vertices along its surface).

`piece_labels` is a vectorised union-find (hook every edge's larger root onto the smaller, then
pointer-jump until every vertex points at its root); `piece_labels_reference` is a plain
breadth-first search, the reference tests/test_mesh_components.py checks it against.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from lrm.mesh.types import Mesh


def piece_labels(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """faces: [F, 3] -> label per vertex [V] int64: the smallest vertex index of its piece."""
    parent = np.arange(n_vertices, dtype=np.int64)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    u = np.concatenate([faces[:, 0], faces[:, 1]])  # two edges per face connect all three corners
    v = np.concatenate([faces[:, 1], faces[:, 2]])
    while True:
        ru, rv = parent[u], parent[v]
        differ = ru != rv
        if not differ.any():
            return parent
        lo, hi = np.minimum(ru[differ], rv[differ]), np.maximum(ru[differ], rv[differ])
        np.minimum.at(parent, hi, lo)  # hook roots onto smaller roots (indices only decrease)
        while True:  # pointer jumping: every vertex to its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def piece_labels_reference(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """The same labels by breadth-first search over the vertex adjacency (slow; for tests)."""
    neighbours: list[set[int]] = [set() for _ in range(n_vertices)]
    for a, b, c in np.asarray(faces, np.int64).reshape(-1, 3):
        neighbours[a].update((b, c))
        neighbours[b].update((a, c))
        neighbours[c].update((a, b))
    labels = np.full(n_vertices, -1, np.int64)
    for start in range(n_vertices):
        if labels[start] >= 0:
            continue
        labels[start] = start
        todo = deque([start])
        while todo:
            for n in neighbours[todo.popleft()]:
                if labels[n] < 0:
                    labels[n] = start
                    todo.append(n)
    return labels


def drop_small_pieces(mesh: Mesh, min_fraction: float) -> Mesh:
    """The mesh without the pieces whose area is below `min_fraction` of the largest piece's
    (0: the mesh as it is). Unused vertices are removed; colours and uv follow their vertices."""
    if min_fraction <= 0 or len(mesh.faces) == 0:
        return mesh
    label = piece_labels(mesh.faces, len(mesh.vertices))[mesh.faces[:, 0]]  # [F] piece of each face
    v = mesh.vertices.astype(np.float64)[mesh.faces]
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    pieces, index = np.unique(label, return_inverse=True)
    piece_area = np.bincount(index, area, minlength=len(pieces))
    keep_face = piece_area[index] >= min_fraction * piece_area.max()
    if keep_face.all():
        return mesh
    faces = mesh.faces[keep_face]
    used = np.unique(faces)
    remap = np.full(len(mesh.vertices), -1, np.int64)
    remap[used] = np.arange(len(used))
    pick = (lambda a: None if a is None else a[used])
    return Mesh(mesh.vertices[used], remap[faces], pick(mesh.colors), pick(mesh.uv), mesh.texture)
