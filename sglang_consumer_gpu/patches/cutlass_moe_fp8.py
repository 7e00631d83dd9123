"""Block-FP8 MoE under ``--moe-runner-backend cutlass`` on sm_120: route to SGLang's Triton fused MoE.

What it changes: ``cutlass_fused_experts_fp8`` in ``sglang.srt.layers.moe.cutlass_moe``.
``Fp8MoEMethod.apply`` (``srt/layers/quantization/fp8.py``, 0.5.23: 3188-3222; 0.5.17:
2407-2443) imports it inside the function, at every call, so the module attribute is what it
calls. The replacement has SGLang's signature (bound with SGLang's own signature, so each
release's parameters are honoured) and runs SGLang's Triton fused MoE,
``fused_experts_impl`` (:data:`TRITON`), with block-FP8 weights: the math the CUTLASS path
does -- per-token-group (128) FP8 activations, [128, 128] block weight scales, SiLU-and-mul on
the two halves of the gate/up output (``silu_and_mul``; the Triton runner's default gated SiLU
takes the same halves, ``gate_up_interleaved`` only matters for ``gemm1_alpha``, which the CUTLASS
path never has), router weights applied, no routed scaling (the CUTLASS path applies none either),
``swiglu_limit`` passed on where the release has it. The layer's tensors reach the CUTLASS path
transposed (``layer.w13_weight.transpose(1, 2)``, same for ``w2`` and both
``*_weight_scale_inv``); transposing back gives the layout the Triton runner gets from the same
layer (``Fp8MoEMethod.get_triton_quant_info``): ``w13`` [E, 2N, K], ``w2`` [E, K, N], scales
[E, 2N/128, K/128] and [E, K/128, N/128] -- views, no copy. For CUTLASS, SGLang leaves block-FP8
weights as loaded (``process_weights_after_loading_block_quant``; the DeepGEMM UE8M0 requant is
off), so the Triton kernel reads exactly the tensors it reads under ``--moe-runner-backend
triton``. The result is copied into ``output`` (SGLang's symmetric-memory buffer) when given.

Tiles: ``fused_experts_impl`` asks ``try_get_optimal_moe_config`` for ``dtype=fp8_w8a8,
block_shape=[128, 128]``, whose ``get_moe_configs`` / ``get_default_config`` are the
``moe-config-lookup`` / ``moe-default-config`` patches on every ~99 KB GPU, sm_120 included:
the tile comes from the plugin's shared-memory-aware lookup (``check --only cutlass-moe``
compiles them for the GPU).

Why: sgl-kernel's ``fp8_blockwise_scaled_grouped_mm`` has sm_90 and sm_100/sm_103 kernels only
(:attr:`~sglang_consumer_gpu.hardware.spec.GpuSpec.sgl_kernel_fp8_grouped_mm`) and raises
``No implemented fp8_blockwise_scaled_grouped_mm for current compute capability`` on
sm_120/sm_121, while SGLang admits ``--moe-runner-backend cutlass`` there (``Fp8MoEMethod.__init__``
asserts SM90, SM100 or SM120 since 0.5.10): an RTX 5090 or RTX PRO 6000 Blackwell user who asks
for it gets a server that dies at its first MoE forward. sgl-project/sglang#28125 (open) adds
the sm_120 kernel. The user asked for CUTLASS explicitly; routing is justified only because
that request can only crash here, so the first routed call logs a WARNING saying so.

Where it stands aside: other capabilities (sm_90/sm_100 have the kernel; sm_8x never reaches
the call: SGLang's assertion refuses cutlass MoE there at model construction), MXFP8
checkpoints (``use_mxfp8``: SGLang's own path, which asserts SM100), and an sgl-kernel whose
``common_ops`` library carries the sm_120 group launcher of #28125
(:data:`SM120_LAUNCHER`, "already fixed upstream"), or one listed in
:data:`SGL_KERNEL_FIXED_IN`. A call whose tensors are not laid out as ``Fp8MoEMethod.apply``
passes them is answered by SGLang's own function (the registry logs why); an error inside
SGLang's Triton path is SGLang's and reaches the caller as raised.

Versions: 0.5.11-0.5.23 (``swiglu_limit`` from 0.5.20). 0.5.10 admits sm_120 too, but its
Triton runner lives in the pre-0.5.11 module: not covered; before 0.5.10 SGLang refuses cutlass
MoE on sm_120 itself.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from sglang_consumer_gpu.errors import not_ours
from sglang_consumer_gpu.hardware.current import current_spec
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.patching.base import Patch, Seam
from sglang_consumer_gpu.patching.log import log_once

logger = logging.getLogger("sglang_consumer_gpu")

MODULE = "sglang.srt.layers.moe.cutlass_moe"
ATTR = "cutlass_fused_experts_fp8"
_PARAMS = (
    "a", "w1_q", "w2_q", "w1_scale", "w2_scale", "topk_weights", "topk_ids", "a1_strides", "c1_strides",
    "a2_strides", "c2_strides", "workspace", "a_ptrs", "b_ptrs", "out_ptrs", "a_scales_ptrs", "b_scales_ptrs",
    "expert_offsets", "problem_sizes1", "problem_sizes2", "use_fp8_blockscale", "use_mxfp8", "output", "enable_es",
)  # fmt: skip
SEAMS = (
    Seam(">=0.5.11,<0.5.20", MODULE, ATTR, _PARAMS),
    Seam(">=0.5.20", MODULE, ATTR, (*_PARAMS, "swiglu_limit")),
)
#: SGLang's Triton fused MoE the calls are routed to: the function behind the custom op its Triton
#: runner calls (``outplace_fused_experts``, registered for CUDA tensors only), as the CUTLASS path
#: is plain Python around its kernels too.
TRITON = Seam(">=0.5.11", "sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe", "fused_experts_impl")
#: The keywords the replacement passes to :data:`TRITON` (``swiglu_limit`` only where the seam has it).
TRITON_KEYWORDS = ("use_fp8_w8a8", "w1_scale", "w2_scale", "block_shape")
#: The weight block the CUTLASS path works in (it quantizes activations in groups of 128).
BLOCK = (128, 128)
#: Compute-capability majors whose cutlass MoE SGLang admits (``Fp8MoEMethod.__init__``: SM90, SM100, SM120).
SGLANG_ADMITS = (9, 10, 12)
#: The symbol an sgl-kernel with the sm_120 grouped GEMM carries (sgl-project/sglang#28125).
SM120_LAUNCHER = b"launch_sm120_fp8_blockwise_scaled_group_mm"
#: packaging specifier of sglang-kernel releases with it ("" = none known).
SGL_KERNEL_FIXED_IN = ""


def needed_on(spec: GpuSpec) -> bool:
    """Route on a GPU SGLang admits cutlass MoE on but sgl-kernel has no grouped GEMM for (sm_12x)."""
    return spec.capability[0] in SGLANG_ADMITS and spec.sgl_kernel_fp8_grouped_mm is None


def explain(spec: GpuSpec) -> str:
    """The status detail: what ``--moe-runner-backend cutlass`` runs for block-FP8 experts, and why."""
    kernels = spec.sgl_kernel_fp8_grouped_mm
    if kernels is not None:
        return f"cutlass MoE -> sgl-kernel's {kernels} on {spec.arch_name}"
    if spec.capability[0] not in SGLANG_ADMITS:
        return f"cutlass MoE is refused by SGLang itself on {spec.arch_name} (its Fp8MoEMethod asserts SM90/100/120)"
    return (
        f"cutlass MoE -> SGLang's Triton fused MoE (block FP8): sgl-kernel raises 'No implemented "
        f"fp8_blockwise_scaled_grouped_mm' on {spec.arch_name}"
    )


@functools.cache
def _library_has(path: str) -> bool:
    try:
        return SM120_LAUNCHER in Path(path).read_bytes()
    except OSError:
        return False


def sgl_kernel_has_sm120() -> bool:
    """The installed sgl-kernel's ``common_ops`` (the one it loads on sm_12x) carries the sm_120
    grouped-GEMM launcher, or its version is listed in :data:`SGL_KERNEL_FIXED_IN`."""
    from sglang_consumer_gpu.builds.libraries import sgl_kernel_library
    from sglang_consumer_gpu.versions import in_range, installed_version, package_dirs

    have = installed_version("sglang-kernel") or installed_version("sgl-kernel")
    if SGL_KERNEL_FIXED_IN and have is not None and in_range(have, SGL_KERNEL_FIXED_IN):
        return True
    dirs = package_dirs("sgl_kernel")
    library = sgl_kernel_library(dirs[0], current_spec()) if dirs else None
    return library is not None and _library_has(str(library))


def upstream_fixed(module: ModuleType) -> bool:
    return sgl_kernel_has_sm120()


def layout_problem(a: Any, w1: Any, w2: Any, s1: Any, s2: Any) -> str:
    """Why the (transposed-back) tensors are not what ``Fp8MoEMethod.apply`` passes ("" if they are):
    ``a`` [M, K] fp16/bf16, ``w1`` [E, 2N, K] and ``w2`` [E, K, N] contiguous e4m3, fp32 block scales
    [E, ceil(2N/128), ceil(K/128)] and [E, ceil(K/128), ceil(N/128)]."""
    import torch

    if a.dim() != 2 or a.dtype not in (torch.float16, torch.bfloat16):
        return f"activations must be [M, K] float16/bfloat16, got {tuple(a.shape)} {a.dtype}"
    if w1.dim() != 3 or w2.dim() != 3 or w1.dtype != torch.float8_e4m3fn or w2.dtype != torch.float8_e4m3fn:
        return f"weights must be 3-D float8_e4m3fn, got {w1.dtype} {tuple(w1.shape)} / {w2.dtype} {tuple(w2.shape)}"
    E, two_n, K = w1.shape
    if a.shape[1] != K or tuple(w2.shape) != (E, K, two_n // 2):
        return f"shapes do not chain: a {tuple(a.shape)}, w13 {tuple(w1.shape)}, w2 {tuple(w2.shape)}"
    if not (w1.is_contiguous() and w2.is_contiguous()):
        return "the weights are not the layer's [E, 2N, K] / [E, K, N] tensors transposed (a copy per call is refused)"
    bn, bk = BLOCK
    want1 = (E, -(-two_n // bn), -(-K // bk))
    want2 = (E, -(-K // bn), -(-(two_n // 2) // bk))
    if tuple(s1.shape) != want1 or tuple(s2.shape) != want2 or s1.dtype != torch.float32:
        return (
            f"scales are not [128, 128] blocks: got {tuple(s1.shape)} / {tuple(s2.shape)} {s1.dtype}, "
            f"expected {want1} / {want2} float32"
        )
    return ""


def _announce() -> None:
    """One WARNING per process, at the first routed call: the user asked for CUTLASS."""
    spec = current_spec()
    arch = spec.arch_name if spec is not None else "this GPU"
    log_once(
        logger,
        "cutlass_fused_experts_fp8 routed",
        logging.WARNING,
        "sglang-consumer-gpu: --moe-runner-backend cutlass asked for sgl-kernel's "
        "fp8_blockwise_scaled_grouped_mm, which has no %s kernel ('No implemented "
        "fp8_blockwise_scaled_grouped_mm for current compute capability', sgl-project/sglang#28125); "
        "block-FP8 MoE layers run SGLang's Triton fused MoE instead (same weights, tiles from the "
        "plugin's shared-memory-aware config). Pass --moe-runner-backend triton to choose it yourself",
        arch,
    )


def route(params: dict[str, Any]) -> Any:
    """The CUTLASS path's call (SGLang's parameter names -> values) run by SGLang's Triton fused MoE."""
    import torch

    a = params["a"]
    w1, w2 = params["w1_q"].transpose(1, 2), params["w2_q"].transpose(1, 2)
    s1, s2 = params["w1_scale"].transpose(1, 2), params["w2_scale"].transpose(1, 2)
    problem = layout_problem(a, w1, w2, s1, s2)
    if problem:
        raise ValueError(problem)
    output = params.get("output")
    topk_ids = params["topk_ids"]
    if a.shape[0] == 0 or topk_ids.shape[1] == 0:  # the CUTLASS path's answer
        out = output if output is not None else torch.empty_like(a)
        return out.zero_() if a.shape[0] else out
    _announce()
    extra = {} if params.get("swiglu_limit") is None else {"swiglu_limit": params["swiglu_limit"]}
    fused = getattr(importlib.import_module(TRITON.module), TRITON.attr)
    try:
        out = fused(
            a, w1, w2, params["topk_weights"], topk_ids,
            use_fp8_w8a8=True, w1_scale=s1, w2_scale=s2, block_shape=list(BLOCK), **extra,
        )  # fmt: skip
    except Exception as exc:  # SGLang's Triton path raised: its error, not a reason to call sgl-kernel
        raise not_ours(exc) from exc
    if output is None:
        return out
    return output.copy_(out)


def build(original: Callable[..., Any], module: ModuleType) -> Callable[..., Any]:
    signature = inspect.signature(original)

    def cutlass_fused_experts_fp8(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        params = bound.arguments
        if params.get("use_mxfp8") or not params.get("use_fp8_blockscale", True):
            try:  # MXFP8 is SGLang's (it asserts SM100); non-block it refuses
                return original(*args, **kwargs)
            except Exception as exc:
                raise not_ours(exc) from exc
        return route(params)

    return cutlass_fused_experts_fp8


PATCH = Patch(
    name="cutlass-moe-fp8",
    seams=SEAMS,
    why="sgl-kernel's fp8_blockwise_scaled_grouped_mm raises 'No implemented fp8_blockwise_scaled_grouped_mm "
    "for current compute capability' on sm_120 (RTX 5090, RTX PRO 6000 Blackwell) under --moe-runner-backend cutlass",
    build=build,
    needed_on=needed_on,
    upstream_fixed=upstream_fixed,
    explain=explain,
    upstream_fixed_from_source=lambda spec, source: sgl_kernel_has_sm120(),
)
