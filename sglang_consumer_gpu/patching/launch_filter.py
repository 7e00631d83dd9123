"""A launch filter: see, and if needed change, one Triton launch SGLang makes.

Some launchers compute their tile as a local constant (nothing to patch), so
the attention patches wrap the module's ``@triton.jit`` kernel object for the
duration of one call. ``kernel[grid](*args, **kwargs)`` on the wrapper calls
``filter(grid, args, kwargs) -> (grid, kwargs)`` and launches the real kernel
with the result. Every other attribute is the real kernel's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

Filter = Callable[[Any, tuple[Any, ...], dict[str, Any]], tuple[Any, dict[str, Any]]]


class LaunchFilter:
    """Stands in for a JITFunction inside one launcher call."""

    def __init__(self, kernel: Any, filt: Filter) -> None:
        self._kernel = kernel
        self._filter = filt

    def __getitem__(self, grid: Any) -> Callable[..., Any]:
        def launch(*args: Any, **kwargs: Any) -> Any:
            new_grid, new_kwargs = self._filter(grid, args, kwargs)
            return self._kernel[new_grid](*args, **new_kwargs)

        return launch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kernel, name)


@contextlib.contextmanager
def swap_kernel(module: ModuleType, name: str, replacement: Any) -> Iterator[None]:
    """Point ``module.name`` at ``replacement`` inside the block (callers hold a lock)."""
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


def dtype_bytes(tensor: Any) -> int:
    """Element size of a torch tensor's dtype (meta tensors included)."""
    return int(tensor.element_size())
