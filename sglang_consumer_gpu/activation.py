"""The two activation paths and the switch that turns both off.

* ``import-watcher``: ``sglang_consumer_gpu.pth`` fires on the first
  ``import sglang`` in any interpreter (spawned scheduler processes included)
  and arms post-import hooks, so each patch lands as its target module loads.
* ``entry-point``: SGLang's ``load_plugins()`` runs :func:`entry_point` from the
  ``sglang.srt.plugins`` group in its engine, scheduler and detokenizer
  processes; it applies whatever is loaded by then and logs the summary.

Both are idempotent: a patch that is already installed is recognised by the
marker on its replacement and not wrapped twice.
"""

from __future__ import annotations

import logging
import threading

from sglang_consumer_gpu import settings

logger = logging.getLogger("sglang_consumer_gpu")

_lock = threading.Lock()
_paths: list[str] = []
_registered = False


def active_paths() -> list[str]:
    """Activation paths that ran in this process, in order."""
    return list(_paths)


def _register_builtins() -> None:
    global _registered
    if _registered:
        return
    from sglang_consumer_gpu.patches import registry
    from sglang_consumer_gpu.patches.catalog import builtin_patches

    for patch in builtin_patches():
        registry.register(patch)
    _registered = True


def activate(path: str = "api") -> None:
    """Arm every patch: apply those whose target is loaded, hook the rest. Never raises."""
    try:
        with _lock:
            if path not in _paths:
                _paths.append(path)
            _register_builtins()
            from sglang_consumer_gpu.patches import registry, watcher

            if not settings.plugin_enabled():
                registry.apply_loaded(disabled_reason=f"{settings.OFF_SWITCH}=0")
                return
            for patch in registry.patches():
                watcher.watch(patch.module, lambda module, p=patch: _on_import(p, module))
    except Exception as exc:
        logger.warning("sglang-consumer-gpu: activation via %s failed, SGLang runs unpatched: %s", path, exc)


def _on_import(patch: object, module: object) -> None:
    from sglang_consumer_gpu.patches import registry

    current = registry.results().get(patch.name)  # type: ignore[attr-defined]
    if current is not None and current.status is registry.Status.APPLIED:
        return
    registry.apply_patch(patch, module)  # type: ignore[arg-type]


def entry_point() -> None:
    """Called by SGLang's ``load_plugins()`` (``sglang.srt.plugins`` group)."""
    if not settings.plugin_enabled():
        logger.info("sglang-consumer-gpu: disabled by %s=0; SGLang runs unpatched", settings.OFF_SWITCH)
        return
    activate(path="entry-point")
    from sglang_consumer_gpu.hardware import current_spec
    from sglang_consumer_gpu.patches import registry

    spec = current_spec()
    gpu = f"{spec.name} ({spec.arch_name}, {spec.smem_per_block_optin} B smem/block)" if spec else "no GPU"
    logger.info("sglang-consumer-gpu active (%s) for %s: %s", "+".join(_paths), gpu, registry.summary())
