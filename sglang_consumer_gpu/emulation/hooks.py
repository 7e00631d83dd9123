"""Post-import hooks that make Triton and torch report the emulated shared-memory cap.

Installed by ``_pth.py`` at interpreter start only when
``SGLANG_CONSUMER_GPU_EMULATE_SMEM`` holds a valid cap; nothing here imports
torch or Triton itself: each hook runs when the program imports its target.

* ``triton.backends.nvidia.driver``: ``CudaUtils.__init__`` binds the compiled
  C function ``get_device_properties`` on the (singleton) instance; the hook
  wraps ``__init__`` so that binding is replaced by one that lowers
  ``max_shared_mem`` to the cap. Triton's launch check
  (``CompiledKernel._init_handles``: ``metadata.shared > max_shared_mem`` ->
  ``OutOfResources``) and every other reader see the cap.
* ``torch.cuda``: ``get_device_properties`` returns a proxy whose
  ``shared_memory_per_block_optin`` is capped; every other attribute is the
  real one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

from sglang_consumer_gpu.emulation import capped, smem_cap

TRITON_DRIVER = "triton.backends.nvidia.driver"
TORCH_CUDA = "torch.cuda"
#: Attribute set on every wrapper, so nothing is wrapped twice.
MARKER = "__sglang_consumer_gpu_smem_cap__"


class CappedDeviceProperties:
    """``torch.cuda.get_device_properties()``'s result with the opt-in shared
    memory per block capped; reads of any other attribute go to the real object."""

    __slots__ = ("_cap", "_props")

    def __init__(self, props: Any, cap: int) -> None:
        object.__setattr__(self, "_props", props)
        object.__setattr__(self, "_cap", cap)

    @property
    def shared_memory_per_block_optin(self) -> int:
        return capped(self._props.shared_memory_per_block_optin, self._cap)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._props, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._props)) | {"shared_memory_per_block_optin"})

    def __repr__(self) -> str:
        return f"{self._props!r} [shared_memory_per_block_optin={self.shared_memory_per_block_optin} emulated]"


def _cap_triton_props(fn: Callable[[int], dict[str, Any]], cap: int) -> Callable[[int], dict[str, Any]]:
    if getattr(fn, MARKER, None) is not None:
        return fn

    def get_device_properties(device: int) -> dict[str, Any]:
        props = fn(device)
        real = props.get("max_shared_mem")
        if isinstance(real, int) and real > cap:
            props = {**props, "max_shared_mem": cap}
        return props

    setattr(get_device_properties, MARKER, cap)
    return get_device_properties


def patch_triton_driver(module: ModuleType, cap: int) -> bool:
    """Wrap ``module.CudaUtils`` (and an instance made before the hook); False if the layout is unknown."""
    cls = getattr(module, "CudaUtils", None)
    if cls is None:
        return False
    original = cls.__init__
    if getattr(original, MARKER, None) is None:

        @functools.wraps(original)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            self.get_device_properties = _cap_triton_props(self.get_device_properties, cap)

        setattr(__init__, MARKER, cap)
        cls.__init__ = __init__
    instance = cls.__dict__.get("instance")
    if instance is not None and hasattr(instance, "get_device_properties"):
        instance.get_device_properties = _cap_triton_props(instance.get_device_properties, cap)
    return True


def patch_torch_cuda(module: ModuleType, cap: int) -> bool:
    """Make ``module.get_device_properties`` return :class:`CappedDeviceProperties`."""
    original = getattr(module, "get_device_properties", None)
    if original is None:
        return False
    if getattr(original, MARKER, None) is not None:
        return True

    @functools.wraps(original)
    def get_device_properties(*args: Any, **kwargs: Any) -> CappedDeviceProperties:
        return CappedDeviceProperties(original(*args, **kwargs), cap)

    setattr(get_device_properties, MARKER, cap)
    module.get_device_properties = get_device_properties
    return True


def _warn_unknown(target: str) -> None:
    import logging

    logging.getLogger("sglang_consumer_gpu.emulation").warning(
        "sglang-consumer-gpu: %s has no layout the shared-memory emulation knows; it reports the real limit",
        target,
    )


def install() -> int | None:
    """Arm both hooks (now, for a target already imported); returns the cap, or None when unset/invalid."""
    cap = smem_cap()
    if cap is None:
        return None
    from sglang_consumer_gpu.patching import watcher

    def on_triton(module: ModuleType) -> None:
        if not patch_triton_driver(module, cap):
            _warn_unknown(TRITON_DRIVER + ".CudaUtils")

    def on_torch(module: ModuleType) -> None:
        if not patch_torch_cuda(module, cap):
            _warn_unknown(TORCH_CUDA + ".get_device_properties")

    watcher.watch(TRITON_DRIVER, on_triton)
    watcher.watch(TORCH_CUDA, on_torch)
    return cap


def hooks_installed() -> dict[str, bool]:
    """Which targets already carry the cap in this process (for tests and ``doctor``-style reports)."""
    import sys

    out = {}
    drv = sys.modules.get(TRITON_DRIVER)
    cls = getattr(drv, "CudaUtils", None) if drv is not None else None
    out[TRITON_DRIVER] = cls is not None and getattr(cls.__init__, MARKER, None) is not None
    cuda = sys.modules.get(TORCH_CUDA)
    fn = getattr(cuda, "get_device_properties", None) if cuda is not None else None
    out[TORCH_CUDA] = fn is not None and getattr(fn, MARKER, None) is not None
    return out
