"""The architecture's import rules, read from the source with `ast` (nothing is imported or run).

- `sdk/` is what a plugin author depends on: it imports no other wing of the package.
- The console wing (`cli/`) is imported by nothing else in the package: everything else works without a terminal.
- The package never imports a connector or an out-of-tree plugin: they register through entry points.
- PySpark (an optional extra) is imported by `spark/` alone, and nothing imports `spark/`: every other wing
  works without Spark installed.
- No import cycles, type-only imports included, so every module can be read (and tested) bottom-up.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "core"
PACKAGE = "crm_activation"
SDK_MAY_NOT_IMPORT = ("pipeline", "state", "campaign", "email", "measurement", "cli", "testing", "spark")
PLUGIN_PACKAGES = ("crm_activation.connectors", "crm_activation_google_data_manager")


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


MODULES = {module_name(path): path for path in sorted(CORE.rglob("*.py"))}


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    """Every module `module` imports (absolute names), with the line, including imports inside functions."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                yield (submodule if submodule in MODULES else target), node.lineno


def wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def internal_edges() -> dict[str, set[str]]:
    return {
        module: {target for target, _ in imports_of(module) if target in MODULES and target != module}
        for module in MODULES
    }


def test_the_wings_exist():
    assert {wing(m) for m in MODULES} >= {"sdk", "campaign", "pipeline", "state", "cli", "email", "measurement"}


@pytest.mark.parametrize("module", [m for m in MODULES if wing(m) == "sdk"])
def test_sdk_imports_no_other_wing(module):
    offending = [
        f"line {line}: {target}"
        for target, line in imports_of(module)
        if target.startswith(PACKAGE + ".") and wing(target) in SDK_MAY_NOT_IMPORT
    ]
    assert not offending, f"{module} reaches outside the SDK: {offending}"


@pytest.mark.parametrize("module", [m for m in MODULES if wing(m) != "cli"])
def test_only_the_console_wing_imports_the_console_wing(module):
    offending = [f"line {line}: {target}" for target, line in imports_of(module) if wing(target) == "cli"]
    assert not offending, f"{module} imports the CLI: {offending}"


@pytest.mark.parametrize("module", [m for m in MODULES if wing(m) != "spark"])
def test_only_the_spark_wing_imports_pyspark_or_the_spark_wing(module):
    offending = [
        f"line {line}: {target}"
        for target, line in imports_of(module)
        if target.split(".")[0] == "pyspark" or (wing(target) == "spark" and target.startswith(PACKAGE + "."))
    ]
    assert not offending, f"{module} needs Spark: {offending}"


def test_the_spark_rule_sees_the_spark_wing():
    assert any(t.startswith("pyspark") for m in MODULES if wing(m) == "spark" for t, _ in imports_of(m))


@pytest.mark.parametrize("module", list(MODULES))
def test_no_module_imports_a_connector_or_plugin(module):
    offending = [f"line {line}: {t}" for t, line in imports_of(module) if t.startswith(PLUGIN_PACKAGES)]
    assert not offending, f"{module} imports a plugin: {offending}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that import each other (size > 1)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_no_import_cycles():
    assert strongly_connected(internal_edges()) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
