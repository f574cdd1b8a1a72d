"""`lrm data fetch NAME`: real 3D assets from Debian packages, downloaded and unpacked into a
user cache without installing anything on the system.

    <cache>/debian/debs/<package>_<version>_all.deb     # `apt-get download`
    <cache>/debian/<name>/                              # the selected members, `dpkg-deb` + tar
    <cache>/debian/<name>/FETCHED.json                  # written last: package, version, members

<cache> is $LRM_CACHE, else $XDG_CACHE_HOME/lrm, else ~/.cache/lrm. If the system's apt lists do
not know the package (a fresh container, or a user who cannot run `apt-get update`), apt-get is
pointed at private lists inside the cache and updated there; this needs no root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from lrm.errors import LRMError


@dataclass(frozen=True)
class DebianSource:
    name: str  # what the user types: `lrm data fetch <name>`
    package: str  # the Debian package
    members: tuple[str, ...]  # tar wildcards of the files kept (the rest of the .deb is skipped)
    root: str  # folder, relative to the unpacked tree, that the reader starts from
    license: str  # SPDX-like licence of the assets we use


SOURCES: dict[str, DebianSource] = {
    s.name: s
    for s in (
        DebianSource("0ad", "0ad-data", ("./usr/share/games/0ad/mods/public/public.zip",
                                         "./usr/share/doc/0ad-data/copyright"),
                     "usr/share/games/0ad/mods/public", "CC-BY-SA-3.0"),
        DebianSource("kicad", "kicad-packages3d", ("*.wrl", "./usr/share/doc/kicad-packages3d/copyright"),
                     "usr/share/kicad/3dmodels", "CC-BY-SA-4.0"),
        DebianSource("redeclipse-nieb", "redeclipse-data", ("./usr/share/games/redeclipse/data/nieb/*",
                                                           "./usr/share/doc/redeclipse-data/copyright"),
                     "usr/share/games/redeclipse/data/nieb", "CC0-1.0"),
        DebianSource("assimp-testmodels", "assimp-testmodels", ("*",), "usr/share/assimp/models",
                     "mixed (test fixture)"),
    )
}


def cache_dir() -> Path:
    if os.environ.get("LRM_CACHE"):
        return Path(os.environ["LRM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lrm"


def source(name: str) -> DebianSource:
    if name not in SOURCES:
        raise LRMError(f"unknown Debian source {name!r}; known: {', '.join(SOURCES)}")
    return SOURCES[name]


def fetched_root(name: str, cache: Path | None = None) -> Path:
    """The folder a fetched source's reader starts from; LRMError if it was not fetched yet."""
    src = source(name)
    tree = (cache or cache_dir()) / "debian" / name
    if not (tree / "FETCHED.json").is_file():
        raise LRMError(f"{name} is not fetched yet; run `lrm data fetch {name}` first (needs apt)")
    return tree / src.root


def fetched_info(name: str, cache: Path | None = None) -> dict:
    return json.loads(((cache or cache_dir()) / "debian" / name / "FETCHED.json").read_text())


def fetch(name: str, cache: Path | None = None, log=print) -> Path:
    """Download (if needed) and unpack one source; returns its reader root. Idempotent."""
    src = source(name)
    cache = cache or cache_dir()
    tree = cache / "debian" / name
    if (tree / "FETCHED.json").is_file():
        log(f"{name}: already fetched in {tree}")
        return tree / src.root
    deb = _download(src.package, cache / "debian", log)
    log(f"{name}: unpacking {deb.name} ...")
    tmp = tree.parent / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        _unpack(deb, tmp, src.members)
        version = deb.name.split("_")[1] if deb.name.count("_") >= 2 else "?"
        info = {"name": name, "package": src.package, "version": version, "deb": deb.name,
                "license": src.license, "members": list(src.members)}
        (tmp / "FETCHED.json").write_text(json.dumps(info, indent=1))
        if tree.exists():
            shutil.rmtree(tree)
        os.replace(tmp, tree)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"{name}: ready in {tree}")
    return tree / src.root


def _apt_options(debian: Path) -> list[str]:
    lists, cache = debian / "apt" / "lists", debian / "apt" / "cache"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    (cache / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    opts = [f"-oDir::State::Lists={lists}", f"-oDir::Cache={cache}", "-oDebug::NoLocking=1"]
    if os.geteuid() == 0:  # apt's download user `_apt` may not be able to write into a home cache
        opts.append("-oAPT::Sandbox::User=root")
    return opts


def _download(package: str, debian: Path, log) -> Path:
    debs = debian / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    have = sorted(debs.glob(f"{package}_*.deb"))
    if have:
        return have[-1]
    if shutil.which("apt-get") is None:
        raise LRMError(f"cannot download {package}: apt-get not found (a Debian/Ubuntu system is needed)")
    log(f"{package}: apt-get download ...")
    res = _run(["apt-get", "download", package], debs)
    if res.returncode != 0:  # maybe no (or stale) system lists: use private lists in the cache
        opts = _apt_options(debian)
        log(f"{package}: not in the system's apt lists; apt-get update into {debian / 'apt'} ...")
        upd = _run(["apt-get", *opts, "update"], debs)
        res = _run(["apt-get", *opts, "download", package], debs) if upd.returncode == 0 else upd
    for partial in debs.glob("*.deb.*"):  # apt's partial files of an interrupted download
        partial.unlink(missing_ok=True)
    have = sorted(debs.glob(f"{package}_*.deb"))
    if res.returncode != 0 or not have:
        raise LRMError(f"cannot download {package} with apt-get (offline, or no Debian repository "
                       f"configured?): {_last_line(res.stderr)}")
    return have[-1]


def _unpack(deb: Path, dest: Path, members: tuple[str, ...]) -> None:
    if shutil.which("dpkg-deb") is None:
        raise LRMError("cannot unpack .deb files: dpkg-deb not found")
    dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    tar = subprocess.run(["tar", "-x", "-C", str(dest), "--wildcards", "--no-same-owner", *members],
                         stdin=dpkg.stdout, capture_output=True, text=True)
    dpkg.stdout.close()
    if dpkg.wait() != 0 or tar.returncode != 0:
        raise LRMError(f"cannot unpack {deb.name}: {_last_line(tar.stderr)}")


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"})


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip() and not ln.startswith("W:")]
    return lines[-1] if lines else "no output"
