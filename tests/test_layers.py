"""The package's imports keep its layers: no import cycle, and no arrow up the layer list.

Layers, ground floor first (COMMON.md / DESIGN.md 2b); a module may import
its own layer or a lower one. Every import statement counts, at module level
or inside a function (a lazy import is still a dependency). A package that
does not exist yet is simply absent; a new top-level module or package must
be given a layer here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "sglang_consumer_gpu"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

#: Layer of each top-level module or package (``__init__`` is the package's own face).
LAYERS: dict[str, int] = {
    "__init__": 0,
    "settings": 0,
    "versions": 0,
    "errors": 0,  # the mark on exceptions crossing a wrapper (registry and safety net)
    "hardware": 1,
    "moe": 2,
    "attention": 2,
    "int8": 2,
    "fp8": 2,  # FP8 fused MoE on GPUs without e4m3: route, tile, the weight-only kernel
    "topology": 2,  # multi-GPU boxes: links, memory balance, NCCL (reads NVML like hardware/)
    "builds": 2,  # reads the installed binaries; judges them for a GpuSpec
    "backends": 2,  # which SGLang backends have kernels for a GPU (kernel-library facts on GpuSpec)
    "models": 3,
    "patching": 4,  # the machinery: how a patch is declared, decided, applied, watched for
    "patches": 4,  # the patches and every SGLang path a family touches (the safety net's rules read them)
    "safety": 4,
    "emulation": 4,  # its hooks run from _pth at interpreter start, like the patches
    "activation": 4,
    "_pth": 4,
    "oracle": 5,
    "measure": 6,
    "families": 7,  # one module per kernel family: the one answer to "what runs for this shape"
    "checks": 8,
    "tune": 8,
    "selftest": 8,
    "bench": 8,
    "planner": 8,
    "tests": 8,  # the shipped tests: parametrized over the selftest's plan
    "cli": 9,
    "__main__": 10,
}
#: The tools: each answers from the families and the layers below, never from another tool.
TOOLS = ("checks", "tune", "selftest", "bench", "planner")
DECISIONS = ("hardware", "moe", "attention", "int8", "fp8", "topology", "backends")
ABOVE_DECISIONS = ("patching", "patches", "oracle", "measure", "families", *TOOLS, "cli")

#: Arrows known to run up, each with who removes it; the test fails once one is gone, so it leaves this list too.
KNOWN_UP: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[importer].name == "__init__.py"
    base = importer.split(".")[: len(importer.split(".")) - node.level + (1 if is_package else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(name: str) -> Iterator[str]:
    """The package's modules that ``name`` imports, anywhere in its body."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(name, node)
            # `from pkg import submodule` imports the submodule
            targets = [
                f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import a.b.c` of a non-module name: its module
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != name:
                yield target


GRAPH: dict[str, set[str]] = {name: set(_imports(name)) for name in MODULES}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(module: str) -> int:
    return LAYERS[_top(module)]


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def _up_arrows() -> dict[tuple[str, str], str]:
    return {
        (a, b): f"{a} (layer {_layer(a)}) -> {b} (layer {_layer(b)})"
        for a, targets in GRAPH.items()
        for b in targets
        if _layer(b) > _layer(a)
    }


def test_every_top_level_module_has_a_layer():
    missing = sorted({_top(m) for m in MODULES} - set(LAYERS))
    assert not missing, f"give these a layer in tests/test_layers.py: {missing}"


def test_the_walk_sees_module_and_function_level_imports():
    """The walk is not vacuous: it finds a known top-level and a known function-level import."""
    assert f"{PACKAGE}.hardware.spec" in GRAPH[f"{PACKAGE}.moe.smem"]
    assert f"{PACKAGE}.patching.registry" in GRAPH[f"{PACKAGE}.families.base"]  # inside functions
    assert f"{PACKAGE}.settings" in GRAPH[f"{PACKAGE}.hardware.current"]  # `from pkg import module`


def test_no_import_cycle():
    assert _cycles() == []


def test_decision_packages_import_nothing_above_them():
    bad = sorted(
        f"{a} -> {b}"
        for a, targets in GRAPH.items()
        for b in targets
        if _top(a) in DECISIONS and _top(b) in ABOVE_DECISIONS and (a, b) not in KNOWN_UP
    )
    assert not bad, bad


def test_no_tool_imports_another_tool_or_a_patch():
    """A tool that needs what another tool knows, or what a patch decides, asks the family:
    the tools are peers, and the families are the one answer they share."""
    bad = sorted(
        f"{a} -> {b}"
        for a, targets in GRAPH.items()
        for b in targets
        if _top(a) in TOOLS and (_top(b) in TOOLS or _top(b) == "patches") and _top(b) != _top(a)
    )
    assert not bad, bad


def test_no_arrow_runs_up_the_layers():
    up = _up_arrows()
    unexpected = sorted(text for edge, text in up.items() if edge not in KNOWN_UP)
    assert not unexpected, unexpected
    gone = sorted(f"{a} -> {b}" for a, b in KNOWN_UP if (a, b) not in up)
    assert not gone, f"fixed: remove from KNOWN_UP: {gone}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import sglang_consumer_gpu.oracle.core", True),
        ("def f():\n    from sglang_consumer_gpu.checks import registry", True),
        ("from ..oracle import core", True),
        ("from sglang_consumer_gpu.hardware.spec import GpuSpec", False),
    ],
)
def test_the_check_would_catch_an_upward_import(source, expected, monkeypatch, tmp_path):
    """A decision module importing the oracle or checks, at any level, is seen as an upward arrow."""
    fake = tmp_path / "smem.py"
    fake.write_text(source)
    name = f"{PACKAGE}.moe.smem"
    monkeypatch.setitem(MODULES, name, fake)
    monkeypatch.setitem(GRAPH, name, set(_imports(name)))
    assert any(a == name for a, _ in _up_arrows()) is expected


SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
#: Scripts whose job is a path: the device loader puts its carry of SGLang's files first, and the
#: carry builder's clean-interpreter check starts from an empty path.
PATH_LOADERS = {"device/sglang_env.py", "device/prepare_carry.py", "device/install_sglang.py"}


def test_scripts_find_the_package_through_pythonpath():
    """No script edits ``sys.path`` to find the package or another script: they run with the
    repository root on PYTHONPATH (scripts/device/README.md)."""
    edits = sorted(
        str(p.relative_to(SCRIPTS))
        for p in SCRIPTS.rglob("*.py")
        if str(p.relative_to(SCRIPTS)) not in PATH_LOADERS
        and any(s in p.read_text() for s in ("sys.path.insert", "sys.path[:0]", "sys.path.append"))
    )
    assert not edits, edits
