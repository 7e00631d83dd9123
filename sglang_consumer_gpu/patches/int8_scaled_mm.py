"""W8A8-INT8 linear layers on GPUs sgl-kernel has no int8 GEMM for: route to Triton.

What it changes: ``int8_scaled_mm`` in SGLang's
``sglang.srt.layers.quantization.w8a8_int8`` (``W8A8Int8LinearMethod.apply``),
a name bound there by ``from sgl_kernel import int8_scaled_mm``. The registry
re-binds every loaded SGLang module holding the same function, which covers
the second call site,
``...compressed_tensors.schemes.compressed_tensors_w8a8_int8``
(``CompressedTensorsW8A8Int8.apply_weights``): SGLang's
``layers/quantization/__init__.py`` imports the compressed-tensors schemes
(line 18 in 0.5.23) before ``w8a8_int8`` (line 48), so when the post-import
hook fires for ``w8a8_int8`` both references exist. The replacement is
:func:`sglang_consumer_gpu.int8.ops.int8_scaled_mm`: same signature, layouts,
checks and error messages, a Triton kernel with tiles proven to fit 101,376
bytes of shared memory.

Why: sgl-kernel 0.4.10 raises ``NotImplementedError: No implemented
int8_scaled_mm for current compute capability.`` on sm_100/sm_103/sm_120/
sm_121, so a W8A8-INT8 checkpoint (e.g. DeepSeek-R1-Channel-INT8,
Qwen/Llama W8A8 quants) fails on its first linear layer on an RTX 5090 or RTX
PRO 6000 Blackwell. Where sgl-kernel has kernels (sm_75..sm_90) it stays in
charge: the registry's guard calls the Triton path only while
:func:`sglang_consumer_gpu.int8.backend.needed_on` is true for the current
GPU, and ``int8_backend_for`` is the status detail (which path, why).

Versions: every release from SGLang 0.4.9 to 0.5.23 binds the name the same
way and calls it from ``W8A8Int8LinearMethod.apply`` (CI checks each wheel).
``if _is_cuda:`` gates the import, so on a machine without CUDA SGLang has no
``int8_scaled_mm`` to call and nothing to route: the registry reports "not
needed" naming that condition (not "target missing").

Upstream-fixed detection: the kernel's capability switch is compiled into
``common_ops.so``; nothing short of calling it on the GPU tells whether a
release added sm_120. :data:`SGL_KERNEL_FIXED_IN` lists sglang-kernel
versions known to have it (none yet); with one of those installed the patch
stands down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.patching.base import Patch, Seam

logger = logging.getLogger("sglang_consumer_gpu.int8")

MODULE = "sglang.srt.layers.quantization.w8a8_int8"
#: packaging specifier of sglang-kernel releases with an sm_100/sm_120 int8 kernel ("" = none known).
SGL_KERNEL_FIXED_IN = ""


def needed_on(spec: GpuSpec) -> bool:
    from sglang_consumer_gpu.int8.backend import needed_on as backend_needed_on

    return backend_needed_on(spec)


def upstream_fixed(module: ModuleType) -> bool:
    if not SGL_KERNEL_FIXED_IN:
        return False
    from packaging.specifiers import SpecifierSet

    from sglang_consumer_gpu.versions import installed_version

    have = installed_version("sglang-kernel") or installed_version("sgl-kernel")
    return have is not None and have in SpecifierSet(SGL_KERNEL_FIXED_IN)


def explain(spec: GpuSpec) -> str:
    """The status detail: which int8 GEMM this GPU gets, and why."""
    from sglang_consumer_gpu.int8.backend import int8_backend_for

    backend, why = int8_backend_for(spec)
    return f"int8_scaled_mm -> {backend}: {why}"


def build(original: Callable[..., Any], module: ModuleType) -> Callable[..., Any]:
    from sglang_consumer_gpu.int8.ops import int8_scaled_mm

    def int8_scaled_mm_triton(
        mat_a: Any, mat_b: Any, scales_a: Any, scales_b: Any, out_dtype: Any, bias: Any = None
    ) -> Any:
        return int8_scaled_mm(mat_a, mat_b, scales_a, scales_b, out_dtype, bias)

    return int8_scaled_mm_triton


PATCH = Patch(
    name="int8-scaled-mm",
    seams=(Seam(">=0.4.9", MODULE, "int8_scaled_mm", called_by=("W8A8Int8LinearMethod.apply",)),),
    why="sgl-kernel's int8_scaled_mm raises 'No implemented int8_scaled_mm for current compute capability' "
    "on sm_100/sm_120 (RTX 5090, RTX PRO 6000 Blackwell)",
    build=build,
    needed_on=needed_on,
    upstream_fixed=upstream_fixed,
    explain=explain,
)
