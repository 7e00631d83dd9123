"""Compile one Triton kernel for a GPU that is not present and read its resource use.

The oracle's public face for a single kernel: :func:`compile_resources`, and
the :class:`~.target.Resources` / :func:`~.target.compile_only` it is built on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.oracle.capture import capture_launches
from sglang_consumer_gpu.oracle.target import Resources, compile_only

__all__ = ["Resources", "compile_only", "compile_resources"]


def unwrap_jit(kernel: Any) -> Any:
    """The JITFunction behind an Autotuner/Heuristics wrapper."""
    while not hasattr(kernel, "warmup") or type(kernel).__name__ in ("Autotuner", "Heuristics"):
        inner = getattr(kernel, "fn", None)
        if inner is None:
            break
        kernel = inner
    return kernel


def compile_resources(
    spec: GpuSpec,
    kernel: Any,
    args: tuple[Any, ...] | list[Any],
    grid: tuple[int, ...] | Callable[..., Any] = (1,),
    **kwargs: Any,
) -> Resources:
    """Compile ``kernel(*args, **kwargs)`` for ``spec`` and return its resources.

    ``args`` are what the launcher would pass: tensors (``meta`` tensors work;
    their zero data pointer specialises as 16-byte aligned, as real allocations
    are), ints, floats, None; constexprs and ``num_warps``/``num_stages`` go in
    ``kwargs``. Results come from (and go to) the on-disk cache, as every
    capture does.
    """
    jit = unwrap_jit(kernel)
    with capture_launches(spec) as launches:
        jit.warmup(*args, grid=grid, **kwargs)
    return launches[-1].resources
