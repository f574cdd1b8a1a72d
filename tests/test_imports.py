"""The package's import graph: no cycles (local imports included), and inference loading does
not pull in the trainer."""

import ast
import subprocess
import sys
from pathlib import Path

LRM = Path(__file__).resolve().parents[1] / "lrm"


def _module(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = LRM) -> dict[str, set[str]]:
    """Module -> the lrm modules it imports anywhere in its body (top-level or local). A
    `from package import submodule` counts as importing the submodule, not the package."""
    files = {_module(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("lrm"):
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in files]
                graph[mod].update(subs)
                if node.module in files and len(subs) < len(node.names) and node.module != mod:
                    graph[mod].add(node.module)
            elif isinstance(node, ast.Import):
                graph[mod].update(a.name for a in node.names if a.name in files)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_graph_sees_local_imports(tmp_path):
    pkg = tmp_path / "lrm"
    (pkg / "render").mkdir(parents=True)
    for name in ("__init__.py", "render/__init__.py"):
        (pkg / name).write_text("")
    (pkg / "render/renderer.py").write_text("def f():\n    from lrm.render.skipping import g\n")
    (pkg / "render/skipping.py").write_text("from lrm.render import renderer\n")
    graph = import_graph(pkg)
    assert graph["lrm.render.renderer"] == {"lrm.render.skipping"}
    assert find_cycle(graph) == ["lrm.render.renderer", "lrm.render.skipping", "lrm.render.renderer"]


def test_no_import_cycle_in_lrm():
    graph = import_graph()
    assert len(graph) > 100 and "lrm.render.skipping" in graph["lrm.model.lrm"]
    assert find_cycle(graph) is None


def test_loading_a_model_does_not_import_the_trainer(tmp_path):
    """Inference loading (the bundled model, and the newest checkpoint of a training run folder)
    must not import lrm.train."""
    import torch

    from lrm.model.lrm import LRM
    from lrm.model.presets import tiny
    from lrm.train import checkpoint as ckpt

    run = tmp_path / "run"
    tmp = ckpt.temp_dir(run, 3)
    tmp.mkdir(parents=True)
    ckpt.write_model(tmp, tiny(), LRM(tiny()).state_dict())
    torch.save({}, tmp / ckpt.TRAINER_STATE)
    ckpt.finalize(tmp, ckpt.step_dir(run, 3), 3)
    code = ("import sys, lrm; lrm.load_model('default'); lrm.load_model(sys.argv[1]); "
            "print(sorted(k for k in sys.modules if k.startswith('lrm.train')))")
    out = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
