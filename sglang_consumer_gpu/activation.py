"""The two activation paths and the switch that turns both off.

* ``import-watcher``: ``sglang_consumer_gpu.pth`` fires on the first
  ``import sglang`` in any interpreter (spawned scheduler processes included)
  and arms post-import hooks, so each patch lands as its target module loads.
* ``entry-point``: SGLang's ``load_plugins()`` runs :func:`entry_point` from the
  ``sglang.srt.plugins`` group (SGLang 0.5.11+) in its engine, scheduler and
  detokenizer processes; it applies whatever is loaded by then and logs the summary.

Both are idempotent: a patch that is already installed is recognised by the
marker on its replacement and not wrapped twice, and a module is watched once
per patch however often activation runs.

What the user must hear about is said once per launch, not once per process:
an SGLang release outside the covered range, or an unrecognised value of the
off switch. The first process that says it sets :data:`_TOLD` in its
environment, which SGLang's spawned workers inherit.
"""

from __future__ import annotations

import logging
import os
import threading

from sglang_consumer_gpu import settings

logger = logging.getLogger("sglang_consumer_gpu")

_lock = threading.Lock()
_paths: list[str] = []
_registered = False
#: Environment variable listing the warnings already given in this launch (inherited by workers).
_TOLD = "SGLANG_CONSUMER_GPU_WARNED"


def active_paths() -> list[str]:
    """Activation paths that ran in this process, in order."""
    return list(_paths)


def register_builtins() -> None:
    """Register the built-in (and extra) patches once per process."""
    global _registered
    if _registered:
        return
    from sglang_consumer_gpu.patching import registry
    from sglang_consumer_gpu.patching.catalog import builtin_patches

    for patch in builtin_patches():
        registry.register(patch)
    _registered = True


def warn_once(topic: str, message: str) -> None:
    """Log ``message`` as a WARNING unless this launch already did (see module doc)."""
    told = set(filter(None, os.environ.get(_TOLD, "").split(",")))
    if topic in told:
        return
    os.environ[_TOLD] = ",".join(sorted(told | {topic}))
    logger.warning("sglang-consumer-gpu: %s", message)


def _check_switch() -> bool:
    """Whether the plugin is on; warns once about a value it does not recognise."""
    sw = settings.switch()
    if not sw.recognised:
        warn_once("switch", sw.warning())
    return sw.enabled


def activate(path: str = "api") -> None:
    """Arm every patch: apply those whose target is loaded, hook the rest. Never raises."""
    try:
        with _lock:
            if path not in _paths:
                _paths.append(path)
            register_builtins()
            from sglang_consumer_gpu.patching import registry, watcher
            from sglang_consumer_gpu.versions import coverage

            if not _check_switch():
                registry.apply_loaded(disabled_reason=f"disabled by {settings.switch().describe()}")
                return
            cov = coverage()
            armed = registry.patches()
            if not cov.covered:
                warn_once(
                    "coverage",
                    f"{cov.message}. What to do: {cov.advice}. The shared-memory safety net stays on "
                    "(it patches Triton, not SGLang).",
                )
                for patch in armed:
                    if not patch.triton_only:
                        registry.apply_patch(patch)  # records "version not covered"; imports nothing
                armed = [p for p in armed if p.triton_only]
            for patch in armed:
                seam = patch.current_seam()
                if seam is None:
                    registry.apply_patch(patch)  # records "version not covered" with the patch's range
                    continue
                watcher.watch(seam.module, lambda module, p=patch: _on_import(p, module), key=patch.name)
    except Exception as exc:
        logger.warning("sglang-consumer-gpu: activation via %s failed, SGLang runs unpatched: %s", path, exc)


def _on_import(patch: object, module: object) -> None:
    from sglang_consumer_gpu.patching import registry

    current = registry.results().get(patch.name)  # type: ignore[attr-defined]
    if current is not None and current.status is registry.Status.APPLIED:
        return
    registry.apply_patch(patch, module)  # type: ignore[arg-type]


def entry_point() -> None:
    """Called by SGLang's ``load_plugins()`` (``sglang.srt.plugins`` group)."""
    try:
        if not _check_switch():
            logger.info(
                "sglang-consumer-gpu: disabled by %s; SGLang runs unpatched", settings.switch().describe()
            )
            return
        activate(path="entry-point")
        _announce()
    except Exception as exc:  # load_plugins() must go on with the other plugins
        logger.warning("sglang-consumer-gpu: entry point failed, SGLang runs unpatched: %s", exc)


def _announce() -> None:
    """The INFO summary line. SGLang's scheduler and launcher call ``load_plugins()``
    before they configure logging (0.5.17 and 0.5.23), where an INFO record would be
    dropped; then the line waits for the first call of a patched function, which SGLang
    makes after its logging is set up (model loading, CUDA-graph capture)."""
    from sglang_consumer_gpu.hardware import current_spec
    from sglang_consumer_gpu.patching import registry

    if not logger.hasHandlers():
        registry.at_first_call(_announce)
        return
    spec = current_spec()
    gpu = f"{spec.name} ({spec.arch_name}, {spec.smem_per_block_optin} B smem/block)" if spec else "no GPU"
    logger.info("sglang-consumer-gpu active (%s) for %s: %s", "+".join(_paths), gpu, registry.summary())
