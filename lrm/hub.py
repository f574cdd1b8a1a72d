"""Resolve a model name to weights and load them strictly.

`load_model(name)` accepts, in this order:
- "default" (the model bundled in the package), or "random:<preset>" (random weights, e.g.
  "random:tiny") for tests and benchmarks;
- a local folder in one of three layouts, told apart by their config file:
    ours      `config.json` (our LRMConfig) + `model.safetensors`
    OpenLRM   `config.json` (12 upstream kwargs) + `model.safetensors` or `pytorch_model.bin`
    TripoSR   `config.yaml` + `model.ckpt` (or `model.safetensors`)
  or a training run folder (`lrm train`): its newest intact checkpoint;
- an InstantMesh `.ckpt` file (`instant_nerf_base.ckpt`, `instant_nerf_large.ckpt`);
- a short alias (`openlrm-mix-base`, `triposr`, `instant-nerf-base`, ... see ALIASES and
  lrm.convert.instantmesh.HUB_FILES) or a Hugging Face hub id
  (`zxhezexin/openlrm-obj-large-1.1`, `stabilityai/TripoSR`): downloaded through
  huggingface_hub into its normal cache (HF_HOME / HF_HUB_CACHE; HF_HUB_OFFLINE=1 uses the
  cache only), then loaded like a folder.
Upstream layouts are converted in memory (lrm.convert) and loaded strictly: every upstream key
is consumed and every parameter filled, or a CheckpointError names the offending keys. Pickles
are read with torch.load(weights_only=True) only. Weights under a non-commercial licence print
it once per process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from lrm.configs import from_dict
from lrm.convert.reader import name_list, read_weights
from lrm.errors import CheckpointError, LRMError
from lrm.model.lrm import CONFIG_NAME, LRM, WEIGHTS_NAME, LRMConfig

BUNDLED_DIR = Path(__file__).parent / "assets" / "default"
OPENLRM_IDS = [f"zxhezexin/openlrm-{data}-{size}-1.1" for data in ("obj", "mix") for size in ("small", "base", "large")]
TRIPOSR_ID = "stabilityai/TripoSR"
ALIASES = {
    **{i.split("/")[1].removesuffix("-1.1"): i for i in OPENLRM_IDS},
    **{i.split("/")[1]: i for i in OPENLRM_IDS},
    "triposr": TRIPOSR_ID,
}
LICENSE_URLS = {"CC-BY-NC-4.0": "https://creativecommons.org/licenses/by-nc/4.0/"}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_license_shown: set[str] = set()

Files = Callable[[str], "Path | None"]  # file name -> local path, None if absent


class FilesMissing(LRMError):
    """A folder or hub repo lacks the config or weights file of every supported layout."""


def strict_load(model: LRM, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into `model`, failing with the names of missing, unexpected or mis-shaped keys.

    Tensors are assigned (no copy) after casting to each parameter's dtype. Non-finite weights
    are refused.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    problems = []
    if missing:
        problems.append(f"missing keys: {name_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {name_list(unexpected)}")
    if shapes:
        problems.append("shape mismatch: " + name_list(
            [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shapes]))
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    broken = [k for k, v in state.items()
              if v.is_floating_point() and not v.is_meta and not bool(torch.isfinite(v).all())]
    if broken:  # a model with NaN/inf weights would "reconstruct" garbage without a word
        raise CheckpointError(f"{source}: weights with NaN or infinite values: {name_list(broken)}")
    cast = {k: v.to(dtype=own[k].dtype) for k, v in state.items()}
    model.load_state_dict(cast, strict=True, assign=True)


@contextlib.contextmanager
def _skip_init() -> Iterator[None]:
    """Skip the default random initialisation of standard layers (weights are loaded next)."""
    layers = (nn.Linear, nn.modules.conv._ConvNd, nn.LayerNorm, nn.GroupNorm)
    saved = [(cls, cls.reset_parameters) for cls in layers]
    try:
        for cls in layers:
            cls.reset_parameters = lambda self: None
        yield
    finally:
        for cls, fn in saved:
            cls.reset_parameters = fn


def build_empty(cfg: LRMConfig) -> LRM:
    """Construct a model with uninitialised parameters; fill it with `strict_load`."""
    with _skip_init():
        return LRM(cfg)


def notice_license(cfg: LRMConfig) -> None:
    """Print a non-commercial weights licence to stderr, once per process and licence."""
    if "NC" not in cfg.license.upper().split("-") or cfg.license in _license_shown:
        return
    _license_shown.add(cfg.license)
    url = LICENSE_URLS.get(cfg.license, "")
    print(f"lrm: note: the {cfg.name} weights are licensed {cfg.license} (non-commercial use only, "
          f"attribution required){': ' + url if url else ''}", file=sys.stderr)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LRMError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise LRMError(f"{path}: expected a JSON object")
    return data


def _first(get: Files, names: tuple[str, ...], where: str, what: str) -> Path:
    for n in names:
        path = get(n)
        if path is not None:
            return path
    raise FilesMissing(f"{where}: no {what} weights ({' or '.join(names)})")


def load_converted(get: Files, where: str, name: str | None = None) -> tuple[LRMConfig, dict[str, torch.Tensor]]:
    """Read any supported layout from `get` -> (our config, our state dict), strictly converted.

    `where` names the folder or hub repo in messages; `name` becomes the model's name.
    """
    cfg_json = get(CONFIG_NAME)
    if cfg_json is not None:
        data = _read_json(cfg_json)
        from lrm.convert.openlrm import config_from_openlrm, convert_openlrm_state, is_openlrm_config

        if is_openlrm_config(data):
            cfg = config_from_openlrm(data, name, str(cfg_json))
            weights = _first(get, (WEIGHTS_NAME, "pytorch_model.bin"), where, "OpenLRM")
            return cfg, convert_openlrm_state(read_weights(weights), cfg, str(weights))
        cfg = from_dict(LRMConfig, data, str(cfg_json))
        return cfg, read_weights(_first(get, (WEIGHTS_NAME,), where, "model"))
    cfg_yaml = get("config.yaml")
    if cfg_yaml is not None:
        from lrm.convert.triposr import config_from_triposr, convert_triposr_state, parse_yaml

        cfg = config_from_triposr(parse_yaml(cfg_yaml.read_text(), str(cfg_yaml)), name or "triposr", str(cfg_yaml))
        weights = _first(get, (WEIGHTS_NAME, "model.ckpt"), where, "TripoSR")
        return cfg, convert_triposr_state(read_weights(weights), cfg, str(weights))
    raise FilesMissing(f"{where}: no {CONFIG_NAME} or config.yaml: not an lrm, OpenLRM or TripoSR model")


def _to_model(cfg: LRMConfig, state: dict[str, torch.Tensor], source: str,
              device: str | torch.device, dtype: torch.dtype) -> LRM:
    model = build_empty(cfg)
    strict_load(model, state, source)
    notice_license(cfg)
    return model.to(device=device, dtype=dtype).eval()


def load_folder(folder: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LRM:
    """Load a local folder in our, OpenLRM's or TripoSR's layout."""
    folder = Path(folder)

    def get(n: str) -> Path | None:
        return folder / n if (folder / n).is_file() else None

    cfg, state = load_converted(get, str(folder))
    return _to_model(cfg, state, str(folder), device, dtype)


class HubFiles:
    """File getter over a hub repo through huggingface_hub's cache; errors become LRMErrors.

    Files that are neither cached nor downloadable (offline, no network) are listed in
    `unreachable`; files the repo does not have are simply absent (None)."""

    def __init__(self, repo_id: str, absent: tuple[str, ...] = ()) -> None:
        self.repo_id = repo_id
        self.unreachable: list[str] = []
        self._seen: dict[str, Path | None] = dict.fromkeys(absent)  # known absent: never asked for
        self._local_only: bool | None = None  # decided on the first download

    def __call__(self, filename: str) -> Path | None:
        if filename not in self._seen:
            self._seen[filename] = self._download(filename)
        return self._seen[filename]

    def _download(self, filename: str) -> Path | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                           LocalEntryNotFoundError, RepositoryNotFoundError)

        repo = self.repo_id
        if self._local_only is None:  # unreachable hub: use the cache only, instead of ~46 s of retries
            self._local_only = not hub_reachable()
        try:
            return Path(hf_hub_download(repo, filename, local_files_only=self._local_only))
        except LocalEntryNotFoundError:  # not cached, and offline or the hub is unreachable
            self.unreachable.append(filename)
            return None
        except EntryNotFoundError:  # the repo has no such file
            return None
        except GatedRepoError:
            raise LRMError(f"{repo} is gated on the hub: accept its terms on huggingface.co "
                           "and log in (`hf auth login`)") from None
        except RepositoryNotFoundError:
            raise LRMError(f"{repo}: no such model on the Hugging Face hub (or it is private)") from None
        except (HfHubHTTPError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise LRMError(f"{repo}: download of {filename} failed ({type(exc).__name__}: {first})") from None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub's endpoint opens within `timeout` seconds. True when
    HF_HUB_OFFLINE is set (huggingface_hub then stays local itself) or a proxy is configured
    (the direct connection says nothing then)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(v) for v in
                                       ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


def _hub_cache_error(repo_id: str) -> LRMError:
    from huggingface_hub import constants

    offline = bool(constants.HF_HUB_OFFLINE)
    how = ("HF_HUB_OFFLINE=1 forbids downloading; unset it to download" if offline
           else "the hub could not be reached; check the network")
    return LRMError(f"{repo_id} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {how}, "
                    f"or download its files elsewhere and pass the folder to --model")


def load_hub(repo_id: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LRM:
    """Download (or find in the cache) a hub repo in any supported layout, then load it."""
    # TripoSR has no config.json (nor model.safetensors on its main branch): do not ask for them.
    triposr = repo_id.lower() == TRIPOSR_ID.lower()
    files = HubFiles(repo_id, absent=(CONFIG_NAME, WEIGHTS_NAME) if triposr else ())
    try:
        cfg, state = load_converted(files, repo_id, name=repo_id.split("/")[1].lower())
    except FilesMissing:
        if files.unreachable:
            raise _hub_cache_error(repo_id) from None
        raise
    return _to_model(cfg, state, repo_id, device, dtype)


def load_instantmesh(name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LRM:
    """An InstantMesh alias (its file in TencentARC/InstantMesh, through the hub cache) or a local
    `.ckpt` file."""
    from lrm.convert.instantmesh import FLEXICUBES, FLEXICUBES_MESSAGE, HUB_FILES, HUB_REPO, load_instantmesh_file

    alias = name.lower()
    if alias in FLEXICUBES:
        raise LRMError(f"{name}: {FLEXICUBES_MESSAGE}")
    if alias in HUB_FILES:
        files = HubFiles(HUB_REPO)
        path = files(HUB_FILES[alias])
        if path is None:
            if files.unreachable:
                raise _hub_cache_error(f"{HUB_REPO} ({HUB_FILES[alias]})")
            raise LRMError(f"{HUB_REPO} has no file {HUB_FILES[alias]}")
        cfg, state = load_instantmesh_file(path, alias)
        return _to_model(cfg, state, f"{HUB_REPO}/{HUB_FILES[alias]}", device, dtype)
    path = Path(name).expanduser()
    cfg, state = load_instantmesh_file(path)
    return _to_model(cfg, state, str(path), device, dtype)


def load_model(name: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LRM:
    """Resolve `name` (see module docstring; a folder may be a Path) and load the model in eval mode."""
    from lrm.convert.instantmesh import HUB_FILES, HUB_REPO

    name = str(name)
    if name == "default":
        if not (BUNDLED_DIR / WEIGHTS_NAME).is_file():
            raise LRMError("the bundled default model is missing from this installation")
        return load_folder(BUNDLED_DIR, device, dtype)
    if name.startswith("random:"):
        from lrm.model.presets import PRESETS

        preset = name.split(":", 1)[1]
        if preset not in PRESETS:
            raise LRMError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        torch.manual_seed(0)
        return LRM(PRESETS[preset]()).to(device=device, dtype=dtype).eval()
    if name.lower() in HUB_FILES:
        return load_instantmesh(name, device, dtype)
    path = Path(name).expanduser()
    if path.exists():
        if path.is_file() and path.suffix == ".ckpt":
            return load_instantmesh(str(path), device, dtype)
        if not path.is_dir():
            raise LRMError(f"{name}: a model must be a folder (config.json + model.safetensors, "
                           "or an OpenLRM / TripoSR folder) or an InstantMesh .ckpt file")
        if not (path / WEIGHTS_NAME).is_file() and (path / "checkpoints").is_dir():  # a training run
            from lrm.run_folder import latest_valid

            found = latest_valid(path)
            if found is None:
                raise LRMError(f"{name}: a training run folder without an intact checkpoint")
            path = found
        return load_folder(path, device, dtype)
    repo_id = ALIASES.get(name.lower(), name)
    if repo_id.lower() == HUB_REPO.lower():
        raise LRMError(f"{repo_id} holds several models: choose instant-nerf-base or instant-nerf-large")
    if _HUB_ID.match(repo_id):
        return load_hub(repo_id, device, dtype)
    import difflib

    names = [a for a in ALIASES if not a.endswith("-1.1")] + [a for a in HUB_FILES if "nerf" in a]
    close = difflib.get_close_matches(name.lower(), names, n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise LRMError(f"unknown model {name!r}: not a local folder, alias ({', '.join(names)}) "
                   f"or hub id (owner/name){hint}")
