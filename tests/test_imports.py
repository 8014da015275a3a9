"""vitkit's import graph, read from the source with ``ast``: no module inside vitkit imports the package root
(``from vitkit import X``, ``from .. import X`` reaching ``vitkit``), and module-level imports form no cycle
(a cycle makes import order matter and breaks as soon as one side reads a name of the other at import time)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "vitkit"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, module_level_only: bool) -> list[str]:
    """The vitkit modules ``name`` imports (``from pkg import sub`` counts ``pkg.sub`` alone when that is a module:
    ``pkg`` is its parent, imported first anyway)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
            found += submodules if len(submodules) == len(node.names) else [base, *submodules]
    return [target for target in found if target in MODULES and target != name]


def test_every_module_is_found() -> None:
    assert {"vitkit", "vitkit.cli", "vitkit.models.vit", "vitkit.interop.load"} <= set(MODULES)


def test_no_module_imports_the_package_root() -> None:
    offenders = [name for name in MODULES if name != "vitkit" and "vitkit" in imports(name, module_level_only=False)]
    assert not offenders, f"these modules import the package root `vitkit`; import from the module instead: {offenders}"


def test_explain_does_not_reach_into_training() -> None:
    """Explaining a model needs no training code (models are opened by ``vitkit.open``, ``vitkit/inference``)."""
    offenders = {name: [t for t in imports(name, module_level_only=False) if t.startswith("vitkit.train")]
                 for name in MODULES if name.startswith("vitkit.explain")}
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_module_level_imports_have_no_cycle() -> None:
    graph = {name: set(imports(name, module_level_only=True)) for name in MODULES}
    cycles = []
    state: dict[str, str] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_walker_sees_a_cycle_and_a_root_import(tmp_path, monkeypatch) -> None:
    """The checks can fail: a fake package with both defects is caught."""
    fake = tmp_path / "vitkit"
    (fake / "sub").mkdir(parents=True)
    (fake / "__init__.py").write_text("from .a import x\n")
    (fake / "a.py").write_text("from .sub import b\nx = 1\n")
    (fake / "sub" / "__init__.py").write_text("")
    (fake / "sub" / "b.py").write_text("from ..a import x\nfrom .. import a\n\ndef f():\n    from vitkit import x\n")
    modules = {".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
               for p in fake.rglob("*.py")}
    monkeypatch.setattr(sys.modules[__name__], "MODULES", modules)
    assert "vitkit.a" in imports("vitkit.sub.b", module_level_only=True)
    assert "vitkit" in imports("vitkit.sub.b", module_level_only=False)
    assert "vitkit.sub.b" in imports("vitkit.a", module_level_only=True)
