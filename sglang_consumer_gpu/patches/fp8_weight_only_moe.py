"""FP8 experts on GPUs without e4m3 (sm_80-sm_88: A100, RTX 3090, A6000, A10, A40): a weight-only FP8 fused MoE.

What it changes: ``invoke_fused_moe_kernel`` in SGLang's fused-MoE launcher module
(:data:`~sglang_consumer_gpu.patches.moe_config.LAUNCHER`), the one function SGLang's Triton MoE
runner calls for both GEMMs of a layer (``_fused_moe_kernel_sequence`` in
``moe_runner/triton_utils/fused_moe.py`` holds it by ``from ... import``: the registry re-binds
that copy, and any other loaded SGLang module's). A call with fp8 weights
(``use_fp8_w8a8=True``, ``float8_e4m3fn`` ``B``) and 16-bit activations runs the plugin's own
kernel (:mod:`sglang_consumer_gpu.fp8.kernel`): the weights stay e4m3 in memory and are decoded
to bf16/fp16 in the kernel's load path with integer arithmetic, the dot runs in the activations'
dtype, block / per-channel / per-tensor scales are applied in float32, the activation scales
SGLang would quantize with are not used (nothing is quantized). Its tile keeps the
``BLOCK_SIZE_M`` SGLang's lookup chose (the routing buffers are aligned to it) and sizes the rest
for 2-byte activations (:mod:`sglang_consumer_gpu.fp8.tiles`). Every other call -- 16-bit or int
weights, activations already quantized (``SGLANG_OPT_MOE_QUANT_ONCE``), the LoRA, TMA,
fused-reduction and fused-SwiGLU output modes -- goes to SGLang's function, and an fp8 call among
them is logged once per reason (:func:`sglang_consumer_gpu.fp8.route.route` decides). Linear
layers are not touched: SGLang already serves fp8 linears there through its FP8 Marlin W8A16
path (``can_auto_enable_marlin_fp8``: 80 <= sm < 89).

Why: Triton has e4m3 only from sm_89 (compute capability 8.9) on, and SGLang runs fp8 experts
only through its Triton ``fused_moe_kernel``; on sm_80-sm_88 the kernel's signature fails to
compile at the first MoE forward (CUDA-graph capture) with ``ValueError: type fp8e4nv not
supported in this architecture. The supported fp8 dtypes are ('fp8e4b15', 'fp8e5')`` --
Qwen3-30B-A3B-FP8, Qwen3-235B-A22B-FP8, DeepSeek-V3/R1 FP8 cannot be served on an RTX 3090 or
A6000 (sgl-project/sglang#7715, open since 2025; PR #9754, a Marlin FP8 MoE path, closed
unmerged and moved to PR #30681, open). SGLang's ``Fp8Config`` admits these GPUs (minimum
capability 80), so nothing refuses the checkpoint before the kernel does. On this machine's
virtual RTX 3090, ``check --only fp8-moe-baseline`` compiles 0 of SGLang's 4 fp8 layers, and
``check --only fp8-moe`` 32 of 32 tiles of the plugin's kernel, every one within the
101,376 B of shared memory a block may use (the oracle; ``docs/fp8.md``).

Versions: SGLang 0.5.16 to 0.5.23, where the launcher lives in ``sglang.kernels.ops.moe``;
the seams list its parameters per range (0.5.18 added ``fuse_swiglu``, 0.5.23
``a_output_slices``), and both GEMMs are called the same way in all of them. Earlier releases
keep the launcher in other modules with other parameters: not covered (the patch reports
"version not covered" there).

Upstream-fixed detection: the likely upstream fix (PR #30681) serves fp8 experts on sm_80-sm_89
through Marlin, threading an ``is_fp8`` flag through ``fused_marlin_moe``. When the installed
SGLang's ``fused_marlin_moe`` takes that flag (read from its source, nothing imported), the
patch stands down (``doctor`` says "fixed upstream"). Had the fix landed in another form, the
patch would still be harmless: an fp8 MoE served by Marlin never calls this launcher with fp8
weights, and every call that is not one stays SGLang's.
"""

from __future__ import annotations

import ast
import inspect
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

from sglang_consumer_gpu.errors import not_ours
from sglang_consumer_gpu.fp8.route import UNSUPPORTED_OPTIONS, WEIGHT_ONLY, MoeCall, route, weight_only_gpu
from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.patches import moe_config
from sglang_consumer_gpu.patching.base import Patch, Seam
from sglang_consumer_gpu.patching.log import log_once

logger = logging.getLogger("sglang_consumer_gpu.fp8")

MODULE = moe_config.LAUNCHER.module
ATTR = moe_config.LAUNCHER.attr
_P16 = (
    "A", "B", "bias", "C", "A_scale", "B_scale", "B_zp", "topk_weights", "topk_ids", "sorted_token_ids",
    "expert_ids", "num_tokens_post_padded", "mul_routed_weight", "top_k", "config", "compute_type",
    "use_fp8_w8a8", "use_int8_w8a8", "use_int8_w8a16", "use_int4_w4a16", "per_channel_quant", "block_shape",
    "no_combine", "a_use_tma", "b_use_tma", "c_sorted", "filter_expert", "fuse_sum_all_reduce", "router_topk",
    "fuse_add_to_output", "add_output_mask", "mask_output", "lora_preserve_base",
)  # fmt: skip
_P18 = (*_P16, "fuse_swiglu")
_P23 = (*_P18, "a_output_slices")
SEAMS = (
    Seam(">=0.5.16,<0.5.18", MODULE, ATTR, _P16),
    Seam(">=0.5.18,<0.5.23", MODULE, ATTR, _P18),
    Seam(">=0.5.23", MODULE, ATTR, _P23),
)
#: Where the likely upstream fix would show (see the module docstring): SGLang's Marlin MoE
#: function, and the parameter PR #30681 gives it.
MARLIN_MOE_MODULE = "sglang.srt.layers.moe.fused_moe_triton.fused_marlin_moe"
MARLIN_MOE_FUNCTION = "fused_marlin_moe"
MARLIN_FP8_FLAG = "is_fp8"

def marlin_has_fp8(source: str | None) -> bool:
    """Does this ``fused_marlin_moe`` module source take the fp8 flag (the Marlin FP8 MoE path)?"""
    if not source:
        return False
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == MARLIN_MOE_FUNCTION:
            args = node.args
            return MARLIN_FP8_FLAG in {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
    return False


def _installed_marlin_source() -> str | None:
    from sglang_consumer_gpu.patching.static import installed_reader, read_source

    read = installed_reader()
    return read_source(read, MARLIN_MOE_MODULE) if read is not None else None


def upstream_fixed(module: ModuleType) -> bool:
    """Does the installed SGLang serve fp8 experts below sm_89 itself (the Marlin fp8 flag)?"""
    return marlin_has_fp8(_installed_marlin_source())


def upstream_fixed_from_source(spec: GpuSpec, seam_source: str) -> bool | None:
    """The same for ``doctor``: the answer lives in the Marlin module, not the seam's source."""
    return marlin_has_fp8(_installed_marlin_source())


def explain(spec: GpuSpec) -> str:
    """The status detail: which kernel fp8 experts get on this GPU, and why."""
    kind, why = route(spec, MoeCall(fp8_weights=True, activations="bfloat16"))
    what = "the plugin's weight-only FP8 kernel" if kind == WEIGHT_ONLY else "SGLang's fp8_w8a8 kernel"
    return f"fp8 experts -> {what}: {why}"


def _switched_on(name: str, value: Any) -> bool:
    if name == "a_output_slices":
        return value not in (None, 1)
    return value is not None and value is not False  # a flag, or a tensor (zero points)


def describe(args: dict[str, Any]) -> MoeCall:
    """What the route reads of one call's bound arguments."""
    import torch

    fp8 = bool(args.get("use_fp8_w8a8")) and getattr(args["B"], "dtype", None) == torch.float8_e4m3fn
    options = tuple(name for name in UNSUPPORTED_OPTIONS if _switched_on(name, args.get(name)))
    return MoeCall(fp8, str(args["A"].dtype).removeprefix("torch."), options)


def build(original: Callable[..., Any], module: ModuleType) -> Callable[..., Any]:
    from sglang_consumer_gpu.fp8.ops import fused_moe_weight_only
    from sglang_consumer_gpu.hardware.current import current_spec

    signature = inspect.signature(original)

    def invoke_fused_moe_kernel(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        call = describe(a)
        spec = current_spec()
        kind, why = route(spec, call) if spec is not None else ("", "no GPU")
        if kind != WEIGHT_ONLY:
            if call.fp8_weights:
                message = f"fp8 fused-MoE call left to SGLang: {why}"
                log_once(logger, message, logging.WARNING, "sglang-consumer-gpu: %s", message)
            try:
                return original(*args, **kwargs)
            except Exception as exc:  # SGLang's own error is the caller's, not a reason to call it again
                not_ours(exc)
                raise
        fused_moe_weight_only(
            a["A"], a["B"], a["C"], a["B_scale"], a["topk_weights"], a["topk_ids"], a["sorted_token_ids"],
            a["expert_ids"], a["num_tokens_post_padded"],
            mul_routed_weight=a["mul_routed_weight"], top_k=a["top_k"], block_m=a["config"]["BLOCK_SIZE_M"],
            block_shape=a["block_shape"], per_channel_quant=a["per_channel_quant"], bias=a["bias"], spec=spec,
        )  # fmt: skip
        message = f"fp8 experts run the plugin's weight-only FP8 kernel on {spec.name}: {why}"
        log_once(logger, message, logging.INFO, "sglang-consumer-gpu: %s", message)
        return None

    return invoke_fused_moe_kernel


PATCH = Patch(
    name="fp8-weight-only-moe",
    seams=SEAMS,
    why="SGLang's fp8 fused-MoE Triton kernel fails before sm_89 ('type fp8e4nv not supported in this "
    "architecture'); fp8 experts on sm_80-sm_88 run a weight-only FP8 kernel (e4m3 weights, 16-bit math)",
    build=build,
    needed_on=weight_only_gpu,
    upstream_fixed=upstream_fixed,
    upstream_fixed_from_source=upstream_fixed_from_source,
    explain=explain,
)
