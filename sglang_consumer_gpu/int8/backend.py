"""Which int8 GEMM a GPU gets: sgl-kernel's CUTLASS kernel or the Triton one.

sgl-kernel 0.4.10's ``int8_scaled_mm`` has kernels for sm_75 .. sm_90 only
(:attr:`~sglang_consumer_gpu.hardware.spec.GpuSpec.sgl_kernel_int8_tiles` says
which); on anything else (sm_100, sm_103, sm_120, sm_121) it raises
``NotImplementedError: No implemented int8_scaled_mm for current compute
capability.`` -- an RTX 5090 or RTX PRO 6000 Blackwell cannot run a W8A8-INT8
checkpoint at all.

The Triton kernel takes over exactly where sgl-kernel raises, and where
:data:`TRITON_FASTER` (measured) says it is faster. Everything here is a pure
function of the GpuSpec.
"""

from __future__ import annotations

from sglang_consumer_gpu.hardware.spec import GpuSpec

TRITON = "triton"
SGL_KERNEL = "sgl-kernel"

#: Architectures on which the Triton kernel was measured faster than
#: sgl-kernel's CUTLASS kernel, with where the measurement is written up.
#: Empty: sgl-kernel's sm_86/sm_89 kernels can only be timed on an sm_86/sm_89
#: GPU (the device machine is an H100, where sgl-kernel runs its sm_90
#: kernels), so no measurement backs routing those GPUs away from sgl-kernel.
TRITON_FASTER: dict[int, str] = {}


def sgl_kernel_int8_support(spec: GpuSpec) -> tuple[bool, str]:
    """Does sgl-kernel 0.4.10's ``int8_scaled_mm`` have a kernel for ``spec``? (and the reason)"""
    tiles = spec.sgl_kernel_int8_tiles
    if tiles is not None:
        return True, f"sgl-kernel has {tiles}"
    return False, (
        f"sgl-kernel raises 'No implemented int8_scaled_mm for current compute capability' on {spec.arch_name}"
    )


def int8_backend_for(spec: GpuSpec) -> tuple[str, str]:
    """``("triton" | "sgl-kernel", reason)`` for W8A8-INT8 linear layers on ``spec``."""
    has_kernel, why = sgl_kernel_int8_support(spec)
    if not has_kernel:
        if not spec.is_ampere_or_newer:  # Triton's int8 tensor-core dots start at sm_80
            return SGL_KERNEL, f"{why}, and Triton has no int8 tensor-core path below sm_80; left unchanged"
        return TRITON, f"{why}; the Triton int8 GEMM runs instead"
    measured = TRITON_FASTER.get(spec.arch)
    if measured:
        return TRITON, f"Triton measured faster than sgl-kernel on {spec.arch_name} ({measured})"
    return SGL_KERNEL, why


def needed_on(spec: GpuSpec) -> bool:
    """The patch's guard: route to Triton on this GPU?"""
    return int8_backend_for(spec)[0] == TRITON
