"""A fuzz suite of bad inputs across every sub-command (issue 13): each must end with one line
`lrm: error: ...` on stderr and exit code 2, no traceback, nothing written outside the output
folder (the sandbox holding the inputs is unchanged), and no earlier output lost (a file placed
in the output folder beforehand is still there).

The cases are generated: malformed images (random bytes, truncated PNGs, text, empty and
transparent files), every numeric option at values outside its range or of the wrong type,
broken model folders (config.json variants, missing or truncated weights, NaN weights), broken
training configs, missing or malformed datasets, and a YAML alias bomb."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from lrm.cli.main import main

Args = Callable[["Sandbox"], list[str]]


@dataclass
class Sandbox:
    root: Path  # inputs; must not change
    out: Path  # this case's output folder (outside root)

    @property
    def image(self) -> str:
        return str(self.root / "good.png")

    @property
    def model(self) -> str:
        return str(self.root / "model")

    @property
    def data(self) -> str:
        return str(self.root / "toy")

    def bad(self, name: str) -> str:
        return str(self.root / "bad" / name)


def _png_bytes(size: int = 32) -> bytes:
    image = np.zeros((size, size, 4), np.uint8)
    image[8:24, 10:22] = [200, 60, 40, 255]
    buf = io.BytesIO()
    Image.fromarray(image, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def sandbox_root(tmp_path_factory) -> Path:
    """Inputs shared by every case: a good image and model, a tiny dataset, and bad files."""
    import torch
    from eval_toy import make_toy_dataset

    from lrm.model.lrm import LRM
    from lrm.model.presets import tiny

    torch.manual_seed(0)
    tiny_model = LRM(tiny()).eval()

    root = tmp_path_factory.mktemp("fuzz") / "inputs"
    (root / "bad").mkdir(parents=True)
    (root / "good.png").write_bytes(_png_bytes())
    tiny_model.save_pretrained(root / "model")
    make_toy_dataset(root / "toy", size=32, ring=2)
    bad = root / "bad"
    png = _png_bytes()
    rng = np.random.default_rng(0)
    for i in range(6):
        (bad / f"random{i}.png").write_bytes(rng.integers(0, 256, 64 * (i + 1), dtype=np.uint8).tobytes())
        (bad / f"random{i}.jpg").write_bytes(rng.integers(0, 256, 97 * (i + 1), dtype=np.uint8).tobytes())
    for cut in (8, 16, 33, 60, len(png) // 2, len(png) - 12):
        (bad / f"truncated{cut}.png").write_bytes(png[:cut])
    (bad / "empty.png").write_bytes(b"")
    (bad / "text.png").write_text("this is not an image\n")
    (bad / "html.jpg").write_text("<html><body>404</body></html>")
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(bad / "clear.png")
    (bad / "empty_dir").mkdir()
    (bad / "not_a_model").mkdir()
    (bad / "file").write_text("a file where a folder is expected")
    # broken model folders: the good one's weights with a bad config.json, or bad weights
    cfg = json.loads((root / "model" / "config.json").read_text())
    variants = {
        "config_not_json": "{ not json",
        "config_list": "[1, 2, 3]",
        "config_wrong_type": json.dumps({**cfg, "camera_dim": "wide"}),
        "config_negative": json.dumps({**cfg, "transformer": {**cfg["transformer"], "num_layers": -1}}),
        "config_zero_width": json.dumps({**cfg, "transformer": {**cfg["transformer"], "dim": 0}}),
        "config_unknown_key": json.dumps({**cfg, "flux_capacitor": 1}),
        "config_bad_activation": json.dumps({**cfg, "field": {**cfg["field"], "density": "relu6"}}),
        "config_nan_threshold": json.dumps({**cfg, "inference": {**cfg["inference"], "mesh_threshold": float("nan")}}),
        "config_bad_ratio": json.dumps({**cfg, "inference": {**cfg["inference"], "foreground_ratio": 3.0}}),
    }
    for name, text in variants.items():
        shutil.copytree(root / "model", bad / name)
        (bad / name / "config.json").write_text(text)
    weights = (root / "model" / "model.safetensors").read_bytes()
    for name, data in {"weights_truncated": weights[: len(weights) // 2], "weights_garbage": b"\x00" * 100,
                       "weights_empty": b""}.items():
        shutil.copytree(root / "model", bad / name)
        (bad / name / "model.safetensors").write_bytes(data)
    shutil.copytree(root / "model", bad / "weights_missing")
    (bad / "weights_missing" / "model.safetensors").unlink()
    shutil.copytree(root / "model", bad / "weights_nan")
    from safetensors.torch import load_file, save_file

    state = load_file(str(root / "model" / "model.safetensors"))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key][..., 0] = float("nan")
    save_file(state, str(bad / "weights_nan" / "model.safetensors"))
    # a TripoSR-style folder whose config.yaml is an alias bomb (800 bytes, 9 nesting levels)
    (bad / "yaml_bomb").mkdir()
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}]" for i in range(1, 9)]
    (bad / "yaml_bomb" / "config.yaml").write_text("\n".join(lines) + "\nsystem: *a8\n")
    (bad / "yaml_bomb" / "model.ckpt").write_bytes(b"\x00" * 64)
    # a corrupt mesh and a dataset with a broken object
    (bad / "mesh.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 99\nend_header\n\x01")
    shutil.copytree(root / "toy", bad / "toy_broken")
    for png_file in (bad / "toy_broken" / "objects" / "box").glob("rgba_*.png"):
        png_file.write_bytes(b"broken")
    (bad / "toy_no_meta").mkdir()
    (bad / "toy_no_meta" / "dataset.json").write_text("{ broken")
    return root


# --- the cases -------------------------------------------------------------------------------
CASES: list[tuple[str, Args, str]] = []  # (id, command line, a fragment the error must name: "" = any)


def case(name: str, args: Args, names: str = "") -> None:
    CASES.append((name, args, names))


# reconstruct: unreadable images
BAD_IMAGES = ([f"random{i}.{ext}" for i in range(6) for ext in ("png", "jpg")]
              + [f"truncated{c}.png" for c in (8, 16, 33, 60)] + ["empty.png", "text.png", "html.jpg", "clear.png",
                                                                   "missing.png", "empty_dir"])
for name in BAD_IMAGES:
    case(f"reconstruct-image-{name}",
         lambda s, n=name: ["reconstruct", s.bad(n), "-o", str(s.out), "--model", s.model, "--no-remove-bg"])
# reconstruct: every numeric option out of range, and of the wrong type
RANGES = {
    "--mesh-resolution": ["-1", "0", "4", "7", "4096", "abc", "1.5"],
    "--target-faces": ["-1", "50", "99", "x"],
    "--foreground-ratio": ["-0.5", "0", "1.01", "2", "nan", "inf", "one"],
    "--video-size": ["0", "4", "100000"],
    "--video-frames": ["0", "-3"],
    "--source-size": ["0", "-1", "5000"],
    "--render-size": ["0", "7"],
    "--threads": ["0", "-2"],
    "--workers": ["0", "-1"],
    "--background": ["-0.1", "1.5", "nan"],
    "--source-distance": ["0", "-1", "nan"],
    "--texture-resolution": ["0", "63"],
    "--splat-resolution": ["0", "7", "5000"],
    "--min-piece": ["-0.1", "1.5", "nan"],
    "--views": ["-1", "two"],
    "--dtype": ["fp64", "int4"],
    "--format": ["stl", "fbx"],
    "--preprocess": ["openlrm-gradio"],
    "--video-source": ["voxels"],
}
for flag, values in RANGES.items():
    for value in values:
        case(f"reconstruct{flag}={value}",
             lambda s, f=flag, v=value: ["reconstruct", s.image, "-o", str(s.out), "--model", s.model, f, v], flag)
case("reconstruct-no-image", lambda s: ["reconstruct", "-o", str(s.out), "--model", s.model])
case("reconstruct-unknown-option", lambda s: ["reconstruct", s.image, "-o", str(s.out), "--turbo"])
case("reconstruct-out-is-a-file", lambda s: ["reconstruct", s.image, "-o", s.bad("file") + "/sub"])
case("reconstruct-views-from-missing", lambda s: ["reconstruct", "--views-from", s.bad("nowhere"), "-o", str(s.out)])
case("reconstruct-views-from-empty", lambda s: ["reconstruct", "--views-from", s.bad("empty_dir"), "-o", str(s.out)])
# reconstruct and convert: broken models
BAD_MODELS = ["not_a_model", "empty_dir", "file", "nowhere", "config_not_json", "config_list", "config_wrong_type",
              "config_negative", "config_zero_width", "config_unknown_key", "config_bad_activation",
              "config_nan_threshold", "config_bad_ratio", "weights_truncated", "weights_garbage", "weights_empty",
              "weights_missing", "weights_nan", "yaml_bomb"]
for name in BAD_MODELS:
    case(f"reconstruct-model-{name}",
         lambda s, n=name: ["reconstruct", s.image, "-o", str(s.out), "--model", s.bad(n), "--no-remove-bg"])
    case(f"convert-{name}", lambda s, n=name: ["convert", s.bad(n), str(s.out / "converted")])
case("reconstruct-model-unknown-alias", lambda s: ["reconstruct", s.image, "-o", str(s.out), "--model", "gpt-9"])
case("convert-dtype", lambda s: ["convert", s.model, str(s.out / "c"), "--dtype", "int8"])
# train: broken configs
TRAIN_CONFIGS = {  # name: (config lines, what the error must name)
    "batch-zero": ("batch_size = 0", "batch_size"), "batch-negative": ("batch_size = -1", "batch_size"),
    "checkpoint-zero": ("checkpoint_every = 0", "checkpoint_every"), "lr-nan": ("[optim]\nlr = nan", "optim.lr"),
    "lr-inf": ("[optim]\nlr = inf", "optim.lr"), "lr-negative": ("[optim]\nlr = -1.0", "optim.lr"),
    "steps-zero": ("steps = 0", "steps"), "steps-negative": ("steps = -5", "steps"),
    "accumulation-zero": ("accumulation = 0", "accumulation"),
    "render-low-high": ("[data]\nrender_low = 64\nrender_high = 32", "render_low"),
    "backgrounds-empty": ("[data]\nbackgrounds = []", "backgrounds"),
    "backgrounds-out-of-range": ("[data]\nbackgrounds = [2.0]", "grey levels"),
    "side-views-negative": ("[data]\nside_views = -1", "side_views"), "unknown-key": ("flux = 1", "flux"),
    "wrong-type": ('steps = "ten"', "steps"), "unknown-preset": ('preset = "gigantic"', "gigantic"),
    "bad-toml": ("steps = = 3", "cannot parse"), "unknown-table": ("[turbo]\nx = 1", "turbo"),
    "region-zero": ("[data]\nregion = 0", "region"), "workers-negative": ("[data]\nworkers = -1", "workers"),
    "warmup-negative": ("[optim]\nwarmup = -3", "warmup"), "loss-negative": ("[loss]\nmse = -1.0", "loss weights"),
    "betas": ("[optim]\nbetas = [0.9, 1.5]", "betas"), "model-negative": ("[model.field]\nhidden = -4", "hidden"),
}
for name, (text, names) in TRAIN_CONFIGS.items():
    def _train(s, n=name, t=text):
        path = s.out.parent / f"{n}.toml"  # beside the output folder, outside the inputs
        path.write_text(f'preset = "tiny"\nrun_dir = "{s.out / "run"}"\n' if not t.startswith("preset") else "")
        path.write_text(path.read_text() + t + "\n")
        return ["train", "--config", str(path), "--data", s.data, "--no-progress"]
    case(f"train-{name}", _train, names)
case("train-config-missing", lambda s: ["train", "--config", s.bad("none.toml"), "--data", s.data])


def _non_utf8(s: Sandbox) -> list[str]:
    path = s.out.parent / "latin1.toml"
    path.write_bytes('preset = "tiny"\n# caf\xe9\n'.encode("latin-1"))
    return ["train", "--config", str(path), "--data", s.data]


case("train-non-utf8", _non_utf8, "cannot parse")
case("train-data-missing", lambda s: ["train", "--config", str(Path(__file__).parents[1] / "configs" / "tiny-lift.toml"),
                                      "--data", s.bad("nowhere"), "--run-dir", str(s.out / "run")])
case("train-data-not-a-dataset", lambda s: ["train", "--config",
                                            str(Path(__file__).parents[1] / "configs" / "tiny-lift.toml"),
                                            "--data", s.bad("empty_dir"), "--run-dir", str(s.out / "run")])
# evaluate
EVAL_BAD = {
    "data-missing": lambda s: ["--data", s.bad("nowhere")],
    "data-file": lambda s: ["--data", s.bad("file")],
    "data-empty": lambda s: ["--data", s.bad("empty_dir")],
    "data-broken-meta": lambda s: ["--data", s.bad("toy_no_meta")],
    "views-99": lambda s: ["--data", s.data, "--views", "99"],
    "views-negative": lambda s: ["--data", s.data, "--views", "-1"],
    "points-zero": lambda s: ["--data", s.data, "--points", "0"],
    "iou-zero": lambda s: ["--data", s.data, "--iou-resolution", "0"],
    "image-size-zero": lambda s: ["--data", s.data, "--image-size", "0"],
    "ring-views-zero": lambda s: ["--data", s.data, "--ring-views", "0"],
    "sheet-views-negative": lambda s: ["--data", s.data, "--sheet-views", "-2"],
    "objects-unknown": lambda s: ["--data", s.data, "--objects", "unicorn"],
    "split-unknown": lambda s: ["--data", s.data, "--split", "holdout"],
    "no-data": lambda s: [],
    "model-broken": lambda s: ["--data", s.data, "--model", s.bad("config_not_json")],
    "mesh-resolution-zero": lambda s: ["--data", s.data, "--mesh-resolution", "0"],
}
for name, extra in EVAL_BAD.items():
    case(f"evaluate-{name}", lambda s, e=extra: ["evaluate", "--model", s.model, "-o", str(s.out / "report"), *e(s)])
case("evaluate-compare-missing",
     lambda s: ["evaluate", "--compare", s.bad("nowhere"), s.bad("nowhere2")])
# fit
FIT_BAD = {"mesh-missing": ["MISSING"], "mesh-corrupt": ["mesh.ply"], "mesh-text": ["text.png"]}
for name, (mesh,) in FIT_BAD.items():
    case(f"fit-{name}", lambda s, m=mesh: ["fit", s.bad(m), "-o", str(s.out / "fit")])
for flag, value in (("--steps", "0"), ("--points", "0"), ("--voxels", "0"), ("--extent", "0"), ("--extent", "2"),
                    ("--eval-resolution", "1"), ("--threads", "0"), ("--preset", "gigantic")):
    case(f"fit{flag}={value}",
         lambda s, f=flag, v=value: ["fit", str(Path(__file__).parent / "fixtures" / "missing.ply"), "-o",
                                     str(s.out / "fit"), f, v])
# data
DATA_BAD = {
    "render-unknown-source": lambda s: ["render", "no-such-source", "-o", str(s.out / "ds")],
    "render-shard": lambda s: ["render", s.bad("empty_dir"), "-o", str(s.out / "ds"), "--shard", "3/2"],
    "render-shard-text": lambda s: ["render", s.bad("empty_dir"), "-o", str(s.out / "ds"), "--shard", "a/b"],
    "render-resolution": lambda s: ["render", s.bad("empty_dir"), "-o", str(s.out / "ds"), "--resolution", "0"],
    "render-empty-folder": lambda s: ["render", s.bad("empty_dir"), "-o", str(s.out / "ds")],
    "info-missing": lambda s: ["info", s.bad("nowhere")],
    "info-not-a-dataset": lambda s: ["info", s.bad("empty_dir")],
    "info-broken-meta": lambda s: ["info", s.bad("toy_no_meta")],
    "pack-missing": lambda s: ["pack", s.bad("nowhere"), "-o", str(s.out / "shards")],
    "pack-not-a-dataset": lambda s: ["pack", s.bad("empty_dir"), "-o", str(s.out / "shards")],
    "pack-per-shard-zero": lambda s: ["pack", s.data, "-o", str(s.out / "shards"), "--objects-per-shard", "0"],
    "samples-missing": lambda s: ["samples", s.bad("nowhere"), "0ad"],
    "capture-missing": lambda s: ["capture", s.bad("nowhere"), "-o", str(s.out / "ds")],
    "capture-empty": lambda s: ["capture", s.bad("empty_dir"), "-o", str(s.out / "ds")],
    "slim-missing": lambda s: ["slim", s.bad("nowhere"), "-o", str(s.out / "slim")],
    "slim-views-zero": lambda s: ["slim", s.data, "-o", str(s.out / "slim"), "--views", "0"],
    "fetch-unknown": lambda s: ["fetch", "quake3"],
}
for name, args in DATA_BAD.items():
    case(f"data-{name}", lambda s, a=args: ["data", *a(s)])
case("unknown-command", lambda s: ["teleport"])
case("no-command", lambda s: [])
case("demo-port", lambda s: ["demo", "--port", "-5"])
case("demo-model", lambda s: ["demo", "--model", s.bad("config_not_json")])


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_suite_is_large_enough():
    assert len(CASES) >= 150, len(CASES)
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("name,args,names", CASES, ids=[name for name, _, _ in CASES])
def test_bad_input(name, args, names, sandbox_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths resolve here, never in the inputs
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("an earlier result")
    sandbox = Sandbox(sandbox_root, out)
    argv = args(sandbox)
    before = _tree(sandbox_root)
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert "Traceback" not in err and lines and lines[-1].startswith("lrm: error: "), err
    assert sum(line.startswith("lrm: error:") for line in lines) == 1, err
    assert names in lines[-1], (names, lines[-1])  # refused for its own reason
    assert all(line.startswith(("loaded ", "lrm: warning:", "lrm: note:")) for line in lines[:-1]), err
    assert _tree(sandbox_root) == before  # nothing written beside the inputs
    assert (out / "earlier.txt").read_text() == "an earlier result"  # nothing lost
