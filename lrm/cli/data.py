"""`lrm data ...`: build multi-view training sets from 3D assets (docs/data.md).

  lrm data fetch 0ad kicad redeclipse-nieb        # Debian asset packages into ~/.cache/lrm
  lrm data render 0ad kicad -o DATASET            # render (resumable; --shard I/N, --workers K)
  lrm data samples DATASET 0ad kicad              # add 3D point samples to a rendered dataset
  lrm data capture CAPTURES -o DATASET            # real videos + COLMAP poses (MVImgNet-style)
  lrm data pack DATASET -o SHARDS                 # tar shards for streaming
  lrm data info DATASET                           # counts per split and source, failures
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from lrm.errors import LRMError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build multi-view training datasets from 3D assets",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    cmds.required = True

    f = cmds.add_parser("fetch", help="download + unpack Debian asset packages (no system install)")
    f.add_argument("names", nargs="+", metavar="NAME", help="0ad, kicad, redeclipse-nieb or assimp-testmodels")
    f.set_defaults(run=run_fetch)

    r = cmds.add_parser("render", help="render sources into a dataset",
                        description="SOURCE: a folder of meshes, objaverse:N|UID,UID|@FILE, or a fetched "
                                    "Debian source (0ad, kicad, redeclipse-nieb).")
    r.add_argument("sources", nargs="+", metavar="SOURCE", help="what to render (see above)")
    r.add_argument("-o", "--output", required=True, metavar="DATASET", help="dataset folder (created or resumed)")
    r.add_argument("--views", type=int, default=32, help="random views per object, view 0 = front (default: 32)")
    r.add_argument("--ring", type=int, default=16, help="fixed evaluation views per object (default: 16)")
    r.add_argument("--resolution", type=int, default=512, help="image side in pixels (default: 512)")
    r.add_argument("--workers", type=int, default=1, help="render processes (default: 1)")
    r.add_argument("--shard", default="0/1", metavar="I/N", help="render only shard I of N (default: 0/1)")
    r.add_argument("--limit", type=int, default=None, metavar="N",
                   help="at most N objects per source, a fixed random sample (default: all)")
    r.add_argument("--fit", choices=["sphere", "box"], default="sphere",
                   help="normalisation: sphere = object in the unit ball (never clipped), box = "
                        "OpenLRM's longest side 2 (default: sphere)")
    r.add_argument("--up", choices=["y", "z"], default="y", help="up axis of folder meshes (default: y)")
    r.add_argument("--license", default="unknown", help="licence recorded for folder meshes (default: unknown)")
    r.add_argument("--min-faces", type=int, default=50, help="0ad: skip smaller actors (default: 50)")
    r.add_argument("--save-mesh", choices=["test", "all", "none"], default="test",
                   help="write the normalised mesh.ply for these objects (default: test)")
    r.add_argument("--val-fraction", type=float, default=0.02,
                   help="share of non-holdout objects in the val split (default: 0.02)")
    r.add_argument("--no-samples", action="store_true",
                   help="do not store 3D point samples (samples.npz) per object (default: store them)")
    r.add_argument("--retry-failed", action="store_true", help="retry objects logged as failed (default: skip)")
    r.add_argument("--quiet", action="store_true", help="no progress bar (default: show)")
    r.set_defaults(run=run_render)

    s = cmds.add_parser("samples", help="add 3D point samples to an existing dataset (no re-rendering)",
                        description="Computes samples.npz (surface points with colour and normal, "
                                    "inside/outside points) for every object of DATASET from the SOURCEs "
                                    "it was rendered from. Resumable: objects with samples are skipped.")
    s.add_argument("dataset", metavar="DATASET")
    s.add_argument("sources", nargs="+", metavar="SOURCE", help="the sources given to `lrm data render`")
    s.add_argument("--workers", type=int, default=1, help="processes (default: 1)")
    s.add_argument("--up", choices=["y", "z"], default="y", help="up axis of folder meshes (default: y)")
    s.add_argument("--min-faces", type=int, default=50, help="0ad: as given to render (default: 50)")
    s.add_argument("--quiet", action="store_true", help="no progress bar (default: show)")
    s.set_defaults(run=run_samples)

    c = cmds.add_parser("capture", help="import real captures: frames + COLMAP poses (MVImgNet-style)",
                        description="CAPTURE: a folder with images/, sparse/0/ (COLMAP text or binary) "
                                    "and optional masks/, or a folder of such folders.")
    c.add_argument("captures", nargs="+", metavar="CAPTURE", help="capture folders or parents of them")
    c.add_argument("-o", "--output", required=True, metavar="DATASET", help="dataset folder (created or resumed)")
    c.add_argument("--views", type=int, default=32, help="frames per object, evenly spaced, frame 0 = input (default: 32)")
    c.add_argument("--resolution", type=int, default=256, help="image side in pixels (default: 256)")
    c.add_argument("--distance", type=float, default=2.0, help="input camera distance after normalisation (default: 2.0)")
    c.add_argument("--license", default="unknown", help="licence recorded for the captures (default: unknown)")
    c.add_argument("--val-fraction", type=float, default=0.02, help="share of objects in val (default: 0.02)")
    c.set_defaults(run=run_capture)

    k = cmds.add_parser("pack", help="pack a dataset into tar shards for streaming")
    k.add_argument("dataset", metavar="DATASET")
    k.add_argument("-o", "--output", required=True, metavar="SHARDS", help="folder for the .tar shards")
    k.add_argument("--objects-per-shard", type=int, default=256, help="objects per tar file (default: 256)")
    k.add_argument("--split", choices=["train", "val", "test"], default=None, help="only this split (default: all)")
    k.add_argument("--no-ring", action="store_true", help="leave out the ring views (default: include)")
    k.add_argument("--overwrite", action="store_true", help="replace the shards already in SHARDS (default: refuse)")
    k.set_defaults(run=run_pack)

    m = cmds.add_parser("slim", help="a small copy of a dataset for a remote trainer (input views + point subsets)",
                        description="Copies DATASET to OUTPUT keeping what configs/tiny-lift.toml trains on: "
                                    "the first --views views of each object (--val-views for val), no ring "
                                    "views or meshes, and a fixed random subset of each object's point samples. "
                                    "Resumable: objects already in OUTPUT are kept.")
    m.add_argument("dataset", metavar="DATASET")
    m.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="folder for the slim copy")
    m.add_argument("--views", type=int, default=1, help="views per object, view 0 first (default: 1)")
    m.add_argument("--val-views", type=int, default=4, help="views per val object (default: 4)")
    m.add_argument("--occupancy-points", type=int, default=4096, help="inside/outside points per object, 0 = all (default: 4096)")
    m.add_argument("--surface-points", type=int, default=2048, help="surface points per object, 0 = all (default: 2048)")
    m.add_argument("--splits", default="train,val", help="comma-separated splits to copy (default: train,val)")
    m.add_argument("--quiet", action="store_true", help="no progress bar (default: show)")
    m.set_defaults(run=run_slim)

    i = cmds.add_parser("info", help="summarise a dataset")
    i.add_argument("dataset", metavar="DATASET")
    i.set_defaults(run=run_info)


def run_fetch(args: argparse.Namespace) -> int:
    from lrm.data import debian

    for name in args.names:
        debian.fetch(name, log=lambda msg: print(msg, file=sys.stderr))
    return 0


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise LRMError(f"--shard must look like I/N (e.g. 0/4), not {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise LRMError(f"--shard {text}: need 0 <= I < N")
    return i, n


def run_render(args: argparse.Namespace) -> int:
    from lrm.data.build import BuildConfig, build
    from lrm.data.sources import SourceOptions, resolve
    from lrm.data.views import ViewConfig

    if args.resolution < 8 or args.views < 1 or args.ring < 0 or args.workers < 1:
        raise LRMError("need --resolution >= 8, --views >= 1, --ring >= 0, --workers >= 1")
    shard = _shard(args.shard)
    opts = SourceOptions(limit=args.limit, up=args.up, license=args.license, min_faces=args.min_faces)
    assets = [a for spec in args.sources for a in resolve(spec, opts)]
    cfg = BuildConfig(resolution=args.resolution, views=ViewConfig(views=args.views, ring=args.ring),
                      fit=args.fit, save_mesh=args.save_mesh, val_fraction=args.val_fraction)
    if args.no_samples:
        cfg.samples = None
    stats = build(assets, args.output, cfg, workers=args.workers, shard=shard,
                  retry_failed=args.retry_failed, progress=not args.quiet)
    print(f"{args.output}: {stats['ok']} rendered, {stats['skipped']} skipped, {stats['failed']} failed "
          f"(of {stats['todo']} to do in shard {shard[0]}/{shard[1]}) in {stats['seconds']} s, "
          f"{stats['objects_per_s']} objects/s", file=sys.stderr)
    return 0


def run_samples(args: argparse.Namespace) -> int:
    from lrm.data.build import add_samples
    from lrm.data.samples import SampleConfig
    from lrm.data.sources import SourceOptions, resolve

    if args.workers < 1:
        raise LRMError("need --workers >= 1")
    opts = SourceOptions(up=args.up, min_faces=args.min_faces)
    assets = [a for spec in args.sources for a in resolve(spec, opts)]
    stats = add_samples(assets, args.dataset, SampleConfig(), workers=args.workers, progress=not args.quiet)
    print(f"{args.dataset}: samples added to {stats['ok']} objects, {stats['failed']} failed "
          f"(logs/samples.jsonl), {stats['missing_source']} objects not in the given sources, "
          f"in {stats['seconds']} s", file=sys.stderr)
    return 0 if stats["failed"] == 0 and stats["missing_source"] == 0 else 2


def run_capture(args: argparse.Namespace) -> int:
    from lrm.data import format as fmt
    from lrm.data.build import BAD_ASSET_ERRORS, split_of
    from lrm.data.capture import load_capture
    from lrm.data.sources import Asset, make_id

    folders = []
    for c in map(Path, args.captures):
        if (c / "sparse").is_dir():
            folders.append(c)
        elif c.is_dir():
            folders += sorted(p for p in c.iterdir() if (p / "sparse").is_dir())
        if not c.is_dir():
            raise LRMError(f"{c}: not a folder")
    if not folders:
        raise LRMError("no capture folders (with images/ and sparse/) found")
    info = {"resolution": args.resolution, "views": args.views, "ring": 0, "source": "capture",
            "distance": args.distance, "world": "z-up, OpenGL c2w, input view canonical"}
    if Path(args.output, "dataset.json").is_file():
        if fmt.read_dataset_info(args.output).get("resolution") != args.resolution:
            raise LRMError(f"{args.output} has another resolution; use a new folder")
    else:
        fmt.write_dataset_info(args.output, info)
    ok = failed = 0
    for folder in folders:
        object_id = make_id("capture", folder.name)
        if fmt.is_complete(args.output, object_id):
            continue
        try:
            obj = load_capture(folder, args.resolution, args.views, args.distance, object_id)
        except (LRMError, *BAD_ASSET_ERRORS) as exc:  # one bad capture never stops the import; a bug does
            print(f"lrm: skipped {folder}: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
            continue
        split = split_of(Asset(object_id, "capture", args.license, None), args.val_fraction)
        obj.meta.update(license=args.license, split=split, faces=0)
        fmt.write_object(args.output, obj, png_level=1)
        ok += 1
    fmt.index_dataset(args.output)
    print(f"{args.output}: {ok} captures imported, {failed} skipped", file=sys.stderr)
    return 0


def run_slim(args: argparse.Namespace) -> int:
    from lrm import progress
    from lrm.data.slim import SlimConfig, slim

    cfg = SlimConfig(views=args.views, val_views=args.val_views, occupancy_points=args.occupancy_points,
                     surface_points=args.surface_points, splits=tuple(filter(None, args.splits.split(","))))
    bars = []

    def step(done: int, total: int) -> None:
        if not bars:
            bars.append(progress.bar(total, "" if args.quiet else "slim", unit="object"))
        bars[0].update(1)

    try:
        ids = slim(args.dataset, args.output, cfg, progress=step)
    finally:
        for b in bars:
            b.close()
    print(f"{args.output}: {len(ids)} objects", file=sys.stderr)
    return 0


def run_pack(args: argparse.Namespace) -> int:
    from lrm.data.shards import pack

    if args.objects_per_shard < 1:
        raise LRMError("--objects-per-shard must be >= 1")
    shards = pack(args.dataset, args.output, args.objects_per_shard, split=args.split, ring=not args.no_ring,
                  overwrite=args.overwrite)
    print(f"{args.output}: {len(shards)} shards", file=sys.stderr)
    return 0


def run_info(args: argparse.Namespace) -> int:
    from lrm.data.format import index_dataset, read_dataset_info

    info = read_dataset_info(args.dataset)
    metas = index_dataset(args.dataset)
    print(json.dumps(info))
    print(f"{len(metas)} objects; splits {dict(Counter(m.get('split') for m in metas))}; "
          f"sources {dict(Counter(m.get('source') for m in metas))}")
    fails = Counter()
    for log in Path(args.dataset, "logs").glob("*.jsonl"):
        fails.update(json.loads(line)["status"] for line in log.read_text().splitlines() if line.strip())
    print(f"logged: {dict(fails) or 'nothing'}")
    return 0
