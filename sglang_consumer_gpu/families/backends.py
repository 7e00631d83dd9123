"""Backends: which attention backend and MXFP4 MoE path SGLang picks for a GPU, and where the plugin changes it.

Not a family of Triton tiles but of SGLang's selection code: the per-model attention defaults
and the deterministic-inference default that land a consumer GPU on a backend without kernels
for it, and the MXFP4 Marlin gate that refuses sm_80-sm_89. The decisions are
:mod:`sglang_consumer_gpu.backends` (pure functions of a GpuSpec); the SGLang seams are those of
:mod:`~sglang_consumer_gpu.patches.backend_model_attention`,
:mod:`~sglang_consumer_gpu.patches.backend_deterministic_attention` and
:mod:`~sglang_consumer_gpu.patches.mxfp4_marlin_gate`. docs/backends.md lists every capability
check of SGLang 0.5.23 and what the plugin does about each.

Nothing here compiles a kernel, so the family has no ``check`` area; nothing runs a kernel of
its own, so no ``selftest`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sglang_consumer_gpu.families.base import Family
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.patches import (
    backend_deterministic_attention,
    backend_model_attention,
    mxfp4_marlin_gate,
)

_PATCHES = (backend_model_attention.PATCH, backend_deterministic_attention.PATCH, *mxfp4_marlin_gate.PATCHES)


@dataclass(frozen=True)
class BackendsFamily(Family):
    """SGLang's backend choices (see the module docstring)."""

    name: str = "backends"
    patch_modules: tuple[Any, ...] = (backend_model_attention, backend_deterministic_attention, mxfp4_marlin_gate)
    kernel_modules: tuple[str, ...] = ()

    def active(self, spec: GpuSpec) -> bool:
        return any(p.needed_on(spec) for p in _PATCHES)


FAMILY = BackendsFamily()
