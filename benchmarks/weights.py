"""Published-weights loading: exactness against the slow reference and load times.

    python benchmarks/weights.py              # reduced sizes: max |ours - reference| per quantity
    python benchmarks/weights.py --full       # + full-size OpenLRM-base / TripoSR forward (minutes)
    python benchmarks/weights.py --load-times # full-size load: upstream files vs `lrm convert` output

Random weights in the exact upstream layouts (tests/reference/upstream_keys.py); fp32, CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lrm import cameras  # noqa: E402
from lrm.hub import load_model  # noqa: E402
from tests.reference import openlrm as ref_o  # noqa: E402
from tests.reference import triposr as ref_t  # noqa: E402
from tests.reference.upstream_keys import OPENLRM_SIZES, openlrm_keys, random_state, triposr_keys  # noqa: E402


def diff(a: torch.Tensor, b: torch.Tensor) -> str:
    return f"{(a.float() - b.float()).abs().max().item():.2e}"


def reduced_rows() -> list[tuple[str, str, str]]:
    from tests import test_weights_openlrm as to
    from tests import test_weights_triposr as tt

    rows = []
    for packed in (True, False):
        cfg = to.reduced_cfg(packed)
        sd = random_state(to.reduced_table(cfg), seed=1)
        model = to.load(cfg, sd)
        img = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        cam = model.source_camera(1)
        xyz = torch.rand(1, 2000, 3, generator=torch.Generator().manual_seed(2)) * 2 - 1
        c2w, intr, cams25 = to._views()
        res, s_c, s_f = 12, cfg.render.samples, cfg.render.importance
        with torch.no_grad():
            planes = model(img, cam)
            rp = ref_o.forward_planes(sd, img, cam, 2, 2)
            s, c = model.query(planes, xyz)
            rs, rc = ref_o.query(sd, rp[0], xyz[0])
            out = model.render(planes, c2w, intr, res)
            jit = torch.full((2, res * res, s_c, 1), 0.5)
            u = ((torch.arange(s_f) + 0.5) / s_f).expand(2 * res * res, s_f).contiguous()
            rr, _, ro = ref_o.render(sd, planes, cams25, res, torch.ones(1, 2), jit, u)
            g = torch.Generator().manual_seed(7)
            out_s = model.render(planes, c2w, intr, res, generator=torch.Generator().manual_seed(7))
            rr_s, _, _ = ref_o.render(sd, planes, cams25, res, torch.ones(1, 2), torch.rand(2, res * res, s_c, 1,
                                      generator=g), torch.rand(2 * res * res, s_f, generator=g))
        name = "openlrm reduced, " + ("packed q/k/v" if packed else "separate q/k/v")
        rows += [(name, "triplanes", diff(planes, rp)), (name, "density / colour", f"{diff(s[0], rs)} / {diff(c[0], rc)}"),
                 (name, "render rgb / opacity (deterministic)", f"{diff(out['rgb'], rr)} / {diff(out['opacity'], ro)}"),
                 (name, "render rgb (seeded, upstream draw order)", diff(out_s["rgb"], rr_s))]
    for names in ("4.x", "5.x"):
        cfg = tt.reduced_cfg()
        sd = random_state(tt.reduced_table(names), seed=11)
        model = tt.load(cfg, sd)
        img = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(12))
        xyz = torch.rand(1, 2000, 3, generator=torch.Generator().manual_seed(13)) * 1.74 - 0.87
        c2w = cameras.orbit_cameras(1, 3.0, 15.0, 30.0)
        with torch.no_grad():
            codes = model(img)
            rcodes = ref_t.forward(sd, img, 2, 2, names)
            s, c = model.query(codes, xyz)
            rs, rc = ref_t.query(sd, rcodes[0], xyz[0])
            out = model.render(codes, c2w[None], cameras.intrinsics(cameras.fov_to_focal(40.0))[None], 16)
            o, d = ref_t.camera_rays(c2w[0], 40.0, 16, 16)
            rr = ref_t.render(sd, rcodes[0], o, d).T.reshape(3, 16, 16)
        name = f"triposr reduced, transformers {names} names"
        rows += [(name, "scene codes", diff(codes, rcodes)), (name, "density / colour", f"{diff(s[0], rs)} / {diff(c[0], rc)}"),
                 (name, "render rgb", diff(out["rgb"][0, 0], rr))]
    return rows


def full_rows() -> list[tuple[str, str, str]]:
    from tests.test_weights_full import _load
    from lrm.convert.openlrm import config_from_openlrm, convert_openlrm_state
    from lrm.convert.triposr import config_from_triposr, convert_triposr_state, parse_yaml
    from tests.test_weights_openlrm import SIZES_JSON
    from tests.test_weights_triposr import YAML

    rows = []
    sd = random_state(openlrm_keys(**OPENLRM_SIZES["base"]), seed=33)
    model = _load(config_from_openlrm(SIZES_JSON["base"]), sd, convert_openlrm_state)
    img = torch.rand(1, 3, 336, 336, generator=torch.Generator().manual_seed(34))
    cam = model.source_camera(1)
    with torch.no_grad():
        t0 = time.perf_counter()
        planes = model(img, cam)
        t1 = time.perf_counter()
        rp = ref_o.forward_planes(sd, img, cam, 12, 12)
        t2 = time.perf_counter()
    rows.append(("openlrm-base full size", f"triplanes (ours {t1 - t0:.1f}s, reference {t2 - t1:.1f}s)", diff(planes, rp)))
    del model, sd
    sd = random_state(triposr_keys(), seed=36)
    model = _load(config_from_triposr(parse_yaml(YAML)), sd, convert_triposr_state)
    img = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(37))
    with torch.no_grad():
        t0 = time.perf_counter()
        codes = model(img)
        t1 = time.perf_counter()
        rc = ref_t.forward(sd, img, 12, 16)
        t2 = time.perf_counter()
    rows.append(("triposr full size", f"scene codes (ours {t1 - t0:.1f}s, reference {t2 - t1:.1f}s)", diff(codes, rc)))
    return rows


def load_time_rows() -> list[tuple[str, str, str]]:
    import json

    from safetensors.torch import save_file

    from lrm.cli.convert import run as convert_run
    from tests.test_weights_openlrm import SIZES_JSON

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        up = Path(tmp) / "openlrm-base"
        up.mkdir()
        (up / "config.json").write_text(json.dumps(SIZES_JSON["base"]))
        sd = random_state(openlrm_keys(**OPENLRM_SIZES["base"]), seed=1)
        save_file(sd, str(up / "model.safetensors"))
        del sd
        for label, path in (("upstream model.safetensors (converted in memory)", up),):
            t0 = time.perf_counter()
            load_model(str(path))
            rows.append(("openlrm-base load", label, f"{time.perf_counter() - t0:.2f}s"))
        ns = argparse.Namespace(src=str(up), dst=str(Path(tmp) / "ours"), dtype="float32", force=False)
        t0 = time.perf_counter()
        convert_run(ns)
        rows.append(("openlrm-base", "lrm convert (once)", f"{time.perf_counter() - t0:.2f}s"))
        t0 = time.perf_counter()
        load_model(str(Path(tmp) / "ours"))
        rows.append(("openlrm-base load", "lrm format (after lrm convert)", f"{time.perf_counter() - t0:.2f}s"))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="also the full-size forward passes (default: off)")
    p.add_argument("--load-times", action="store_true", help="also full-size load timings (default: off)")
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    rows = reduced_rows()
    if args.full:
        rows += full_rows()
    if args.load_times:
        rows += load_time_rows()
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    print(f"{'model':<{w0}}  {'quantity':<{w1}}  max |ours - reference| or time")
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:<{w1}}  {c}")


if __name__ == "__main__":
    main()
