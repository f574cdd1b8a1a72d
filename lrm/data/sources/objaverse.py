"""Objaverse 1.0 objects by uid list or count, through the `objaverse` package (pip install objaverse).

The package keeps a cache in ~/.objaverse/hf-objaverse-v1/ (object-paths.json.gz, metadata/,
glbs/<dir>/<uid>.glb) and downloads what is missing from the Hugging Face hub. Listing needs the
object-path index (one download, then cached); each object's .glb and its metadata shard are
fetched inside the worker that renders it, so `--shard I/N` downloads only that shard's objects.
Offline with an empty cache, listing fails with one line. Objects are glTF: Y up, front +z.
"""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path

from lrm.data.sources.base import Asset
from lrm.errors import LRMError


def _objaverse():
    try:
        import objaverse
    except ImportError as exc:
        raise LRMError("Objaverse sources need the objaverse package: pip install objaverse") from exc
    return objaverse


def _offline(exc: Exception) -> LRMError:
    return LRMError(f"objaverse: cannot download from huggingface.co (offline? pre-populate "
                    f"~/.objaverse): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def select(spec: str, all_uids: list[str]) -> list[str]:
    """'N' -> N uids sampled with seed 0; 'a,b,c' -> those uids; '@file' -> uids listed in the file."""
    if spec.startswith("@"):
        wanted = [u.strip() for u in Path(spec[1:]).read_text().split() if u.strip()]
    elif spec.isdigit():
        return random.Random(0).sample(sorted(all_uids), min(int(spec), len(all_uids)))
    else:
        wanted = [u.strip() for u in spec.split(",") if u.strip()]
    known = set(all_uids)
    missing = [u for u in wanted if u not in known]
    if missing:
        raise LRMError(f"objaverse: unknown uid(s): {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    return wanted


def load(uid: str):
    from lrm.data.sources.folder import load as load_file

    ov = _objaverse()
    try:
        path = ov.load_objects([uid]).get(uid)
        license = ov.load_annotations([uid]).get(uid, {}).get("license", "unknown")
    except OSError as exc:  # urllib's URLError is an OSError
        raise _offline(exc) from exc
    if path is None:
        raise ValueError(f"objaverse has no object {uid}")
    mesh = load_file(path, "y")
    mesh.meta["license"] = license
    return mesh


def assets(spec: str) -> list[Asset]:
    ov = _objaverse()
    try:
        uids = ov.load_uids()
    except OSError as exc:
        raise _offline(exc) from exc
    return [Asset(f"objaverse-{uid}", "objaverse", "unknown", partial(load, uid), {"uid": uid})
            for uid in select(spec, uids)]
