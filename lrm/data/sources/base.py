"""What every source reader returns: `Asset`s, each a lazily loadable object with its metadata.

`Asset.load()` returns a `AssetMesh` already in our axes (Z up, front towards -y) but not yet
normalised; it runs in a worker process, so it must be picklable (a module-level function
wrapped in functools.partial). A reader raises `SkipAsset(reason)` for an object that loads but
should not be rendered (too few faces, no mesh); any other exception is a load failure.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from lrm.data.mesh import AssetMesh


class SkipAsset(Exception):
    """The object is valid but filtered out; the message says why."""


@dataclass(frozen=True)
class Asset:
    id: str  # unique, filesystem- and WebDataset-safe: [A-Za-z0-9_-] only (no dots)
    source: str  # "0ad", "kicad", "redeclipse-nieb", "folder", "objaverse", ...
    license: str  # licence of the asset (SPDX-like)
    load: Callable[[], AssetMesh]  # -> the mesh in our axes (Z up), not normalised
    info: dict[str, Any] = field(default_factory=dict)  # extra fields copied into meta.json
    split: str | None = None  # forced split ("test" for the holdout); None: hashed from the id


def make_id(source: str, name: str) -> str:
    """`<source>-<name>` with path separators as '-', other unsafe characters as '_'; a short
    hash of `name` is appended whenever characters had to be replaced, so ids stay unique."""
    slug = re.sub(r"[\\/]+", "-", name.strip("/"))
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", slug)
    if safe != slug:
        safe += "-" + hashlib.sha1(name.encode()).hexdigest()[:6]
    return f"{source}-{safe}"
