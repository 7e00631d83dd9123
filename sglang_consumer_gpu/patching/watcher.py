"""Post-import hooks: apply a patch the moment its target module has loaded.

A patch applied right after ``fused_moe_triton_config`` executes is in place
before ``fused_moe.py`` runs ``from .fused_moe_triton_config import ...``, so
the reference SGLang copies is already the patched one. That is what lets the
plugin cover code that imports kernels before SGLang's ``load_plugins()``.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from importlib.machinery import ModuleSpec
from types import ModuleType

Hook = Callable[[ModuleType], None]

logger = logging.getLogger("sglang_consumer_gpu")


def _run(hook: Hook, module: ModuleType) -> None:
    """A hook runs inside SGLang's import: whatever it does, the import goes on."""
    try:
        hook(module)
    except Exception as exc:
        logger.warning(
            "sglang-consumer-gpu: post-import hook for %s raised %s: %s; SGLang's module is unchanged",
            module.__name__,
            type(exc).__name__,
            exc,
        )


class PostImportFinder:
    """Finds nothing itself; wraps the loader of watched modules so hooks run
    after the module body has executed."""

    def __init__(self) -> None:
        self.hooks: dict[str, list[Hook]] = {}
        self._local = threading.local()

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if fullname not in self.hooks:
            return None
        busy: set[str] = self._local.__dict__.setdefault("busy", set())
        if fullname in busy:
            return None
        busy.add(fullname)
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original_exec = loader.exec_module
        hooks = self.hooks

        def exec_module(module: ModuleType) -> None:
            original_exec(module)
            for hook in list(hooks.get(fullname, ())):
                _run(hook, module)

        # Per-spec loader instances (SourceFileLoader, ExtensionFileLoader) let us
        # override on the instance and keep the loader's type for isinstance users.
        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_finder = PostImportFinder()


_keys: set[tuple[str, str]] = set()


def watch(module_name: str, hook: Hook, key: str | None = None) -> None:
    """Run ``hook(module)`` when ``module_name`` is imported (now, if it already is).
    A second ``watch`` with the same ``key`` for the same module is a no-op, so
    activating twice (import watcher, then entry point) never doubles a hook."""
    if key is not None:
        if (module_name, key) in _keys:
            return
        _keys.add((module_name, key))
    if hook not in _finder.hooks.setdefault(module_name, []):
        _finder.hooks[module_name].append(hook)
    if not any(f is _finder for f in sys.meta_path):
        sys.meta_path.insert(0, _finder)
    module = sys.modules.get(module_name)
    if module is not None:
        _run(hook, module)


def installed() -> bool:
    return any(f is _finder for f in sys.meta_path)
