"""Post-import hooks that make Triton, torch and SGLang see the emulated GPU.

Installed by ``_pth.py`` at interpreter start only when an emulation is asked for;
nothing here imports torch or Triton itself: each hook runs when the program
imports its target.

Limit only (``SGLANG_CONSUMER_GPU_EMULATE_SMEM``):

* ``triton.backends.nvidia.driver``: ``CudaUtils.__init__`` binds the compiled C
  function ``get_device_properties`` on the (singleton) instance; the hook wraps
  ``__init__`` so that binding is replaced by one that lowers ``max_shared_mem``
  to the cap. Triton's launch check (``CompiledKernel._init_handles``:
  ``metadata.shared > max_shared_mem`` -> ``OutOfResources``) sees the cap.
* ``torch.cuda``: ``get_device_properties`` returns a proxy whose
  ``shared_memory_per_block_optin`` is capped; every other attribute is the real one.

Arch-faithful (``SGLANG_CONSUMER_GPU_EMULATE_GPU``), in addition:

* ``TRITON_OVERRIDE_ARCH`` names the target, so Triton's passes generate its code
  (an explicit value the user set wins, with a warning);
* ``triton.compiler.compiler``: ``CompiledKernel._init_handles`` checks the limit
  with the kernel's own shared memory (so ``OutOfResources`` carries the same
  ``Required`` a real card reports), then loads and launches it with the padded
  size of :meth:`~sglang_consumer_gpu.hardware.emulated.ArchEmulation.padded_shared`:
  the host keeps no more blocks per SM than the target;
* ``CudaUtils``: ``multiprocessor_count`` is the target's; ``load_binary`` takes the
  padded size (and at least 48 KB + 1, so Triton's loader prefers shared memory
  in the SM's carveout, as it does for large kernels on the real card);
* ``torch.cuda.get_device_properties``: the target's name, capability, SM count
  and per-SM limits; ``get_device_name`` and ``get_device_capability`` read it;
* Triton's ``CudaDriver`` keeps asking torch for the REAL capability: it compiles
  cubins for that, and a cubin built for the target would not load here;
* ``sglang.srt.utils.common._get_device_sm_via_nvml`` answers the target's SM
  version (NVML would describe the host);
* CUDA code built for the GPU it runs on keeps seeing the host (:data:`HOST_CAPABILITY`):
  sgl-kernel chooses its library by capability, SGLang's JIT kernels and FlashInfer
  compile for it, and a binary for the target would not load here.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from sglang_consumer_gpu.emulation import capped, smem_cap
from sglang_consumer_gpu.emulation.triton_driver import OVERRIDE_ARCH
from sglang_consumer_gpu.hardware.emulated import ArchEmulation
from sglang_consumer_gpu.hardware.spec import SM_RESOURCES_BY_ARCH
from sglang_consumer_gpu.patching.sglang_device import SGL_KERNEL_LOADER, SGLANG_COMMON, SGLANG_JIT_ARCH

logger = logging.getLogger("sglang_consumer_gpu.emulation")

TRITON_DRIVER = "triton.backends.nvidia.driver"
TRITON_COMPILER = "triton.compiler.compiler"
TORCH_CUDA = "torch.cuda"
#: Attribute set on every wrapper, so nothing is wrapped twice.
MARKER = "__sglang_consumer_gpu_smem_cap__"
#: Readers of the capability that choose or build CUDA binaries: module -> the function that answers
#: them, patched to answer the host's capability (sgl-kernel's library choice, SGLang's JIT ``-arch``).
HOST_CAPABILITY: dict[str, str] = {
    SGL_KERNEL_LOADER: "_get_compute_capability",
    SGLANG_JIT_ARCH: "_init_jit_cuda_arch_once",
}
#: FlashInfer's JIT targets these architectures when the variable is set (else it asks torch).
FLASHINFER_ARCHS = "FLASHINFER_CUDA_ARCH_LIST"
#: Triton's loader sets the "prefer shared memory" carveout only for kernels above 48 KB.
_PREFER_SHARED = 48 * 1024 + 1

_pending = threading.local()  # the padded size load_binary is to use, set by _init_handles


class EmulatedDeviceProperties:
    """``torch.cuda.get_device_properties()``'s result with the opt-in shared memory per
    block capped and, for an arch-faithful emulation, the target's identity and per-SM
    limits; reads of any other attribute go to the real object."""

    __slots__ = ("_cap", "_emulation", "_props")

    def __init__(self, props: Any, cap: int, emulation: ArchEmulation | None = None) -> None:
        object.__setattr__(self, "_props", props)
        object.__setattr__(self, "_cap", cap)
        object.__setattr__(self, "_emulation", emulation)

    @property
    def shared_memory_per_block_optin(self) -> int:
        return capped(self._props.shared_memory_per_block_optin, self._cap)

    def _target(self, name: str) -> Any:
        emu = self._emulation
        if emu is None:
            return getattr(self._props, name)
        t, r = emu.target, emu.target.sm_resources
        return {
            "name": t.name,
            "major": t.capability[0],
            "minor": t.capability[1],
            "multi_processor_count": emu.sm_count,
            "shared_memory_per_multiprocessor": r.shared_per_sm if r else self._props.shared_memory_per_multiprocessor,
            "max_threads_per_multi_processor": 32 * r.max_warps if r else self._props.max_threads_per_multi_processor,
        }[name]

    name = property(lambda self: self._target("name"))
    major = property(lambda self: self._target("major"))
    minor = property(lambda self: self._target("minor"))
    multi_processor_count = property(lambda self: self._target("multi_processor_count"))
    shared_memory_per_multiprocessor = property(lambda self: self._target("shared_memory_per_multiprocessor"))
    max_threads_per_multi_processor = property(lambda self: self._target("max_threads_per_multi_processor"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._props, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._props)) | {"shared_memory_per_block_optin"})

    def __repr__(self) -> str:
        what = f"{self.name}, sm_{self.major}{self.minor} emulated" if self._emulation else "emulated"
        return f"{self._props!r} [shared_memory_per_block_optin={self.shared_memory_per_block_optin} {what}]"


#: The name the limit-only mode's tests and callers know.
CappedDeviceProperties = EmulatedDeviceProperties


def _cap_triton_props(
    fn: Callable[[int], dict[str, Any]], cap: int, sm_count: int | None = None
) -> Callable[[int], dict[str, Any]]:
    if getattr(fn, MARKER, None) is not None:
        return fn

    def get_device_properties(device: int) -> dict[str, Any]:
        props = fn(device)
        real = props.get("max_shared_mem")
        if isinstance(real, int) and real > cap:
            props = {**props, "max_shared_mem": cap}
        if sm_count is not None and isinstance(props.get("multiprocessor_count"), int):
            props = {**props, "multiprocessor_count": min(sm_count, props["multiprocessor_count"])}
        return props

    setattr(get_device_properties, MARKER, cap)
    return get_device_properties


def _padded_load_binary(fn: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(fn, MARKER, None) is not None:
        return fn

    def load_binary(name: str, kernel: bytes, shared: int, device: int) -> Any:
        padded = getattr(_pending, "shared", None)
        return fn(name, kernel, shared if padded is None else max(shared, padded, _PREFER_SHARED), device)

    setattr(load_binary, MARKER, True)
    return load_binary


def _utils_hooks(instance: Any, cap: int, emulation: ArchEmulation | None) -> None:
    sm_count = emulation.sm_count if emulation else None
    instance.get_device_properties = _cap_triton_props(instance.get_device_properties, cap, sm_count)
    if emulation is not None and hasattr(instance, "load_binary"):
        instance.load_binary = _padded_load_binary(instance.load_binary)


def _real_capability(device: Any = None) -> tuple[int, int]:
    import torch

    props = inspect.unwrap(torch.cuda.get_device_properties)(device)
    return props.major, props.minor


def patch_triton_driver(module: ModuleType, cap: int, emulation: ArchEmulation | None = None) -> bool:
    """Wrap ``module.CudaUtils`` (and an instance made before the hook) and, for an arch-faithful
    emulation, ``module.CudaDriver``; False if the layout is unknown."""
    cls = getattr(module, "CudaUtils", None)
    if cls is None:
        return False
    original = cls.__init__
    if getattr(original, MARKER, None) is None:

        @functools.wraps(original)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            _utils_hooks(self, cap, emulation)

        setattr(__init__, MARKER, cap)
        cls.__init__ = __init__
    instance = cls.__dict__.get("instance")
    if instance is not None and hasattr(instance, "get_device_properties"):
        _utils_hooks(instance, cap, emulation)
    if emulation is None:
        return True
    drv = getattr(module, "CudaDriver", None)
    if drv is None:
        return False
    original_drv = drv.__init__
    if getattr(original_drv, MARKER, None) is None:

        @functools.wraps(original_drv)
        def driver_init(self: Any, *args: Any, **kwargs: Any) -> None:
            original_drv(self, *args, **kwargs)
            self.get_device_capability = _real_capability

        setattr(driver_init, MARKER, cap)
        drv.__init__ = driver_init
    return True


def patch_compiled_kernel(module: ModuleType, emulation: ArchEmulation) -> bool:
    """Pad ``CompiledKernel`` launches to the target's residency; False if the layout is unknown."""
    cls = getattr(module, "CompiledKernel", None)
    make_backend = getattr(module, "make_backend", None)
    original = getattr(cls, "_init_handles", None)
    if original is None or make_backend is None:
        return False
    if getattr(original, MARKER, None) is not None:
        return True

    @functools.wraps(original)
    def _init_handles(self: Any) -> None:
        if self.module is not None:
            return
        meta = self.metadata
        host = SM_RESOURCES_BY_ARCH.get(divmod(meta.target.arch, 10))
        padded = emulation.padded_shared(meta.shared, meta.num_warps, host)
        if padded == meta.shared:
            original(self)
            return
        _pending.shared = padded
        try:
            original(self)  # checks the limit with meta.shared, loads through _padded_load_binary
        finally:
            _pending.shared = None
        self.packed_metadata = make_backend(meta.target).pack_metadata(meta._replace(shared=padded))

    setattr(_init_handles, MARKER, True)
    cls._init_handles = _init_handles
    return True


def patch_torch_cuda(module: ModuleType, cap: int, emulation: ArchEmulation | None = None) -> bool:
    """Make ``module.get_device_properties`` return :class:`EmulatedDeviceProperties`
    (``get_device_name`` and ``get_device_capability`` read it)."""
    original = getattr(module, "get_device_properties", None)
    if original is None:
        return False
    if getattr(original, MARKER, None) is not None:
        return True

    @functools.wraps(original)
    def get_device_properties(*args: Any, **kwargs: Any) -> EmulatedDeviceProperties:
        return EmulatedDeviceProperties(original(*args, **kwargs), cap, emulation)

    setattr(get_device_properties, MARKER, cap)
    module.get_device_properties = get_device_properties
    return True


def patch_sglang_nvml(module: ModuleType, emulation: ArchEmulation) -> bool:
    """SGLang asks NVML for the SM version while torch.cuda is uninitialised; answer the target's."""
    if not hasattr(module, "_get_device_sm_via_nvml"):
        return False
    module._get_device_sm_via_nvml = lambda: emulation.target.arch
    return True


def patch_host_capability(module: ModuleType, emulation: ArchEmulation) -> bool:
    """Make a :data:`HOST_CAPABILITY` reader answer the host's capability; False if it is not there."""
    attr = HOST_CAPABILITY.get(module.__name__)
    if attr is None or not hasattr(module, attr):
        return False
    major, minor = emulation.host.capability
    if attr == "_get_compute_capability":
        module._get_compute_capability = lambda: major * 10 + minor
        return True
    make = getattr(module, "make_jit_cuda_arch", None)
    if make is None:
        return False

    def _init_jit_cuda_arch_once() -> None:
        module._CUDA_ARCH = make(major, minor)

    module._init_jit_cuda_arch_once = _init_jit_cuda_arch_once
    return True


def _warn_unknown(target: str) -> None:
    logger.warning(
        "sglang-consumer-gpu: %s has no layout the emulation knows; it reports the real GPU",
        target,
    )


def _override_arch(emulation: ArchEmulation) -> None:
    want = emulation.override_arch
    have = os.environ.get(OVERRIDE_ARCH)
    if have is None:
        os.environ[OVERRIDE_ARCH] = want
    elif have != want:
        logger.warning(
            "sglang-consumer-gpu: %s=%s (set by you) wins over the emulated %s; Triton generates %s code",
            OVERRIDE_ARCH,
            have,
            want,
            have,
        )


def install() -> int | ArchEmulation | None:
    """Arm the hooks the environment asks for (now, for a target already imported): the
    arch-faithful emulation, else the limit; returns what is emulated, or None."""
    from sglang_consumer_gpu import settings
    from sglang_consumer_gpu.patching import watcher

    emulation = None
    if settings.emulated_gpu_name() is not None:
        from sglang_consumer_gpu.hardware.current import active_emulation

        emulation = active_emulation()
        if emulation is None:
            return None  # active_emulation said why
        cap: int | None = emulation.target.smem_per_block_optin
        _override_arch(emulation)
    else:
        cap = smem_cap()
    if cap is None:
        return None

    def hook(target: str, patch: Callable[[ModuleType], bool]) -> None:
        watcher.watch(target, lambda module: patch(module) or _warn_unknown(target))

    hook(TRITON_DRIVER, lambda m: patch_triton_driver(m, cap, emulation))
    hook(TORCH_CUDA, lambda m: patch_torch_cuda(m, cap, emulation))
    if emulation is not None:
        hook(TRITON_COMPILER, lambda m: patch_compiled_kernel(m, emulation))
        watcher.watch(SGLANG_COMMON, lambda m: patch_sglang_nvml(m, emulation))
        for module in HOST_CAPABILITY:
            watcher.watch(module, lambda m: patch_host_capability(m, emulation) or _warn_unknown(m.__name__))
        os.environ.setdefault(FLASHINFER_ARCHS, "{}.{}".format(*emulation.host.capability))
        return emulation
    return cap


def hooks_installed() -> dict[str, bool]:
    """Which targets already carry the emulation in this process (for tests and ``doctor``-style reports)."""
    import sys

    def marked(module: str, *path: str) -> bool:
        obj: Any = sys.modules.get(module)
        for name in path:
            obj = getattr(obj, name, None)
        return obj is not None and getattr(obj, MARKER, None) is not None

    return {
        TRITON_DRIVER: marked(TRITON_DRIVER, "CudaUtils", "__init__"),
        TORCH_CUDA: marked(TORCH_CUDA, "get_device_properties"),
        TRITON_COMPILER: marked(TRITON_COMPILER, "CompiledKernel", "_init_handles"),
    }
