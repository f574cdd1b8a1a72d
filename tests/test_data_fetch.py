"""`lrm data fetch`: apt-get download + dpkg-deb extraction into a cache, with a fake apt-get
(offline, no apt lists) and, marked slow, the real Debian package assimp-testmodels."""

import shutil
import subprocess
import sys
import textwrap

import pytest

from lrm.data import debian
from lrm.errors import LRMError


def fake_apt(bin_dir, mode: str, deb=None):
    """An `apt-get` on PATH. mode: offline | no-lists (works only with private lists) | ok."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "apt-get"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import shutil, sys
        args = sys.argv[1:]
        private = any(a.startswith("-oDir::State::Lists=") for a in args)
        if {mode!r} == "offline":
            print("E: Failed to fetch http://deb.debian.org/x  Temporary failure resolving 'deb.debian.org'", file=sys.stderr)
            sys.exit(100)
        if "update" in args:
            sys.exit(0)
        if {mode!r} == "no-lists" and not private:
            print("E: Unable to locate package " + args[-1], file=sys.stderr)
            sys.exit(100)
        shutil.copy({str(deb)!r}, ".")
        """))
    script.chmod(0o755)
    return bin_dir


def make_deb(tmp_path):
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: kicad-packages3d\nVersion: 9.9-1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n")
    parts = root / "usr/share/kicad/3dmodels/Test.3dshapes"
    parts.mkdir(parents=True)
    (parts / "R_0402.wrl").write_text("#VRML V2.0 utf8\n")
    (parts / "R_0402.step").write_text("ISO-10303-21;\n")
    (root / "usr/share/doc/kicad-packages3d").mkdir(parents=True)
    (root / "usr/share/doc/kicad-packages3d/copyright").write_text("CC-BY-SA-4.0\n")
    deb = tmp_path / "kicad-packages3d_9.9-1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian)")


def test_offline_fails_with_one_line(tmp_path, monkeypatch, capsys):
    from lrm.cli.main import main

    monkeypatch.setenv("PATH", f"{fake_apt(tmp_path / 'bin', 'offline')}:/usr/bin:/bin")
    monkeypatch.setenv("LRM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(LRMError) as err:
        debian.fetch("kicad", log=lambda m: None)
    assert "offline" in str(err.value) and "\n" not in str(err.value)
    assert main(["data", "fetch", "kicad"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("lrm: error: cannot download kicad-packages3d")
    with pytest.raises(LRMError, match="lrm data fetch kicad"):
        debian.fetched_root("kicad")
    with pytest.raises(LRMError, match="unknown Debian source"):
        debian.fetch("quake", log=lambda m: None)


@needs_dpkg
@pytest.mark.parametrize("mode", ["ok", "no-lists"])
def test_fetch_downloads_and_extracts_selected_members(tmp_path, monkeypatch, mode):
    deb = make_deb(tmp_path)
    monkeypatch.setenv("PATH", f"{fake_apt(tmp_path / 'bin', mode, deb)}:/usr/bin:/bin")
    cache = tmp_path / "cache"
    root = debian.fetch("kicad", cache=cache, log=lambda m: None)
    assert root == cache / "debian" / "kicad" / "usr/share/kicad/3dmodels"
    assert (root / "Test.3dshapes" / "R_0402.wrl").is_file()
    assert not (root / "Test.3dshapes" / "R_0402.step").exists()  # only the members we read
    assert debian.fetched_info("kicad", cache)["version"] == "9.9-1"
    assert debian.fetched_root("kicad", cache) == root
    assert not list((cache / "debian").glob(".tmp-*"))
    monkeypatch.setenv("PATH", f"{fake_apt(tmp_path / 'bin2', 'offline')}:/usr/bin:/bin")
    assert debian.fetch("kicad", cache=cache, log=lambda m: None) == root  # cached: no apt-get call


@pytest.mark.slow
def test_real_fetch_and_render_assimp_testmodels(tmp_path, monkeypatch):
    """Downloads Debian's assimp-testmodels (20 MB) and renders two of its models."""
    from lrm.data.gl_render import egl_error

    if egl_error():
        pytest.skip(egl_error())
    from lrm.data.build import BuildConfig, build
    from lrm.data.format import list_objects
    from lrm.data.sources import folder
    from lrm.data.views import ViewConfig

    monkeypatch.setenv("LRM_CACHE", str(tmp_path / "cache"))
    root = debian.fetch("assimp-testmodels", log=lambda m: None)
    models = root / "glTF2" / "BoxTextured-glTF-Binary"
    stats = build(folder.assets(str(models)), tmp_path / "ds",
                  BuildConfig(resolution=64, views=ViewConfig(views=4, ring=0)), progress=False)
    assert stats["ok"] >= 1 and list_objects(tmp_path / "ds")
