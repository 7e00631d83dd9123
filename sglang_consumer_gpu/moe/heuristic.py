"""A fused-MoE config from first principles when no tuned file exists.

SGLang's fallback (``get_default_config``) is one tile per dtype, chosen for
data-center GPUs: 64x64x32 for bf16 at every batch size past E tokens,
16x32x64 below. This module picks a tile per (batch-size bucket, shape, GPU):

* Decode-sized batches are memory-bound: every active expert's weights are
  streamed once, so the tile is the smallest legal BLOCK_SIZE_M (16), and the
  K step and pipeline depth follow how many blocks each SM gets (the kernel
  has no split-K: N is the only axis that adds blocks at tiny M).
* Prefill-sized batches are compute-bound: the largest tiles and the deepest
  pipeline that fit, 8 warps once a tile reaches 128x128.
* In between, BLOCK_SIZE_M follows the expected tokens per active expert.

It respects the shared-memory budget by construction: every candidate is
sized with :func:`sglang_consumer_gpu.moe.smem.estimate_shared`, an upper
bound the compile-only oracle confirms, and stages (then BLOCK_SIZE_K, then
BLOCK_SIZE_N) are reduced until it fits. Block-quantized weights read one
scale per K tile, so BLOCK_SIZE_K must divide the quant block's K.

Both GEMMs of the layer share one config, and the second one (``w2``) reduces
over N, the per-GPU intermediate size, which tensor parallelism makes short
(Qwen3-235B-A22B at TP4: N = 384). Outside the decode regime two rules follow
(v2, docs/lab/moe.md "Heuristic v2"), both pure functions of the shape:

* K padding: BLOCK_SIZE_K is halved while it pads either reduction (N or K)
  by more than 1/8 (N = 384 at BLOCK_SIZE_K 256 is two K steps, the second
  half masked: 33 % padding).
* Pipeline depth: at most ``ceil(min(N, K) / BLOCK_SIZE_K) + 1`` stages; a
  pipeline deeper than the shorter K loop only holds shared memory.

The decode regime (v5, docs/lab/moe.md "Heuristic v5") is a table over one quantity,
the blocks per SM the grid gives (:func:`_blocks_per_sm`): weights are streamed
once, and what keeps enough loads in flight is blocks times stages. Few blocks
per SM take a deep pipeline, many take a shallow one (more blocks resident);
K steps are 128 bytes of a weight row (16-bit BLOCK_SIZE_K 64, 8-bit 128),
256 bytes where both reductions are long. Fitted on all BLOCK_SIZE_M 16 tiles
timed interleaved at M = 1..64 on 15 shapes (H200, decode_fit.py), where v4
met the targets in 7 of 30 (shape, dtype) cells and the table in 29 (on 8
shapes no fit had seen, 12 of 16). Padding and the depth cap do not apply
there (GLM-4.5 at TP8, N = 192, 8-bit M = 2: 16x64x128 at 5 stages, padding
w2 by a third, was the best tile; v4's 16x32x64 ran at 0.82 of it).

Pure function of its arguments; cached per (batch bucket, shape, GPU).
"""

from __future__ import annotations

import functools
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec
from sglang_consumer_gpu.moe.shape import MoeShape
from sglang_consumer_gpu.moe.smem import estimate_shared

_MAX_STAGES = 5
#: Expected tokens per active expert at which the regimes change (calibrated
#: on SGLang's own kernel over the sm_89-feasible space, scripts/bench_moe.py).
SMALL_TOKENS = 12
LARGE_TOKENS = 40
HUGE_TOKENS = 256
#: A BLOCK_SIZE_K padding a GEMM's reduction by more than this fraction is halved.
MAX_K_PADDING = 1 / 8
#: Decode tiles (v5) by blocks per SM (:func:`_blocks_per_sm`): at most ALONE, a block is alone
#: on its SM and latency decides (16x32x128 with the deepest pipeline); up to FEW, 128-byte K
#: steps at 5 stages; up to MANY, at 3 stages; beyond, 16-bit doubles its K step.
ALONE_BLOCKS_PER_SM = 0.5
FEW_BLOCKS_PER_SM = 2.5
MANY_BLOCKS_PER_SM = 8
#: Both reductions at least this long (Mixtral, gpt-oss): 256-byte K steps at 4 stages once the
#: grid has more than FEW blocks per SM.
LONG_REDUCTION = 2048
#: SMs assumed for a generic spec that does not know its SM count (an RTX 4090 has 128).
SMS_IF_UNKNOWN = 128


def batch_bucket(M: int) -> int:
    """The power of two at or above M (capped at 8192): configs are cached per bucket."""
    if M <= 1:
        return 1
    return min(1 << (M - 1).bit_length(), 8192)


def expected_active_experts(tokens: int, E: int) -> float:
    """Expected number of distinct experts hit by ``tokens`` uniform routings."""
    return E * (1.0 - (1.0 - 1.0 / E) ** tokens)


def _k_padding(bk: int, length: int) -> float:
    """Fraction of ``length`` a K loop of ``bk``-deep steps loads past its end (masked)."""
    return (-length) % bk / length


def _blocks_per_sm(routed: int, shape: MoeShape, spec: GpuSpec) -> float:
    """Blocks per SM in the GEMM of the layer with fewer blocks (w1: 2N outputs, w2: K outputs
    per active expert) at BLOCK_SIZE_N 64 and one 16-row M tile per active expert (the decode
    regime)."""
    active = expected_active_experts(routed, shape.E)
    blocks = active * min(-(-2 * shape.N // 64), -(-shape.K // 64))
    return blocks / (spec.sm_count or SMS_IF_UNKNOWN)


def _fit(cfg: dict[str, int], shape: MoeShape, spec: GpuSpec, max_stages: int) -> dict[str, int] | None:
    """Deepest pipeline (<= max_stages, >= 2) that fits; None if even 2 stages do not."""
    for stages in range(max_stages, 1, -1):
        cfg = {**cfg, "num_stages": stages}
        if estimate_shared(cfg, shape.dtype, shape.block_shape, spec.capability) <= spec.smem_per_block_optin:
            return cfg
    return None


def _shrink_to_fit(cfg: dict[str, int], shape: MoeShape, spec: GpuSpec, max_stages: int) -> dict[str, int]:
    """Reduce stages, then BLOCK_SIZE_K, then BLOCK_SIZE_N, then BLOCK_SIZE_M until it fits."""
    while True:
        fitted = _fit(cfg, shape, spec, max_stages)
        if fitted is not None:
            return fitted
        if cfg["BLOCK_SIZE_K"] > 32:
            cfg = {**cfg, "BLOCK_SIZE_K": cfg["BLOCK_SIZE_K"] // 2}
        elif cfg["BLOCK_SIZE_N"] > 32:
            cfg = {**cfg, "BLOCK_SIZE_N": cfg["BLOCK_SIZE_N"] // 2}
        elif cfg["BLOCK_SIZE_M"] > 16:
            cfg = {**cfg, "BLOCK_SIZE_M": cfg["BLOCK_SIZE_M"] // 2}
        else:  # 16x32x32, 2 stages: a few KB, fits any CUDA GPU
            return {**cfg, "num_stages": 2}


@functools.lru_cache(maxsize=4096)
def _heuristic(bucket: int, shape: MoeShape, spec: GpuSpec) -> tuple[tuple[str, int], ...]:
    M = bucket
    wide = shape.dtype in (None, "float32", "int8_w8a16", "int4_w4a16")  # 2-byte A operand
    routed = M * shape.topk
    per_expert = routed / expected_active_experts(routed, shape.E)
    decode = per_expert <= SMALL_TOKENS

    if decode:
        # Memory-bound: each active expert's weights are streamed once; the smallest M tile
        # wastes nothing, and the pipeline keeps the loads in flight (module docstring).
        bm, bn, warps, group = 16, 64, 4, 1
        step = 64 if wide else 128  # BLOCK_SIZE_K of a 128-byte K step
        per_sm = _blocks_per_sm(routed, shape, spec)
        if per_sm <= ALONE_BLOCKS_PER_SM:
            bn, bk, max_stages = 32, 128, _MAX_STAGES
        elif per_sm <= FEW_BLOCKS_PER_SM:
            bk, max_stages = step, _MAX_STAGES
        elif min(shape.N, shape.K) >= LONG_REDUCTION:
            bk, max_stages = 2 * step, 4
        elif per_sm <= MANY_BLOCKS_PER_SM:
            bk, max_stages = step, 3
        elif wide:
            bk, max_stages = 2 * step, 3
        else:
            bk, max_stages = step, 4
    elif per_expert < LARGE_TOKENS:
        # Transition: tiles as tall as the tokens an expert gets, wide enough
        # to amortise reading A; 16-bit wants a wide N tile, 8-bit (half the
        # bytes per element) a square one with a deep pipeline.
        if wide:
            bm, bn, bk, max_stages = 32, 128, 128, 2
        else:
            bm, bn, bk, max_stages = 64, 64, 128, _MAX_STAGES
        warps, group = 4, 1
    else:
        # Compute-bound: 128-row tiles, 8 warps, a 3-stage pipeline (deeper
        # pipelines fit but starve the tile of registers); 256-wide N once
        # every expert has hundreds of rows, grouped launch order for L2 reuse.
        bm, warps, max_stages = 128, 8, 3
        bn = 256 if per_expert >= HUGE_TOKENS else 128
        bk = 64 if wide else 128
        group = 16 if per_expert >= HUGE_TOKENS else 1

    if not decode:  # v2's rules (module docstring)
        while bk > 32 and max(_k_padding(bk, shape.N), _k_padding(bk, shape.K)) > MAX_K_PADDING:
            bk //= 2
        max_stages = max(2, min(max_stages, -(-min(shape.N, shape.K) // bk) + 1))
    if shape.block_shape is not None and all(shape.block_shape):
        qk = shape.block_shape[1]
        while bk > 16 and qk % bk:
            bk //= 2
        bk = min(bk, qk)

    cfg = {
        "BLOCK_SIZE_M": bm,
        "BLOCK_SIZE_N": bn,
        "BLOCK_SIZE_K": bk,
        "GROUP_SIZE_M": group,
        "num_warps": warps,
    }
    cfg = _shrink_to_fit(cfg, shape, spec, max_stages)
    if cfg["BLOCK_SIZE_M"] * cfg["BLOCK_SIZE_N"] < 64 * 128 and cfg["num_warps"] == 8:
        cfg["num_warps"] = 4
    return tuple(cfg.items())


def heuristic_config(M: int, shape: MoeShape, spec: GpuSpec) -> dict[str, Any]:
    """The config for ``M`` tokens of ``shape`` on ``spec`` (a fresh dict each call)."""
    if M <= 0:
        raise ValueError(f"M must be positive, got {M}")
    return dict(_heuristic(batch_bucket(M), shape, spec))
