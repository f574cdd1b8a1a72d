"""The declared Python floor (pyproject's requires-python) holds for every module we ship.

No interpreter older than the machine's can be installed offline, so this is checked statically
with vermin (which knows the version each stdlib module, function and syntax needs); the one
3.11 module we use, tomllib, is guarded by the tomli fallback and marked `# novermin`."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_code_needs_no_newer_python_than_declared():
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    if vermin is None:
        pytest.skip("vermin is not installed (it is in the 'test' extra)")
    floor = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    target = f"{floor[1]}.{floor[2]}"
    assert target == "3.10"
    proc = subprocess.run([vermin, "-q", "--no-tips", "--eval-annotations", f"--target={target}-", "--violations",
                           "lrm", "scripts", "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_training_configs_parse_with_the_fallback_parser(monkeypatch):
    """Python 3.10 has no tomllib: lrm.train.config's import block then binds tomli, and every
    shipped config resolves through it to the same TrainConfig."""
    import inspect

    tomli = pytest.importorskip("tomli")
    import lrm.train.config as config

    source = inspect.getsource(config)
    block = source[source.index("try:\n    import tomllib"):source.index("\n\n", source.index("try:\n    import tomllib"))]
    monkeypatch.setitem(sys.modules, "tomllib", None)  # `import tomllib` now raises ImportError
    namespace: dict = {}
    exec(block, namespace)
    assert namespace["tomllib"] is tomli
    for path in sorted((ROOT / "configs").glob("*.toml")):
        text = path.read_text()
        assert config.resolve(tomli.loads(text)) == config.load_config(path), path
