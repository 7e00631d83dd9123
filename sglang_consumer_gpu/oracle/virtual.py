"""A virtual GPU: make SGLang's capability checks answer as a given GpuSpec would.

SGLang picks kernel tiles from what the GPU says about itself: the extend
attention block sizes branch on ``CUDA_CAPABILITY`` (sm_86/sm_89 get smaller
tiles), the fused-MoE fp8 default branches on ``shared_memory_per_block_optin``,
swap-AB and PDL switch on for sm_90. To exercise those branches for an RTX 4090
on a machine without one, :func:`virtual_gpu` makes, for the duration of the
block:

- ``torch.cuda`` answer as the spec would (``is_available``,
  ``get_device_capability``, ``get_device_name``, ``get_device_properties``,
  ``current_device``, ``device_count``), and ``torch.version.cuda`` say a CUDA
  build (SGLang's ``is_cuda()`` checks it);
- SGLang's cached answers be recomputed: every ``functools.lru_cache`` and
  SGLang ``cache_once`` cache in a loaded ``sglang.*`` module is cleared on
  entry and again on exit (so nothing virtual outlives the block), and
  ``get_device_sm``'s NVML shortcut is bypassed (it would read the real GPU);
- SGLang's import-time constants (``_is_cuda``, ``CUDA_CAPABILITY`` in the
  modules listed in :data:`MODULE_CONSTANTS`) hold the spec's values, restored
  (or deleted, when they did not exist) on exit;
- SGLang's registries that CUDA fills at import time (:data:`CUDA_ONLY_REGISTRATIONS`)
  hold those entries;
- SGLang's runtime config (``get_exec()``) answer its declared defaults where
  no server has published one (see :data:`EXEC_READERS`);
- :func:`~sglang_consumer_gpu.hardware.override_spec` answer the spec, and the
  plugin's patches be re-evaluated for it (``registry.apply_loaded``).

The modules in :data:`PRELOAD` are imported *before* anything is faked, so
their import-time constants are computed for the real machine and only the
listed ones are swapped. A module first imported inside the block would
compute its constants for the virtual GPU and keep them: import SGLang modules
before entering (or add them to ``preload``).

Nothing here launches a kernel; combine with
:func:`~sglang_consumer_gpu.oracle.core.compile_only` to compile.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sglang_consumer_gpu.hardware.current import override_spec
from sglang_consumer_gpu.hardware.spec import GpuSpec

logger = logging.getLogger(__name__)

_lock = threading.RLock()
_MISSING = object()
_LRU_WRAPPER = functools._lru_cache_wrapper

#: What ``torch.version.cuda`` says inside the block on a CPU-only torch
#: (SGLang's ``is_sm90_supported`` wants >= 12.3, Blackwell checks >= 12.8).
VIRTUAL_CUDA_VERSION = "12.9"

#: SGLang modules whose import-time constants describe the GPU, and what they
#: become for a spec. Extend this (module name -> function of the spec) when a
#: new kernel module caches the capability at import.
MODULE_CONSTANTS: dict[str, Callable[[GpuSpec], dict[str, Any]]] = {
    "sglang.kernels.ops.attention.extend_attention": lambda s: {
        "_is_cuda": True,
        "_is_hip": False,
        "CUDA_CAPABILITY": s.capability,
    },
    "sglang.kernels.ops.attention.prefill_attention": lambda s: {
        "_is_cuda": True,
        "_is_hip": False,
        "CUDA_CAPABILITY": s.capability,
    },
    "sglang.kernels.ops.attention.decode_attention": lambda s: {"_is_hip": False},
    "sglang.kernels.ops.moe.fused_moe_triton_kernels": lambda s: {"_is_cuda": True, "_is_hip": False},
    "sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe_triton_config": lambda s: {"_is_hip": False},
}

#: Functions replaced inside the block: (module, attribute) -> replacement
#: factory. ``get_device_sm`` asks NVML before torch when CUDA is not
#: initialised; NVML would describe the real GPU (or fail), not the spec.
MODULE_FUNCTIONS: dict[tuple[str, str], Callable[[GpuSpec], Callable[..., Any]]] = {
    ("sglang.srt.utils.common", "_get_device_sm_via_nvml"): lambda s: lambda: s.arch,
}

#: Names a module imports only when CUDA is present at import time
#: (``if _is_cuda: from ... import ...``): (module, attribute) -> (source
#: module, name). Inside the block they are bound (if missing) so SGLang's
#: CUDA code path runs; SGLang's JIT ops used here have fake (meta) impls.
CUDA_ONLY_IMPORTS: dict[tuple[str, str], tuple[str, str]] = {
    ("sglang.kernels.ops.quantization.fp8_kernel", "per_token_group_quant"): (
        "sglang.kernels.ops.quantization.per_token_group_quant",
        "per_token_group_quant",
    ),
    ("sglang.kernels.ops.quantization.fp8_kernel", "sgl_per_tensor_quant_fp8"): (
        "sglang.kernels.ops.quantization.per_tensor_quant_fp8",
        "per_tensor_quant_fp8",
    ),
    ("sglang.kernels.ops.quantization.fp8_kernel", "sgl_per_token_quant_fp8"): (
        "sglang.kernels.ops.quantization",
        "sgl_per_token_quant_fp8",
    ),
    ("sglang.kernels.ops.quantization.int8_kernel", "per_token_group_quant"): (
        "sglang.kernels.ops.quantization.per_token_group_quant",
        "per_token_group_quant",
    ),
}

#: Entries a module adds to one of its registries only when CUDA is present at
#: import time (``if is_cuda(): REGISTRY.update(...)``): (module, dict attribute)
#: -> {key: (source module, name)}. Inside the block the missing keys are added
#: (and removed on exit), so SGLang's resolution accepts what it accepts on a GPU
#: (``quant_method: mxfp4`` of gpt-oss checkpoints).
_MXFP4 = {"mxfp4": ("sglang.srt.layers.quantization.mxfp4", "Mxfp4Config")}
CUDA_ONLY_REGISTRATIONS: dict[tuple[str, str], dict[str, tuple[str, str]]] = {
    ("sglang.srt.layers.quantization", "BASE_QUANTIZATION_METHODS"): _MXFP4,
    ("sglang.srt.layers.quantization", "QUANTIZATION_METHODS"): _MXFP4,
}

#: Imported before anything is faked (see the module docstring).
PRELOAD: tuple[str, ...] = (
    "sglang.srt.utils.common",
    "sglang.kernels.jit.utils.arch",
    "sglang.kernels.ops.moe.fused_moe_triton_kernels",
    "sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe_triton_config",
    "sglang.kernels.ops.attention.extend_attention",
    "sglang.kernels.ops.attention.decode_attention",
    "sglang.kernels.ops.attention.prefill_attention",
)


@dataclass(frozen=True)
class VirtualDeviceProperties:
    """What ``torch.cuda.get_device_properties`` returns for a virtual GPU
    (the fields SGLang and Triton read)."""

    name: str
    major: int
    minor: int
    multi_processor_count: int
    total_memory: int
    shared_memory_per_block_optin: int
    shared_memory_per_block: int = 48 * 1024
    warp_size: int = 32
    regs_per_multiprocessor: int = 65536
    max_threads_per_multi_processor: int = 1536
    L2_cache_size: int = 0
    gcnArchName: str = ""
    is_integrated: bool = False
    uuid: str = "virtual"

    @classmethod
    def of(cls, spec: GpuSpec) -> VirtualDeviceProperties:
        return cls(
            name=spec.name,
            major=spec.capability[0],
            minor=spec.capability[1],
            multi_processor_count=spec.sm_count,
            total_memory=spec.memory_bytes,
            shared_memory_per_block_optin=spec.smem_per_block_optin,
        )


def _torch_fakes(spec: GpuSpec) -> dict[str, Any]:
    props = VirtualDeviceProperties.of(spec)
    return {
        "is_available": lambda: True,
        "get_device_capability": lambda device=None: spec.capability,
        "get_device_name": lambda device=None: spec.name,
        "get_device_properties": lambda device=None: props,
        "current_device": lambda: 0,
        "device_count": lambda: 1,
    }


def _cache_once_dict(fn: Any) -> dict[Any, Any] | None:
    """The result dict of an SGLang ``cache_once`` wrapper (kernels/jit/utils/common.py)."""
    code = getattr(fn, "__code__", None)
    if code is None or "result_map" not in code.co_freevars or not fn.__closure__:
        return None
    cell = fn.__closure__[code.co_freevars.index("result_map")]
    value = cell.cell_contents
    return value if isinstance(value, dict) else None


def clear_sglang_caches() -> int:
    """Clear every lru_cache / cache_once cache held by a loaded sglang module,
    so capability answers are recomputed. Returns how many were cleared."""
    seen: set[int] = set()
    cleared = 0
    for name, mod in list(sys.modules.items()):
        if mod is None or not (name == "sglang" or name.startswith("sglang.")):
            continue
        for value in list(getattr(mod, "__dict__", {}).values()):
            # Only plain functions and lru_cache wrappers: other objects (e.g.
            # SGLang's LazyImport) import things when their attributes are read.
            if id(value) in seen or not isinstance(value, (_LRU_WRAPPER, types.FunctionType)):
                continue
            seen.add(id(value))
            if isinstance(value, _LRU_WRAPPER):
                value.cache_clear()
                cleared += 1
                continue
            results = _cache_once_dict(value)
            if results:
                results.clear()
                cleared += 1
    return cleared


def _set_attrs(obj: Any, values: dict[str, Any], saved: list[tuple[Any, str, Any]]) -> None:
    for attr, value in values.items():
        saved.append((obj, attr, obj.__dict__.get(attr, _MISSING) if hasattr(obj, "__dict__") else _MISSING))
        setattr(obj, attr, value)


def _restore(saved: list[tuple[Any, str, Any]]) -> None:
    for obj, attr, old in reversed(saved):
        if old is _MISSING:
            with contextlib.suppress(AttributeError):
                delattr(obj, attr)
        else:
            setattr(obj, attr, old)


#: Modules that read SGLang's runtime config through ``get_exec()`` in code the
#: oracle calls (``get_default_config``, ``get_moe_configs``).
EXEC_READERS: tuple[str, ...] = ("sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe_triton_config",)


def _default_exec() -> Any:
    """SGLang's default ``exec`` config, built from its own field declarations
    (``ExecDeterministic()`` etc.), for code run outside a server, where
    ``get_exec()`` raises "config namespace 'exec' not published"."""
    from types import SimpleNamespace

    try:
        from sglang.srt.arg_groups.fields.exec_ import ExecDeterministic
    except ImportError:  # a trimmed SGLang (the device loader): its declared default
        return SimpleNamespace(deterministic=SimpleNamespace(enable_deterministic_inference=False))
    return SimpleNamespace(deterministic=ExecDeterministic())


def _exec_fallbacks(saved: list[tuple[Any, str, Any]]) -> None:
    for name in EXEC_READERS:
        mod = sys.modules.get(name)
        get_exec = getattr(mod, "get_exec", None)
        if get_exec is None:
            continue
        try:
            get_exec()
        except ValueError:  # not published: no server in this process
            default = _default_exec()
            _set_attrs(mod, {"get_exec": lambda default=default: default}, saved)


def _register_cuda_only(added: list[tuple[dict[str, Any], str]]) -> None:
    """Add the missing :data:`CUDA_ONLY_REGISTRATIONS` entries; ``added`` records them for removal."""
    for (name, registry), entries in CUDA_ONLY_REGISTRATIONS.items():
        table = getattr(sys.modules.get(name), registry, None)
        if not isinstance(table, dict):
            continue
        for key, (source, attr) in entries.items():
            if key in table:
                continue
            try:
                table[key] = getattr(importlib.import_module(source), attr)
            except Exception as exc:  # SGLang without that method: it stays unknown, as on the CPU
                logger.debug("virtual_gpu: cannot register %s[%r]: %s", registry, key, exc)
                continue
            added.append((table, key))


def _preload(modules: Iterable[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an SGLang without that module: nothing to virtualise there
            logger.debug("virtual_gpu: cannot preload %s: %s", name, exc)


def _reapply_patches() -> None:
    from sglang_consumer_gpu import settings
    from sglang_consumer_gpu.patches import registry

    switch = settings.switch()
    registry.apply_loaded(None if switch.enabled else f"disabled by {switch.describe()}", sglang_only=True)


@contextlib.contextmanager
def unpatched() -> Iterator[None]:
    """SGLang's own code inside the block: every plugin patch of SGLang is
    reverted on entry and re-applied (for the modules loaded by then) on exit.
    The Triton-level safety net is process state, not a capability answer:
    it stays as it was (its guard reads the GPU spec at compile time)."""
    from sglang_consumer_gpu.patches import registry

    with _lock:
        registry.revert_all(sglang_only=True)
        try:
            yield
        finally:
            _reapply_patches()


@contextlib.contextmanager
def virtual_gpu(
    spec: GpuSpec, *, preload: Iterable[str] = PRELOAD, patched: bool = True
) -> Iterator[GpuSpec]:
    """Inside the block, SGLang (and the plugin) see ``spec`` as the GPU.

    ``patched=True`` re-evaluates the plugin's patches for ``spec`` on entry
    (what a user with that GPU runs); ``patched=False`` runs SGLang's own code
    (see :func:`unpatched`), for before/after comparisons.
    """
    import torch

    _preload(preload)
    with _lock:
        saved: list[tuple[Any, str, Any]] = []
        registered: list[tuple[dict[str, Any], str]] = []
        try:
            _set_attrs(torch.cuda, _torch_fakes(spec), saved)
            if torch.version.cuda is None:
                _set_attrs(torch.version, {"cuda": VIRTUAL_CUDA_VERSION}, saved)
            for name, make in MODULE_CONSTANTS.items():
                mod = sys.modules.get(name)
                if mod is not None:
                    _set_attrs(mod, make(spec), saved)
            for (name, attr), make in MODULE_FUNCTIONS.items():
                mod = sys.modules.get(name)
                if mod is not None and hasattr(mod, attr):
                    _set_attrs(mod, {attr: make(spec)}, saved)
            for (name, attr), (source, source_attr) in CUDA_ONLY_IMPORTS.items():
                mod = sys.modules.get(name)
                if mod is not None and not hasattr(mod, attr):
                    try:
                        value = getattr(importlib.import_module(source), source_attr)
                    except Exception as exc:  # SGLang without that op: its CUDA path stays unusable
                        logger.debug("virtual_gpu: cannot bind %s.%s: %s", name, attr, exc)
                        continue
                    _set_attrs(mod, {attr: value}, saved)
            _register_cuda_only(registered)
            _exec_fallbacks(saved)
            clear_sglang_caches()
            with override_spec(spec):
                if patched:
                    _reapply_patches()
                    yield spec
                else:
                    with unpatched():
                        # The clear above ran while the patches hid SGLang's own cached
                        # functions (get_moe_configs is an lru_cache): clear them now, and
                        # again before the patches cover them up on the way out.
                        clear_sglang_caches()
                        try:
                            yield spec
                        finally:
                            clear_sglang_caches()
        finally:
            for table, key in reversed(registered):
                table.pop(key, None)
            _restore(saved)
            clear_sglang_caches()
