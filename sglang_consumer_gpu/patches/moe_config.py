"""Fused-MoE config lookup for consumer GPUs: user dir -> bundled -> SGLang -> heuristic.

What it changes: in SGLang 0.5.23's
``sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe_triton_config``,

* ``get_moe_configs`` (which SGLang's ``try_get_optimal_moe_config`` calls for
  the up and the down projection) answers from
  :func:`sglang_consumer_gpu.moe.lookup.find_configs`: the user's tuned
  directory, ``$SGLANG_MOE_CONFIG_DIR``, configs bundled with the plugin, then
  SGLang's own files, each validated for the GPU's shared memory; ``None``
  when none is usable (a ``_down`` key with no file also returns ``None``, so
  the down GEMM reuses the up config, which is what SGLang does too);
* ``get_default_config`` (called when ``get_moe_configs`` returned ``None``)
  returns the shared-memory-aware heuristic's tile for bf16/fp16, fp8_w8a8 and
  int8_w8a8; Marlin, w4a16/w8a16 and deterministic inference keep SGLang's.

Both are looked up through module globals inside ``try_get_optimal_moe_config``,
so ``fused_moe.py``'s ``from .fused_moe_triton_config import
try_get_optimal_moe_config`` needs no re-binding.

Why: on an RTX 4090 (101376 bytes of shared memory per block) SGLang's tiles
tuned for data-center GPUs ask for up to 147456-196608 bytes and fail with
``OutOfResources`` at the first launch, and with no file for the GPU SGLang's
default tile (64x64x32 for bf16) leaves MoE throughput on the table; the
documented fix is hours of tuning and copying JSON into site-packages.

Versions: SGLang 0.5.16+ (the ``moe_runner/triton_utils`` layout). Older
releases (0.4.9, 0.5.10) define the same three functions in
``sglang.srt.layers.moe.fused_moe_triton.fused_moe`` (0.4.x) or
``...fused_moe_triton.fused_moe_triton_config`` (0.5.x); the seam is the same
pair of functions there, only ``module`` changes. On a version where the
target is missing the registry logs "target missing" and SGLang runs as is.

Upstream-fixed detection: none is reliable (SGLang has no smem-aware
default), so ``upstream_fixed`` is always false; the patch is only installed
on low-shared-memory GPUs (``GpuSpec.is_low_smem``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

from sglang_consumer_gpu.patches.base import Patch

logger = logging.getLogger("sglang_consumer_gpu.moe")

MODULE = "sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe_triton_config"


def _deterministic(module: ModuleType) -> bool:
    """SGLang's deterministic-inference mode pins its own default tiles."""
    try:
        return bool(module.get_exec().deterministic.enable_deterministic_inference)
    except Exception:
        return False


def _spec() -> Any:
    from sglang_consumer_gpu.hardware import current_spec

    return current_spec()


def build_get_moe_configs(original: Callable[..., Any], module: ModuleType) -> Callable[..., Any]:
    from sglang_consumer_gpu.moe.lookup import find_configs, log_source_once
    from sglang_consumer_gpu.moe.sources import ConfigKey

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
            return original(E, N, dtype, block_n, block_k, per_channel_quant, down_moe)
        key = ConfigKey(E, N, dtype, block_n or 0, block_k or 0, bool(per_channel_quant), bool(down_moe))
        found = find_configs(key, spec)
        if found.configs is None:
            if not down_moe:
                log_source_once(key, spec, "heuristic", None)
            return None
        log_source_once(key, spec, found.source, found.path)
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
        module=MODULE,
        attr="get_moe_configs",
        why="tuned fused-MoE configs for consumer GPUs (user dir, bundled, SGLang's), each checked to fit",
        build=build_get_moe_configs,
    ),
    Patch(
        name="moe-default-config",
        module=MODULE,
        attr="get_default_config",
        why="shared-memory-aware fused-MoE tile when no tuned file exists, instead of SGLang's fixed default",
        build=build_get_default_config,
    ),
]
