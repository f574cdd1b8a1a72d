"""The README's picture of the bundled examples: per row the input photo, then the mesh that
`lrm reconstruct` writes seen from 4 turntable angles (0°, 90°, 180°, 270°; the frames of
`--video`), and, with --field, the volume-rendered field from the same angles.

    python scripts/example_sheet.py [-o docs/images/default-examples.png] [--model default] [--field]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrm.pipeline import Reconstructor  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=str(ROOT / "docs" / "images" / "default-examples.png"))
    ap.add_argument("--model", default="default")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--field", action="store_true", help="add the field's volume renders after the mesh views")
    args = ap.parse_args()
    rec = Reconstructor(args.model, device="cpu", dtype="fp32")
    rows = []
    for path in sorted((ROOT / "examples").glob("*.png")):
        result = rec.reconstruct(str(path), photo_colors=True)
        photo = np.asarray(Image.open(path).convert("RGBA").resize((args.size, args.size), Image.LANCZOS),
                           np.float32) / 255
        tiles = [photo[..., :3] * photo[..., 3:] + (1 - photo[..., 3:])]
        tiles += list(rec.turntable(result.planes, 4, args.size, mesh=result.mesh))
        if args.field:
            tiles += list(rec.turntable(result.planes, 4, args.size))
        rows.append(np.concatenate(tiles, axis=1))
    sheet = (np.concatenate(rows, axis=0).clip(0, 1) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(sheet).save(args.output, optimize=True)
    print(f"{args.output}: {len(rows)} examples", file=sys.stderr)


if __name__ == "__main__":
    main()
