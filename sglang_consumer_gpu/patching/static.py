"""Check a patch's seam against SGLang's source text, without importing SGLang.

Used by ``doctor`` (the installed files: answers in well under a second, where
importing SGLang takes ~10 s) and by CI (the wheel of every covered release).
The source is parsed with :mod:`ast`, never executed, except that
:func:`function_from_source` compiles one self-contained helper on request.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sglang_consumer_gpu.patching.base import Seam

#: ``read(path inside the sglang distribution, e.g. "sglang/srt/x.py") -> source or None``
Reader = Callable[[str], "str | None"]


@dataclass(frozen=True)
class SeamCheck:
    ok: bool
    problem: str = ""  # why not, for the user (empty when ok)
    condition: str = ""  # the module-level `if` the binding sits under, e.g. "_is_cuda"
    missing: bool = False  # the module or the attribute is not there (else: it changed)


def module_paths(module: str) -> tuple[str, str]:
    """The two files a dotted module can be: ``a/b.py`` or ``a/b/__init__.py``."""
    rel = module.replace(".", "/")
    return f"{rel}.py", f"{rel}/__init__.py"


def read_source(read: Reader, module: str) -> str | None:
    for rel in module_paths(module):
        text = read(rel)
        if text is not None:
            return text
    return None


def installed_reader() -> Reader | None:
    """A reader for installed source files, ``"sglang/..."`` (or any other top-level
    package a patch targets, e.g. ``"triton/..."``); None when SGLang is not
    installed. Packages are located, not imported
    (:func:`~sglang_consumer_gpu.versions.package_dirs`)."""
    from sglang_consumer_gpu.versions import package_dirs

    if not package_dirs("sglang"):
        return None
    roots: dict[str, list[Path]] = {}

    def read(rel: str) -> str | None:
        top, _, rest = rel.partition("/")
        if top not in roots:
            roots[top] = package_dirs(top)
        for root in roots[top]:
            try:
                return (root / rest).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
        return None

    return read


def _bindings(body: list[ast.stmt], cond: str = "") -> dict[str, tuple[ast.AST, str]]:
    """Names bound at module (or class) level -> (node, enclosing `if` test), looking
    into if/try/with blocks but not into functions; the first binding wins."""
    out: dict[str, tuple[ast.AST, str]] = {}

    def add(name: str, node: ast.AST, c: str) -> None:
        out.setdefault(name, (node, c))

    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            add(stmt.name, stmt, cond)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                add((alias.asname or alias.name).split(".")[0], stmt, cond)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        add(n.id, stmt, cond)
        elif isinstance(stmt, ast.If):
            test = ast.unparse(stmt.test)
            for name, v in _bindings(stmt.body, cond or test).items():
                add(name, *v)
            for name, v in _bindings(stmt.orelse, cond or f"not ({test})").items():
                add(name, *v)
        elif isinstance(stmt, ast.Try):
            for block in (stmt.body, *(h.body for h in stmt.handlers), stmt.orelse, stmt.finalbody):
                for name, v in _bindings(block, cond).items():
                    add(name, *v)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            for name, v in _bindings(stmt.body, cond).items():
                add(name, *v)
    return out


def _lookup(tree: ast.Module, dotted: str) -> tuple[ast.AST | None, str]:
    body: list[ast.stmt] = tree.body
    node: ast.AST | None = None
    cond = ""
    for part in dotted.split("."):
        found = _bindings(body).get(part)
        if found is None:
            return None, ""
        node, c = found
        cond = cond or c
        body = node.body if isinstance(node, ast.ClassDef) else []
    return node, cond


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, ...]:
    a = fn.args
    names = [p.arg for p in (*a.posonlyargs, *a.args)]
    if a.vararg:
        names.append("*" + a.vararg.arg)
    names += [p.arg for p in a.kwonlyargs]
    if a.kwarg:
        names.append("**" + a.kwarg.arg)
    return tuple(names)


def _calls_bare(fn: ast.AST, name: str) -> bool:
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name for n in ast.walk(fn)
    )


def _launch_keywords(fn: ast.AST, kernel: str) -> set[str] | None:
    for n in ast.walk(fn):
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Subscript)
            and isinstance(n.func.value, ast.Name)
            and n.func.value.id == kernel
        ):
            return {k.arg for k in n.keywords if k.arg}
    return None


def check_source(seam: Seam, source: str | None) -> SeamCheck:
    """Whether ``source`` (the seam's module) has the target the way the patch expects it."""
    if source is None:
        return SeamCheck(False, f"module {seam.module} does not exist", missing=True)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError) as exc:
        return SeamCheck(False, f"cannot parse {seam.module}: {exc}")
    node, cond = _lookup(tree, seam.attr)
    if node is None:
        return SeamCheck(False, f"{seam.module} defines no {seam.attr}", missing=True)
    if seam.params is not None:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return SeamCheck(False, f"{seam.target} is not a function", cond)
        have = _params(node)
        if have != seam.params:
            return SeamCheck(
                False, f"{seam.target}({', '.join(have)}) != expected ({', '.join(seam.params)})", cond
            )
    for caller in seam.called_by:
        fn, _ = _lookup(tree, caller)
        if fn is None:
            return SeamCheck(
                False, f"{seam.module} defines no {caller} (the caller the patch relies on)", cond
            )
        if not _calls_bare(fn, seam.attr.split(".")[-1]):
            return SeamCheck(False, f"{caller} no longer calls {seam.attr} by name", cond)
    if seam.launches is not None:
        kernel, keywords = seam.launches
        have_kw = _launch_keywords(node, kernel)
        if have_kw is None:
            return SeamCheck(False, f"{seam.target} no longer launches {kernel}[grid](...)", cond)
        missing = [k for k in keywords if k not in have_kw]
        if missing:
            return SeamCheck(
                False, f"{seam.target} launches {kernel} without keyword(s) {', '.join(missing)}", cond
            )
    return SeamCheck(True, "", cond)


def check_seam(seam: Seam, read: Reader) -> SeamCheck:
    return check_source(seam, read_source(read, seam.module))


def function_from_source(source: str, name: str, env: dict[str, Any]) -> Callable[..., Any] | None:
    """Compile the top-level function ``name`` from ``source`` alone, with ``env``
    as its globals (None if it is not there). For pure helpers whose answer
    depends only on module constants the caller supplies (e.g. SGLang's tile
    choice for a given compute capability); a name the function reads that
    ``env`` lacks raises NameError when it is called."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return None
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)
    if fn is None:
        return None
    fn.decorator_list = []
    fn.returns = None
    for arg in ast.walk(fn.args):
        if isinstance(arg, ast.arg):
            arg.annotation = None
    namespace: dict[str, Any] = dict(env)
    try:
        exec(compile(ast.Module(body=[fn], type_ignores=[]), f"<sglang {name}>", "exec"), namespace)
    except Exception:
        return None
    return namespace[name]
