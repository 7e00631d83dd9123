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
- :func:`~sglang_consumer_gpu.hardware.override_spec` answer the spec.

Whether the plugin's patches act inside is not the virtual GPU's business: the caller
decides (:func:`sglang_consumer_gpu.families.on_gpu` does both). A block nested in one for
the same spec changes nothing, so a whole ``check`` run sets the virtual GPU up once.

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
from sglang_consumer_gpu.patches import attention_extend, attention_prefill, moe_config, mxfp4_marlin_gate
from sglang_consumer_gpu.patching.base import Seam
from sglang_consumer_gpu.patching.sglang_device import SGLANG_COMMON, SGLANG_JIT_ARCH

logger = logging.getLogger(__name__)

_lock = threading.RLock()
_MISSING = object()
_LRU_WRAPPER = functools._lru_cache_wrapper

#: What ``torch.version.cuda`` says inside the block on a CPU-only torch
#: (SGLang's ``is_sm90_supported`` wants >= 12.3, Blackwell checks >= 12.8).
VIRTUAL_CUDA_VERSION = "12.9"


def _cuda(spec: GpuSpec) -> dict[str, Any]:
    return {"_is_cuda": True, "_is_hip": False, "CUDA_CAPABILITY": spec.capability}


#: SGLang modules whose import-time constants describe the GPU, and what they
#: become for a spec. Extend this (module name -> function of the spec) when a
#: new kernel module caches the capability at import.
MODULE_CONSTANTS: dict[str, Callable[[GpuSpec], dict[str, Any]]] = {
    attention_extend.MODULE: _cuda,
    attention_prefill.MODULE: _cuda,
    attention_extend.DECODE.module: lambda s: {"_is_hip": False},
    moe_config.LAUNCHER.module: lambda s: {"_is_cuda": True, "_is_hip": False},
    moe_config.MODULE: lambda s: {"_is_hip": False},
}


#: Functions replaced inside the block: (module, attribute) -> replacement
#: factory. ``get_device_sm`` asks NVML before torch when CUDA is not
#: initialised; NVML would describe the real GPU (or fail), not the spec.
MODULE_FUNCTIONS: dict[tuple[str, str], Callable[[GpuSpec], Callable[..., Any]]] = {
    (SGLANG_COMMON, "_get_device_sm_via_nvml"): lambda s: lambda: s.arch,
}

#: Names a module imports only when CUDA is present at import time
#: (``if _is_cuda: from ... import ...``): (module, attribute) -> (source
#: module, name). Inside the block they are bound (if missing) so SGLang's
#: CUDA code path runs; SGLang's JIT ops used here have fake (meta) impls.
CUDA_ONLY_IMPORTS: dict[tuple[str, str], tuple[str, str]] = {
    (moe_config.QUANT_FP8, "per_token_group_quant"): (
        moe_config.QUANT_GROUP.module,
        moe_config.QUANT_GROUP.attr,
    ),
    (moe_config.QUANT_FP8, "sgl_per_tensor_quant_fp8"): (
        moe_config.QUANT_TENSOR_FP8.module,
        moe_config.QUANT_TENSOR_FP8.attr,
    ),
    (moe_config.QUANT_FP8, "sgl_per_token_quant_fp8"): (
        moe_config.QUANT_TOKEN_FP8.module,
        moe_config.QUANT_TOKEN_FP8.attr,
    ),
    (moe_config.QUANT_INT8, "per_token_group_quant"): (
        moe_config.QUANT_GROUP.module,
        moe_config.QUANT_GROUP.attr,
    ),
}

#: Entries a module adds to one of its registries only when CUDA is present at
#: import time (``if is_cuda(): REGISTRY.update(...)``): (module, dict attribute)
#: -> {key: (source module, name)}. Inside the block the missing keys are added
#: (and removed on exit), so SGLang's resolution accepts what it accepts on a GPU
#: (``quant_method: mxfp4`` of gpt-oss checkpoints).
SGLANG_QUANTIZATION = "sglang.srt.layers.quantization"
_MXFP4 = {"mxfp4": (mxfp4_marlin_gate.MXFP4, "Mxfp4Config")}
CUDA_ONLY_REGISTRATIONS: dict[tuple[str, str], dict[str, tuple[str, str]]] = {
    (SGLANG_QUANTIZATION, "BASE_QUANTIZATION_METHODS"): _MXFP4,
    (SGLANG_QUANTIZATION, "QUANTIZATION_METHODS"): _MXFP4,
}

#: Imported before anything is faked (see the module docstring).
PRELOAD: tuple[str, ...] = (
    SGLANG_COMMON,
    SGLANG_JIT_ARCH,
    moe_config.LAUNCHER.module,
    moe_config.MODULE,
    attention_extend.MODULE,
    attention_extend.DECODE.module,
    attention_prefill.MODULE,
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
EXEC_READERS: tuple[str, ...] = (moe_config.MODULE,)
#: Where SGLang declares that config's fields (their defaults stand in outside a server).
EXEC_FIELDS = Seam(">=0.5.20", "sglang.srt.arg_groups.fields.exec_", "ExecDeterministic")


def default_exec() -> Any:
    """SGLang's default ``exec`` config, built from its own field declarations
    (``ExecDeterministic()`` etc.), for code run outside a server, where
    ``get_exec()`` raises "config namespace 'exec' not published"."""
    from types import SimpleNamespace

    try:
        fields = importlib.import_module(EXEC_FIELDS.module)
    except ImportError:  # a trimmed SGLang (the device loader): its declared default
        return SimpleNamespace(deterministic=SimpleNamespace(enable_deterministic_inference=False))
    return SimpleNamespace(deterministic=getattr(fields, EXEC_FIELDS.attr)())


def _exec_fallbacks(saved: list[tuple[Any, str, Any]]) -> None:
    for name in EXEC_READERS:
        mod = sys.modules.get(name)
        get_exec = getattr(mod, "get_exec", None)
        if get_exec is None:
            continue
        try:
            get_exec()
        except ValueError:  # not published: no server in this process
            default = default_exec()
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


#: The specs of the virtual GPUs entered in this process, innermost last.
_active: list[GpuSpec] = []


@contextlib.contextmanager
def virtual_gpu(spec: GpuSpec, *, preload: Iterable[str] = PRELOAD) -> Iterator[GpuSpec]:
    """Inside the block, SGLang (and the plugin) see ``spec`` as the GPU (see the module
    docstring). Inside a block for the same spec it changes nothing."""
    if _active and _active[-1] == spec:
        with _lock:
            _preload(m for m in preload if m not in sys.modules)
            yield spec
        return
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
            _active.append(spec)
            with override_spec(spec):
                yield spec
        finally:
            if _active and _active[-1] is spec:
                _active.pop()
            for table, key in reversed(registered):
                table.pop(key, None)
            _restore(saved)
            clear_sglang_caches()
