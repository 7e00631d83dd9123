"""Make SGLang 0.5.23's real Triton kernels importable on the device machine.

The device machine (H100, Python 3.12, torch 2.11, Triton 3.6) has no SGLang
and no package registry, and importing all of SGLang needs ~15 wheels it lacks
(orjson, pybase64, pyzmq, starlette, IPython, ...). The kernels the plugin
reasons about only need a handful of SGLang *helper* functions, so this module:

1. puts ``.carry/sglang-0.5.23/site`` (built by ``prepare_carry.py`` from the
   official wheel: SGLang's own files, untouched, plus the ``msgspec`` wheel)
   first on ``sys.path``;
2. registers *package shells* for SGLang packages whose ``__init__`` imports
   half of SGLang (``sglang``, ``sglang.kernels``, ``sglang.srt.layers.moe``,
   ...): an empty package object whose ``__path__`` is the real directory, so
   the real submodules load from the real files but the heavy ``__init__`` does
   not run;
3. installs *stand-ins* for four SGLang helper modules (never for a kernel
   module). Each stand-in is built from SGLang's own source: the named
   functions, and the top-level definitions they use, are cut out of the real
   file with ``ast`` and executed, so their bodies are SGLang's. See
   ``STANDINS`` for exactly which names.

Call :func:`ensure_sglang` first (``from scripts.device.sglang_env import ensure_sglang``
with the repository root on ``PYTHONPATH``; ``PYTHONPATH=. python scripts/device/sglang_env.py``
self-checks), then ``import sglang.kernels.ops.moe.fused_moe_triton_kernels`` etc. as usual.
Where SGLang is installed it changes nothing.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import types
from pathlib import Path

from sglang_consumer_gpu.patches import attention_extend, attention_prefill, moe_config

SGLANG_VERSION = "0.5.23"
_REPO = Path(__file__).resolve().parents[2]
#: Where prepare_carry.py puts the trimmed wheel (override with SGLANG_DEVICE_CARRY).
CARRY_DIR = Path(os.environ.get("SGLANG_DEVICE_CARRY", _REPO / ".carry" / f"sglang-{SGLANG_VERSION}"))
SITE = CARRY_DIR / "site"

#: Packages whose ``__init__`` is skipped (it imports the server, tokenizers,
#: ZMQ, ...). Their submodules are the real files.
SHELL_PACKAGES: tuple[str, ...] = (
    "sglang",
    "sglang.srt",
    "sglang.srt.layers",
    "sglang.srt.layers.moe",
    "sglang.srt.layers.moe.moe_runner",
    "sglang.srt.layers.moe.moe_runner.triton_utils",
    "sglang.srt.utils",  # filled by its stand-in below, but keeps __path__ for submodules
    "sglang.kernels",
    "sglang.kernels.ops",  # its __init__ imports every kernel group (activation, gemm, ...)
)

#: Stand-ins for SGLang helper modules: module -> (real source file inside the
#: wheel, names cut out of it). The kernel modules import exactly these names.
STANDINS: dict[str, tuple[str, tuple[str, ...]]] = {
    # The real package __init__ star-imports utils/common.py (5,000 lines:
    # orjson, pybase64, starlette, PIL, platforms, observability, ...).
    "sglang.srt.utils": (
        "sglang/srt/utils/common.py",
        (
            "cpu_has_amx_support",
            "is_cpu",
            "is_cuda",
            "is_hip",
            "is_musa",
            "is_xpu",
            "is_npu",
            "is_sm90_supported",
            "is_gfx95_supported",
            "is_gfx1250_supported",
            "get_device_core_count",
            "get_device_name",
            "get_device_capability",
            "get_device_sm",
            "ceil_align",
            "ceil_div",
            "get_cuda_version",
            "get_bool_env_var",
            "direct_register_custom_op",  # used by utils/custom_op.py (JIT quant wrappers)
        ),
    ),
    # Imports sglang.srt.utils.common for is_musa/is_npu/torch_release.
    "sglang.srt.utils.patch_torch": ("sglang/srt/utils/patch_torch.py", ("register_fake_if_exists",)),
    # The real package pulls in DeepGEMM's configurer and the server utils.
    "sglang.srt.batch_invariant_ops": (
        "sglang/srt/batch_invariant_ops/batch_invariant_ops.py",
        ("is_batch_invariant_mode_enabled",),
    ),
    # The real module imports dp_attention, shared-experts config and the
    # distributed runtime.
    "sglang.srt.layers.moe.utils": ("sglang/srt/layers/moe/utils.py", ("get_moe_padding_size",)),
}

#: Same stand-in under a second name (sglang.kernels.jit.utils.arch imports
#: ``sglang.srt.utils.common`` directly).
ALIASES: dict[str, str] = {"sglang.srt.utils.common": "sglang.srt.utils"}

_SIMPLE = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)


def _defined_names(stmt: ast.stmt) -> set[str]:
    """Names a top-level statement binds (looking inside try/if blocks)."""
    out: set[str] = set()
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        out.add(stmt.name)
    elif isinstance(stmt, ast.Assign):
        for t in stmt.targets:
            out |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        out.add(stmt.target.id)
    elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
        for a in stmt.names:
            out.add((a.asname or a.name).split(".")[0])
    elif isinstance(stmt, (ast.Try, ast.If)):
        for child in ast.iter_child_nodes(stmt):
            if isinstance(child, ast.stmt):
                out |= _defined_names(child)
            elif isinstance(child, ast.ExceptHandler):
                for c in child.body:
                    out |= _defined_names(c)
    return out


def _used_names(stmt: ast.stmt) -> set[str]:
    return {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}


def extract_source(path: Path, names: tuple[str, ...]) -> str:
    """The statements of ``path`` that define ``names``, plus the top-level
    definitions and imports they use (transitively), in file order."""
    tree = ast.parse(path.read_text(), str(path))
    stmts = [s for s in tree.body if isinstance(s, (*_SIMPLE, ast.Import, ast.ImportFrom, ast.Try, ast.If))]
    definers: dict[str, list[int]] = {}
    for i, s in enumerate(stmts):
        if isinstance(s, ast.If) and "TYPE_CHECKING" in ast.unparse(s.test):
            continue
        for n in _defined_names(s):
            definers.setdefault(n, []).append(i)
    keep: set[int] = set()
    todo = list(names)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in definers:
            if name in names:
                raise ImportError(f"{path} defines no {name!r}: SGLang moved it; update STANDINS")
            continue
        for i in definers[name]:
            if i not in keep:
                keep.add(i)
                todo.extend(_used_names(stmts[i]))
    header = "from __future__ import annotations\n"
    return header + "\n\n".join(ast.unparse(stmts[i]) for i in sorted(keep)) + "\n"


def _package_shell(name: str, directory: Path) -> types.ModuleType:
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(directory)]
    mod = importlib.util.module_from_spec(spec)
    mod.__path__ = [str(directory)]
    mod.__file__ = None
    return mod


def _attach(name: str, mod: types.ModuleType) -> None:
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, mod)


def install(site: Path = SITE) -> dict[str, list[str]]:
    """Set up imports; returns what was shelled and stood in (for logs)."""
    if not (site / "sglang").is_dir():
        raise FileNotFoundError(
            f"{site}/sglang not found: run `python scripts/device/prepare_carry.py` here first "
            f"and name .carry/sglang-{SGLANG_VERSION} in the run call's carry list"
        )
    if str(site) not in sys.path:
        sys.path.insert(0, str(site))
    for name in SHELL_PACKAGES:
        if name not in sys.modules:
            _attach(name, _package_shell(name, site.joinpath(*name.split("."))))
    for name, (rel, names) in STANDINS.items():
        path = site / rel
        code = compile(extract_source(path, names), f"<stand-in {name} from {rel}>", "exec")
        mod = sys.modules.get(name) if name in SHELL_PACKAGES else None
        if mod is None:
            mod = types.ModuleType(name)
        mod.__dict__["__standin_source__"] = str(path)
        exec(code, mod.__dict__)
        _attach(name, mod)
    for alias, target in ALIASES.items():
        _attach(alias, sys.modules[target])
    return {
        "shells": list(SHELL_PACKAGES),
        "standins": {k: list(v[1]) for k, v in STANDINS.items()},
        "aliases": ALIASES,
    }


def ensure_sglang() -> dict[str, object]:
    """SGLang importable: an installed one (its metadata, which spawned workers see too), a
    carried install on the path, else this carry of SGLang's kernel files (:func:`install`).
    Says which."""
    import importlib.metadata

    try:
        return {"sglang": "installed", "version": importlib.metadata.version("sglang")}
    except importlib.metadata.PackageNotFoundError:
        pass
    if "sglang" in sys.modules or importlib.util.find_spec("sglang") is not None:
        return {"sglang": "on the path"}
    return {"sglang": "kernel-files carry", **install()}


#: The kernel modules this loader is meant to make importable: every family's.
TARGETS: tuple[str, ...] = (
    moe_config.LAUNCHER.module,
    attention_extend.MODULE,
    attention_extend.DECODE.module,
    attention_prefill.MODULE,
    moe_config.MODULE,
)


def import_targets() -> dict[str, types.ModuleType]:
    return {name: importlib.import_module(name) for name in TARGETS}


if __name__ == "__main__":
    import json

    installed = ensure_sglang()
    mods = import_targets()
    report = {
        "python": sys.version.split()[0],
        "sglang_site": str(SITE),
        "modules": {k: getattr(m, "__file__", None) for k, m in mods.items()},
        "invoke_fused_moe_kernel": hasattr(mods[TARGETS[0]], "invoke_fused_moe_kernel"),
        **installed,
    }
    print(json.dumps(report, indent=1))
