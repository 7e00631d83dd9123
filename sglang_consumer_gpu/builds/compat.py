"""What a GPU can run from a set of cubins and PTX: CUDA's compatibility rules,
as a pure function of the GPU's compute capability.

- A cubin (SASS) for ``sm_XY`` runs on ``X.Z`` for ``Z >= Y``: same major, same
  or later minor (an ``sm_80`` cubin runs on an RTX 3090, sm_86; an ``sm_86``
  one does not run on an A100, and no sm_8x cubin runs on sm_120).
- A family cubin ``sm_XYf`` runs on the same major from ``Y`` up (its family).
- An arch-specific cubin ``sm_XYa`` runs only on ``X.Y`` itself.
- PTX for ``compute_XY`` is JIT-compiled by the driver for any later GPU
  (``X.Y`` up, any major): it runs, after a first-launch compile that can take
  minutes for a big library. ``compute_XYf`` PTX only within the family,
  ``compute_XYa`` only on ``X.Y``.

The rules are ptxas's own (``ptxas --help``, under ``--gpu-name``) and
FlashInfer's ``cuda_binary_target_compatibility_score``. When nothing fits,
CUDA reports ``no kernel image is available for execution on the device``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sglang_consumer_gpu.builds.fatbin import Arch, DeviceCode
from sglang_consumer_gpu.hardware import GpuSpec


def sass_runs_on(arch: Arch, capability: tuple[int, int]) -> bool:
    major, minor = capability
    if arch.suffix == "a":
        return (arch.major, arch.minor) == (major, minor)
    return arch.major == major and arch.minor <= minor


def ptx_runs_on(arch: Arch, capability: tuple[int, int]) -> bool:
    if arch.suffix:
        return sass_runs_on(arch, capability)
    return (arch.major, arch.minor) <= capability


@dataclass(frozen=True)
class Runnable:
    """What the GPU would load from a file: a cubin (``"sass"``), PTX to JIT (``"ptx"``), or nothing."""

    how: str  # "sass", "ptx" or "none"
    arch: Arch | None

    @property
    def runs(self) -> bool:
        return self.how != "none"

    def describe(self) -> str:
        if self.how == "sass" and self.arch is not None:
            return f"runs its {self.arch} cubins"
        if self.how == "ptx" and self.arch is not None:
            ptx = f"compute_{self.arch.number}{self.arch.suffix}"
            return f"no cubin for it: the driver JIT-compiles its {ptx} PTX at first use (a slow first start)"
        return "no code for it: CUDA says `no kernel image is available for execution on the device`"


def what_runs(code: DeviceCode, spec: GpuSpec) -> Runnable:
    """The code ``spec`` runs from ``code``: the closest cubin (exact arch first), else the newest PTX it can JIT."""
    cap = spec.capability
    cubins = [a for a in code.sass if sass_runs_on(a, cap)]
    if cubins:
        # the driver prefers the cubin closest to the GPU; an arch-specific one for exactly this GPU first
        return Runnable("sass", max(cubins, key=lambda a: (a.minor, a.suffix == "a", a.suffix == "f")))
    ptx = [a for a in code.ptx if ptx_runs_on(a, cap)]
    if ptx:
        return Runnable("ptx", max(ptx))
    return Runnable("none", None)
