"""Dry-run a launcher: every ``kernel[grid](...)`` compiles for a spec and is recorded.

SGLang's launchers build a kernel's arguments (dtypes, strides, constexprs,
``num_warps``/``num_stages``) and then call ``kernel[grid](...)``. Inside
:func:`capture_launches`, Triton's ``JITFunction.run`` is wrapped so the call
compiles for the spec's architecture (under :func:`~.target.compile_only`) with
``warmup=True`` -- nothing is launched -- and the compiled kernel's resources
are recorded as a :class:`KernelLaunch`. Calling the launcher with ``meta`` tensors
therefore yields exactly the kernels SGLang would compile on that GPU.

Results are cached on disk (:mod:`.cache`) under a key computed from Triton's
own binder output (argument specialisation and options) and the kernel's
source hash; a hit skips the compile. If Triton's internals differ from what
the key computation expects, it compiles without the cache.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.oracle.cache import CompileCache, cache_key, default_cache
from sglang_consumer_gpu.oracle.target import Resources, compile_only

logger = logging.getLogger(__name__)
_lock = threading.RLock()


@dataclass(frozen=True)
class KernelLaunch:
    """One ``kernel[grid](...)`` call a launcher made, and what it compiled to."""

    kernel: str
    grid: Any
    constexprs: dict[str, Any]
    resources: Resources
    cached: bool = False
    key: str | None = field(default=None, compare=False)


def _kernel_key(jit: Any, spec: GpuSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The cache key for this call, from the same binder Triton's ``run`` uses."""
    try:
        import triton
        from triton import knobs
        from triton.runtime.driver import driver

        kw = dict(kwargs)
        kw["debug"] = kw.get("debug", jit.debug) or knobs.runtime.debug
        kw["instrumentation_mode"] = knobs.compilation.instrumentation_mode
        device = driver.active.get_current_device()
        binder = jit.device_caches[device][-1]
        _bound, specialization, options = binder(*args, **kw)
        return cache_key(
            kernel=f"{jit.module}:{jit.fn.__qualname__}",
            source=jit.cache_key,
            triton=triton.__version__,
            target=f"cuda:{spec.arch}:32",
            specialization=[str(s) for s in specialization],
            options=str(options),
        )
    except Exception as exc:  # Triton internals moved: compile without the cache
        logger.debug("oracle cache key unavailable (%s: %s); compiling", type(exc).__name__, exc)
        return None


def _constexprs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k.isupper() or k in ("num_warps", "num_stages")}


@contextlib.contextmanager
def capture_launches(spec: GpuSpec, *, cache: CompileCache | bool | None = True) -> Iterator[list[KernelLaunch]]:
    """Inside the block, Triton kernel launches compile for ``spec`` and are
    appended to the yielded list instead of running.

    ``cache``: True for the default on-disk cache, False/None for none, or a
    :class:`CompileCache`.
    """
    from triton.runtime.jit import JITFunction

    store = default_cache() if cache is True else (cache or None)
    launches: list[KernelLaunch] = []

    with _lock, compile_only(spec):
        original_run = JITFunction.run

        def run(self: Any, *args: Any, grid: Any, warmup: bool, **kwargs: Any) -> Any:
            name = self.fn.__name__
            key = _kernel_key(self, spec, args, kwargs) if store is not None else None
            entry = store.get(key) if key is not None and store is not None else None
            if entry is not None and entry.get("kernel") == name:
                md = SimpleNamespace(
                    shared=entry["shared"], num_warps=entry["num_warps"], num_stages=entry["num_stages"]
                )
                kernel: Any = SimpleNamespace(metadata=md, cached=True)
                cached = True
            else:
                kernel = original_run(self, *args, grid=grid, warmup=True, **kwargs)
                md = kernel.metadata
                cached = False
                if key is not None and store is not None:
                    store.put(
                        key,
                        {
                            "kernel": name,
                            "shared": int(md.shared),
                            "num_warps": int(md.num_warps),
                            "num_stages": int(md.num_stages),
                            "target": spec.arch_name,
                        },
                    )
            launches.append(
                KernelLaunch(
                    kernel=name,
                    grid=grid,
                    constexprs=_constexprs(kwargs),
                    resources=Resources(
                        kernel=name,
                        target=spec.arch_name,
                        shared=int(md.shared),
                        limit=spec.smem_per_block_optin,
                        num_warps=int(md.num_warps),
                        num_stages=int(md.num_stages),
                    ),
                    cached=cached,
                    key=key,
                )
            )
            return kernel

        JITFunction.run = run
        try:
            yield launches
        finally:
            JITFunction.run = original_run
