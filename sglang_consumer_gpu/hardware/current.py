"""Which GPU the decisions are for: a virtual one if set, else the live one.

Reading the live GPU must not create a CUDA context: the plugin activates in
SGLang's launcher process, which later forks/spawns workers, and a context
made there breaks fork-based startup (SGLang's own `get_device_sm` avoids
torch.cuda for the same reason). So the live spec comes from NVML unless
torch.cuda is already initialised.

Under ``SGLANG_CONSUMER_GPU_EMULATE_GPU`` (docs/emulation.md) the live specs are
the emulated GPU's (name, capability, shared memory, SMs; the host's memory size);
under ``SGLANG_CONSUMER_GPU_EMULATE_SMEM`` (limit only) they carry the cap (same
name). Either way ``source`` says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Iterator

from sglang_consumer_gpu import settings
from sglang_consumer_gpu.hardware.catalog import KNOWN_GPUS, find_gpu
from sglang_consumer_gpu.hardware.emulated import ArchEmulation
from sglang_consumer_gpu.hardware.spec import SMEM_OPTIN_BY_ARCH, GpuSpec

logger = logging.getLogger(__name__)

_override: list[GpuSpec] = []
_live_cache: list[list[GpuSpec]] = []
_CATALOG = {g.name: g for g in KNOWN_GPUS}


def _merge_with_catalog(
    name: str, cap: tuple[int, int], mem: int, smem: int | None, sms: int | None
) -> GpuSpec:
    known = _CATALOG.get(name)
    if smem is None:
        smem = SMEM_OPTIN_BY_ARCH.get(cap, known.smem_per_block_optin if known else 0)
    return GpuSpec(
        name=name,
        capability=cap,
        smem_per_block_optin=smem,
        sm_count=sms if sms is not None else (known.sm_count if known else 0),
        memory_bytes=mem,
        memory_bandwidth_gbps=known.memory_bandwidth_gbps if known else 0.0,
        source="live",
    )


def visible_indices(count: int) -> list[int]:
    """NVML indices of the GPUs ``CUDA_VISIBLE_DEVICES`` leaves visible (all for UUIDs or MIG ids)."""
    vis = os.environ.get("CUDA_VISIBLE_DEVICES")
    if vis is None:
        return list(range(count))
    out = []
    for part in vis.split(","):
        part = part.strip()
        if not part.isdigit():  # UUIDs or MIG ids: fall back to all devices
            return list(range(count))
        if int(part) < count:
            out.append(int(part))
    return out


def _specs_from_torch() -> list[GpuSpec]:
    import inspect

    import torch

    # the real properties: under an emulation torch.cuda.get_device_properties answers for the target
    read = inspect.unwrap(torch.cuda.get_device_properties)
    specs = []
    for i in range(torch.cuda.device_count()):
        p = read(i)
        specs.append(
            _merge_with_catalog(
                p.name,
                (p.major, p.minor),
                p.total_memory,
                getattr(p, "shared_memory_per_block_optin", None),
                p.multi_processor_count,
            )
        )
    return specs


def _specs_from_nvml() -> list[GpuSpec]:
    import pynvml  # from nvidia-ml-py, an SGLang dependency

    pynvml.nvmlInit()
    try:
        specs = []
        for i in visible_indices(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            if isinstance(name, bytes):
                name = name.decode()
            cap = tuple(pynvml.nvmlDeviceGetCudaComputeCapability(h))
            mem = pynvml.nvmlDeviceGetMemoryInfo(h).total
            specs.append(_merge_with_catalog(name, (cap[0], cap[1]), mem, None, None))
        return specs
    finally:
        pynvml.nvmlShutdown()


def live_specs() -> list[GpuSpec]:
    """Specs of the GPUs this process can see, as the plugin decides for them (an emulated GPU
    where one is emulated); empty when there are none."""
    emulation = active_emulation()
    if emulation is not None:
        return [emulation.live_spec() for _ in real_specs()]
    return _with_emulated_smem(real_specs())


def real_specs() -> list[GpuSpec]:
    """Specs of the GPUs this process can see, as they are (no emulation); empty when there are none."""
    if _live_cache:
        return _live_cache[0]
    specs: list[GpuSpec] = []
    try:
        # Only a process that imported torch can have a CUDA context; importing
        # torch here just to ask would cost seconds (doctor answers in about one).
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            specs = _specs_from_torch()
        else:
            try:
                specs = _specs_from_nvml()
            except Exception as exc:  # no NVML library or no driver
                logger.debug("NVML not usable (%s); assuming no NVIDIA GPU", exc)
                specs = []
    except Exception as exc:
        logger.debug("could not read GPU properties: %s", exc)
    _live_cache.append(specs)
    return specs


_emulation_cache: dict[str, ArchEmulation | None] = {}


def active_emulation() -> ArchEmulation | None:
    """The arch-faithful emulation ``SGLANG_CONSUMER_GPU_EMULATE_GPU`` asks for, on the GPU with the
    least shared memory per block here; None when unset, without a GPU, or when it cannot be done
    (said once per process, and the live GPU is used as it is)."""
    name = settings.emulated_gpu_name()
    if name is None:
        return None
    if name not in _emulation_cache:
        _emulation_cache[name] = None
        specs = real_specs()
        try:
            target = find_gpu(name)
        except ValueError as exc:
            logger.warning("%s=%r ignored, nothing is emulated: %s", settings.EMULATE_GPU, name, exc)
            return None
        if not specs:
            return None
        emulation = ArchEmulation(target, min(specs, key=lambda s: s.smem_per_block_optin))
        why = emulation.refusal()
        if why:
            logger.warning("%s=%r ignored, nothing is emulated: %s", settings.EMULATE_GPU, name, why)
        else:
            _emulation_cache[name] = emulation
    return _emulation_cache[name]


def _with_emulated_smem(specs: list[GpuSpec]) -> list[GpuSpec]:
    cap = settings.emulated_smem_cap()
    if cap is None:
        return specs
    return [
        dataclasses.replace(s, smem_per_block_optin=cap, source=f"{s.source}+emulated-smem")
        if s.smem_per_block_optin > cap
        else s
        for s in specs
    ]


_virtual_cache: dict[str, GpuSpec | None] = {}


def _env_virtual() -> GpuSpec | None:
    """The spec ``SGLANG_CONSUMER_GPU_VIRTUAL`` names. An unknown name is said
    once per process (this runs on every kernel-config call) and ignored."""
    name = os.environ.get(settings.VIRTUAL_GPU)
    if not name:
        return None
    if name not in _virtual_cache:
        try:
            _virtual_cache[name] = find_gpu(name)
        except ValueError as exc:
            _virtual_cache[name] = None
            logger.warning(
                "%s=%r ignored, decisions are made for the live GPU: %s", settings.VIRTUAL_GPU, name, exc
            )
    return _virtual_cache[name]


def current_spec() -> GpuSpec | None:
    """The GPU decisions are made for, or None when there is no GPU.

    Order: an active :func:`override_spec`, then ``SGLANG_CONSUMER_GPU_VIRTUAL``,
    then the live GPU with the least shared memory per block among those visible
    (a choice that fits it fits the others).
    """
    if _override:
        return _override[-1]
    virtual = _env_virtual()
    if virtual is not None:
        return virtual
    specs = live_specs()
    if not specs:
        return None
    return min(specs, key=lambda s: s.smem_per_block_optin)


@contextlib.contextmanager
def override_spec(spec: GpuSpec) -> Iterator[GpuSpec]:
    """Make :func:`current_spec` answer ``spec`` inside the block (nestable)."""
    _override.append(spec)
    try:
        yield spec
    finally:
        _override.pop()
