"""The safety net: SGLang's Triton kernels that overflow shared memory compile with fewer stages or a smaller tile.

Not a family of kernels the plugin chooses for, but one the tools treat alike: its patches
(:mod:`sglang_consumer_gpu.patches.safety_net`, on Triton) act on every ~99 KB GPU, and the
selftest proves them with tiles that do not fit. It compiles nothing the plugin chooses, so it
has no ``check`` area.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sglang_consumer_gpu.families.base import KernelRow, Provider
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.patches import safety_net


def install() -> dict[str, str]:
    """Register and apply the safety net now (a process the plugin's activation did not reach)."""
    return safety_net.install()


@dataclass(frozen=True)
class SafetyNetFamily:
    """The safety net (see the module docstring)."""

    name: str = "safety"
    patch_modules: tuple[Any, ...] = (safety_net,)
    kernel_modules: tuple[str, ...] = ()

    def active(self, spec: GpuSpec) -> bool:
        return all(p.needed_on(spec) for p in safety_net.PATCHES)

    def check_providers(self) -> tuple[Provider, ...]:
        return ()

    def planner_rows(
        self, spec: GpuSpec, desc: Any, launch: Any, *, compile: bool, progress: Any = None
    ) -> tuple[list[KernelRow], list[str]]:
        return [], []


FAMILY = SafetyNetFamily()
