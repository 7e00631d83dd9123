"""Which kernel a fused-MoE call with fp8 weights gets: SGLang's fp8_w8a8 kernel or the weight-only one.

SGLang runs fp8 experts through one Triton kernel (``fused_moe_kernel`` with
``use_fp8_w8a8=True``) that quantizes the activations to e4m3 and multiplies e4m3 by e4m3.
Triton has e4m3 from sm_89 on; below, the kernel's signature alone (``*fp8e4nv``) fails to
compile: ``type fp8e4nv not supported in this architecture. The supported fp8 dtypes are
('fp8e4b15', 'fp8e5')``. Ampere (sm_80-sm_88: A100, RTX 3090, A6000, A10, A40) has bf16 tensor
cores, so there the fp8 weights can stay as they are in memory and be decoded to bf16/fp16 in
the kernel's load path: the weight-only route. Below sm_80 SGLang refuses fp8 checkpoints
itself (``Fp8Config.get_min_capability() == 80``), and from sm_89 on SGLang's own kernel works.

A call takes the weight-only route only when it is one the kernel implements: fp8 weights,
16-bit activations (not already quantized by the caller), and none of SGLang's LoRA, TMA,
fused-reduction or fused-activation output modes. Everything else stays SGLang's.

Pure functions of a GpuSpec and a :class:`MoeCall`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sglang_consumer_gpu.hardware.spec import GpuSpec

WEIGHT_ONLY = "weight-only"
SGLANG = "sglang"

#: The failure the weight-only route replaces (Triton's message, SGLang issue #7715).
FP8E4NV = "type fp8e4nv not supported in this architecture"

#: Options of SGLang's ``invoke_fused_moe_kernel`` the weight-only kernel does not implement, by
#: parameter name: output modes of the LoRA and TMA paths, the fused sum/all-reduce, the fused
#: SwiGLU epilogue (16-bit weights only), sliced LoRA inputs, zero points (no fp8 format has them).
UNSUPPORTED_OPTIONS: tuple[str, ...] = (
    "c_sorted",
    "a_use_tma",
    "b_use_tma",
    "fuse_sum_all_reduce",
    "fuse_add_to_output",
    "mask_output",
    "lora_preserve_base",
    "fuse_swiglu",
    "a_output_slices",
    "B_zp",
)
ACTIVATION_DTYPES = ("bfloat16", "float16")


def weight_only_gpu(spec: GpuSpec) -> bool:
    """Does ``spec`` need the weight-only route for fp8 experts (no e4m3, bf16 tensor cores)?"""
    return spec.is_ampere_or_newer and not spec.supports_fp8_e4m3


@dataclass(frozen=True)
class MoeCall:
    """What the route reads of one ``invoke_fused_moe_kernel`` call (plain values).

    ``fp8_weights``: ``use_fp8_w8a8`` with ``float8_e4m3fn`` weights; ``activations``: the
    dtype name of ``A`` as it arrives; ``options``: the :data:`UNSUPPORTED_OPTIONS` the call
    switches on."""

    fp8_weights: bool
    activations: str
    options: tuple[str, ...] = ()


def route(spec: GpuSpec, call: MoeCall) -> tuple[str, str]:
    """``(WEIGHT_ONLY | SGLANG, why)`` for ``call`` on ``spec``."""
    if not call.fp8_weights:
        return SGLANG, "not an fp8-weight call: SGLang's kernel serves it"
    if spec.supports_fp8_e4m3:
        return SGLANG, f"{spec.arch_name} has fp8 e4m3: SGLang's fp8_w8a8 fused-MoE kernel runs"
    if not spec.is_ampere_or_newer:
        return SGLANG, (
            f"{spec.arch_name} has no bf16 tensor cores (and SGLang refuses fp8 below sm_80): left to SGLang"
        )
    fails = f"SGLang's kernel runs and fails on {spec.arch_name} ('{FP8E4NV}')"
    if call.activations not in ACTIVATION_DTYPES:
        return (
            SGLANG,
            f"the activations arrive as {call.activations}, not bf16/fp16 (already quantized?); {fails}",
        )
    if call.options:
        return SGLANG, f"the weight-only kernel does not implement {', '.join(call.options)}; {fails}"
    return WEIGHT_ONLY, (
        f"{spec.arch_name} has no fp8 e4m3 ('{FP8E4NV}'): fp8 weights decoded in the kernel, "
        f"{call.activations} activations and math"
    )
