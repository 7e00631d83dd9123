"""The GPU that selftest and bench run on: the live one, described as the plugin sees it.

The spec is the live spec the plugin's decisions use (``hardware.live_specs``: with several
GPUs the one with the least shared memory per block; under ``SGLANG_CONSUMER_GPU_EMULATE_SMEM``
its shared memory is the emulated cap). A GPU the catalog does not know is used with its live
properties, and the notes say so. ``SGLANG_CONSUMER_GPU_VIRTUAL`` does not apply: these
commands launch kernels, so they are about the GPU that runs them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sglang_consumer_gpu import settings
from sglang_consumer_gpu.hardware import KNOWN_GPUS, GpuSpec, live_specs


class NoGpu(Exception):
    """No CUDA GPU this Python can launch kernels on (the message says why and what to do)."""


@dataclass(frozen=True)
class LiveGpu:
    spec: GpuSpec
    notes: tuple[str, ...]


def live_gpu(command: str) -> LiveGpu:
    """The live GPU for ``command`` ("selftest", "bench"); raises :class:`NoGpu`."""
    specs = live_specs()
    if not specs:
        raise NoGpu(
            "no NVIDIA GPU visible (NVML and torch see none): nothing was run. "
            f"`sglang-consumer-gpu {command} --list --gpu NAME` shows the plan for a GPU that is not here"
            if command == "selftest"
            else "no NVIDIA GPU visible (NVML and torch see none): nothing was timed. "
            "`sglang-consumer-gpu moe-config --model PATH --gpu NAME` shows the configs for a GPU that is not here"
        )
    import torch

    if not torch.cuda.is_available():
        raise NoGpu(
            f"torch {torch.__version__} in this Python cannot use the GPU ({specs[0].name}): "
            "install a CUDA build of torch; nothing was run"
        )
    spec = min(specs, key=lambda s: s.smem_per_block_optin)
    notes = []
    if spec.name not in {g.name for g in KNOWN_GPUS}:
        notes.append(
            f"{spec.name} is not in the plugin's GPU catalog: decisions use its live properties "
            f"({spec.arch_name}, {spec.smem_per_block_optin:,} B shared memory per block)"
        )
    if "emulated" in spec.source:
        notes.append(
            f"shared memory per block emulated: {spec.smem_per_block_optin:,} B "
            "(SGLANG_CONSUMER_GPU_EMULATE_SMEM); kernels still compile for the real GPU's architecture"
        )
    if len({s.name for s in specs}) > 1:
        notes.append(
            f"several GPU models visible: decisions are for the one with the least shared memory ({spec.name})"
        )
    if os.environ.get(settings.VIRTUAL_GPU):
        notes.append(f"{settings.VIRTUAL_GPU} is ignored here: {command} runs on the live GPU")
    return LiveGpu(spec, tuple(notes))


def triton_limit() -> int | None:
    """The shared memory per block Triton checks launches against on the current device."""
    import torch

    from sglang_consumer_gpu.safety.guard import device_limit

    return device_limit(torch.cuda.current_device())
