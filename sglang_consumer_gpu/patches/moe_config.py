"""Fused-MoE config lookup for consumer GPUs: user dir -> bundled -> SGLang -> heuristic.

What it changes: in SGLang's fused-MoE config module (the seams below say
where it lives in each release),

* ``get_moe_configs`` (which SGLang's ``try_get_optimal_moe_config`` calls for
  the up and, since 0.5.4.post2, the down projection) answers from
  :func:`sglang_consumer_gpu.moe.lookup.find_configs`: the user's tuned
  directory, ``$SGLANG_MOE_CONFIG_DIR``, configs bundled with the plugin, then
  SGLang's own files, each validated for the GPU's shared memory; ``None``
  when none is usable (a ``_down`` key with no file also returns ``None``, so
  the down GEMM reuses the up config, which is what SGLang does too);
* ``get_default_config`` (called when ``get_moe_configs`` returned ``None``)
  returns the shared-memory-aware heuristic's tile for bf16/fp16, fp8_w8a8 and
  int8_w8a8; Marlin, w4a16/w8a16 and deterministic inference keep SGLang's.

Both are looked up through module globals inside ``try_get_optimal_moe_config``
(checked for every covered release), so the ``from ... import
try_get_optimal_moe_config`` copies elsewhere need no re-binding.

Why: on an RTX 4090 (101376 bytes of shared memory per block) SGLang's tiles
tuned for data-center GPUs ask for up to 147456-196608 bytes and fail with
``OutOfResources`` at the first launch (SGLang 0.4.9's fp8 default alone is
128x256x128 with 4 stages), and with no file for the GPU SGLang's default tile
(64x64x32 for bf16) leaves MoE throughput on the table; the documented fix is
hours of tuning and copying JSON into site-packages.

Versions: SGLang 0.4.9 to 0.5.23. The two functions moved from
``fused_moe_triton/fused_moe.py`` (0.4.9-0.5.1.post3) to
``fused_moe_triton/fused_moe_triton_config.py`` (0.5.2-0.5.10.post1) to
``moe_runner/triton_utils/fused_moe_triton_config.py`` (0.5.11+);
``get_moe_configs`` gained ``per_channel_quant`` in 0.5.3.post2 and
``down_moe`` in 0.5.4.post2. The replacement accepts all of them and calls
SGLang's original with the parameters that release has.

Upstream-fixed detection: none is reliable (SGLang has no smem-aware
default), so ``upstream_fixed`` is always false; the patch is only installed
on low-shared-memory GPUs (``GpuSpec.is_low_smem``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

from sglang_consumer_gpu.patching.base import Patch, Seam
from sglang_consumer_gpu.safety.rules import ShrinkRule

logger = logging.getLogger("sglang_consumer_gpu.moe")

_V04 = "sglang.srt.layers.moe.fused_moe_triton.fused_moe"
_V05 = "sglang.srt.layers.moe.fused_moe_triton.fused_moe_triton_config"
MODULE = "sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe_triton_config"
_BASE = ("E", "N", "dtype", "block_n", "block_k")
_PCQ = (*_BASE, "per_channel_quant")
_DOWN = (*_PCQ, "down_moe")
_DEFAULT = ("M", "E", "N", "K", "topk", "dtype", "is_marlin", "block_shape")
_CALLER = ("try_get_optimal_moe_config",)

MOE_CONFIGS_SEAMS = (
    Seam(">=0.4.9,<0.5.2", _V04, "get_moe_configs", _BASE, _CALLER),
    Seam(">=0.5.2,<0.5.3.post2", _V05, "get_moe_configs", _BASE, _CALLER),
    Seam(">=0.5.3.post2,<0.5.4.post2", _V05, "get_moe_configs", _PCQ, _CALLER),
    Seam(">=0.5.4.post2,<0.5.11", _V05, "get_moe_configs", _DOWN, _CALLER),
    Seam(">=0.5.11", MODULE, "get_moe_configs", _DOWN, _CALLER),
)
DEFAULT_CONFIG_SEAMS = (
    Seam(">=0.4.9,<0.5.2", _V04, "get_default_config", _DEFAULT, _CALLER),
    Seam(">=0.5.2,<0.5.11", _V05, "get_default_config", _DEFAULT, _CALLER),
    Seam(">=0.5.11", MODULE, "get_default_config", _DEFAULT, _CALLER),
)

# What the tools import beside the patched functions (every fused-MoE path of the plugin is here):
#: SGLang's own choice for a layer and batch (``check``, ``selftest``, ``bench``, ``doctor --model``).
OPTIMAL_CONFIG = Seam(">=0.5.11", MODULE, "try_get_optimal_moe_config")
#: The launcher of ``fused_moe_kernel`` the oracle dry-runs and the live engine times.
LAUNCHER = Seam(">=0.5.16", "sglang.kernels.ops.moe.fused_moe_triton_kernels", "invoke_fused_moe_kernel")
#: The routing sort both GEMMs share.
ALIGN = Seam(
    ">=0.5.11", "sglang.srt.layers.moe.moe_runner.triton_utils.moe_align_block_size", "moe_align_block_size"
)
#: The activation between the two GEMMs.
ACTIVATION = Seam(">=0.5.17", "sglang.kernels.ops.activation.activation", "silu_and_mul")
#: The activation quantizers the launcher's modules call for fp8/int8 layers. The two kernel
#: modules bind some of them only when CUDA is present at import; a virtual GPU binds them.
QUANT_FP8 = "sglang.kernels.ops.quantization.fp8_kernel"
QUANT_INT8 = "sglang.kernels.ops.quantization.int8_kernel"
QUANT_GROUP = Seam(
    ">=0.5.17", "sglang.kernels.ops.quantization.per_token_group_quant", "per_token_group_quant"
)
QUANT_TENSOR_FP8 = Seam(
    ">=0.5.17", "sglang.kernels.ops.quantization.per_tensor_quant_fp8", "per_tensor_quant_fp8"
)
QUANT_TOKEN_FP8 = Seam(">=0.5.16", "sglang.kernels.ops.quantization", "sgl_per_token_quant_fp8")


#: The safety net's rule for the fused-MoE kernel (see :mod:`sglang_consumer_gpu.safety.rules`).
SHRINK_RULES: tuple[ShrinkRule, ...] = (
    ShrinkRule(
        kernel="fused_moe_kernel",
        modules=(LAUNCHER.module,),
        params=("BLOCK_SIZE_K",),
        minimum=32,  # 8-bit tl.dot needs K >= 32
        safe_because="the grid is cdiv(EM, BLOCK_SIZE_M) * cdiv(N, BLOCK_SIZE_N); BLOCK_SIZE_K is only the "
        "K-loop step (K tail masked; even_Ks stays true when K % BLOCK_SIZE_K was 0)",
        hint="use a fused-MoE config that fits: your own tuned file in ~/.cache/sglang-consumer-gpu/moe_configs "
        "or the plugin's choice (`sglang-consumer-gpu moe-config --model ...` shows it)",
        requires_none=("a_desc", "b_desc"),
        divides="group_k",
    ),
)


def _deterministic(module: ModuleType) -> bool:
    """SGLang's deterministic-inference mode pins its own default tiles. The
    server-args accessor changed between releases; each is tried."""
    for read in (
        lambda: module.get_exec().deterministic.enable_deterministic_inference,
        lambda: module.get_server_args().enable_deterministic_inference,
        lambda: module.get_global_server_args().enable_deterministic_inference,
    ):
        try:
            return bool(read())
        except Exception:
            continue
    return False


def _accepted(original: Callable[..., Any]) -> set[str] | None:
    """Parameter names of SGLang's function (None: not introspectable, pass everything)."""
    try:
        return set(inspect.signature(original).parameters)
    except (TypeError, ValueError):
        return None


def _spec() -> Any:
    from sglang_consumer_gpu.hardware import current_spec

    return current_spec()


def build_get_moe_configs(original: Callable[..., Any], module: ModuleType) -> Callable[..., Any]:
    from sglang_consumer_gpu.moe.lookup import find_configs, log_source_once
    from sglang_consumer_gpu.moe.sources import ConfigKey

    accepted = _accepted(original)

    def call_original(E: int, N: int, dtype: str | None, block_n: Any, block_k: Any, **flags: Any) -> Any:
        # Older releases have no per_channel_quant (before 0.5.3.post2) or down_moe (before 0.5.4.post2).
        kept = {k: v for k, v in flags.items() if accepted is None or k in accepted}
        return original(E, N, dtype, block_n, block_k, **kept)

    def get_moe_configs(
        E: int,
        N: int,
        dtype: str | None,
        block_n: int | None = 0,
        block_k: int | None = 0,
        per_channel_quant: bool = False,
        down_moe: bool = False,
    ) -> dict[int, Any] | None:
        spec = _spec()
        if spec is None or _deterministic(module):
            return call_original(
                E, N, dtype, block_n, block_k, per_channel_quant=per_channel_quant, down_moe=down_moe
            )
        key = ConfigKey(E, N, dtype, block_n or 0, block_k or 0, bool(per_channel_quant), bool(down_moe))
        found = find_configs(key, spec)
        if found.configs is None:
            if not down_moe:
                log_source_once(key, spec, "heuristic", None)
            return None
        log_source_once(key, spec, found.source, found.path, found)
        return found.configs

    return get_moe_configs


def build_get_default_config(original: Callable[..., Any], module: ModuleType) -> Callable[..., Any]:
    from sglang_consumer_gpu.moe.heuristic import heuristic_config
    from sglang_consumer_gpu.moe.lookup import HEURISTIC_DTYPES
    from sglang_consumer_gpu.moe.shape import MoeShape

    def get_default_config(
        M: int,
        E: int,
        N: int,
        K: int,
        topk: int,
        dtype: str | None,
        is_marlin: bool,
        block_shape: list[int] | None = None,
    ) -> dict[str, int]:
        spec = _spec()
        if spec is None or is_marlin or dtype not in HEURISTIC_DTYPES or _deterministic(module):
            return original(M, E, N, K, topk, dtype, is_marlin, block_shape)
        try:
            bs = (int(block_shape[0]), int(block_shape[1])) if block_shape and all(block_shape) else None
            shape = MoeShape(int(E), int(N), int(K), int(topk), dtype, bs)
            return heuristic_config(max(int(M), 1), shape, spec)
        except Exception as exc:  # never the reason SGLang fails
            logger.warning("sglang-consumer-gpu: MoE heuristic failed (%s); using SGLang's default", exc)
            return original(M, E, N, K, topk, dtype, is_marlin, block_shape)

    return get_default_config


PATCHES = [
    Patch(
        name="moe-config-lookup",
        seams=MOE_CONFIGS_SEAMS,
        why="tuned fused-MoE configs for consumer GPUs (user dir, bundled, SGLang's), each checked to fit",
        build=build_get_moe_configs,
    ),
    Patch(
        name="moe-default-config",
        seams=DEFAULT_CONFIG_SEAMS,
        why="shared-memory-aware fused-MoE tile when no tuned file exists, instead of SGLang's fixed default",
        build=build_get_default_config,
    ),
]
