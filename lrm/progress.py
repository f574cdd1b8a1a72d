"""Progress bars for long stages (rendered views and turntable frames, the dense mesh grid).

Shown on stderr when it is a terminal; `LRM_PROGRESS=1` forces them on (e.g. for a log that is
watched with `tail -f`), `LRM_PROGRESS=0` turns them off. Bars are removed when their stage ends,
so the one-line timings per image stay the record of a run."""

from __future__ import annotations

import os
import sys

from tqdm import tqdm


def enabled() -> bool:
    flag = os.environ.get("LRM_PROGRESS", "").strip()
    if flag in ("0", "1"):
        return flag == "1"
    return sys.stderr.isatty()


def bar(total: int, desc: str, unit: str = "it") -> tqdm:
    """A bar over `total` steps of the stage `desc` (none without a `desc`); call .update(n), .close()."""
    return tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr,
                disable=not (desc and enabled()), dynamic_ncols=True)
