"""A fused-MoE config from first principles when no tuned file exists.

SGLang's fallback (``get_default_config``) is one tile per dtype, chosen for
data-center GPUs: 64x64x32 for bf16 at every batch size past E tokens,
16x32x64 below. This module picks a tile per (batch-size bucket, shape, GPU):

* Decode-sized batches are memory-bound: every active expert's weights are
  streamed once, so the tile is the smallest legal BLOCK_SIZE_M (16), a long
  BLOCK_SIZE_K so each load is a large contiguous run, and a BLOCK_SIZE_N
  small enough to give every SM at least a couple of blocks (the kernel has no
  split-K, N is the only axis that adds parallelism at tiny M).
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
(Qwen3-235B-A22B at TP4: N = 384). Two rules follow (v2, docs/moe.md
"Heuristic v2"), both pure functions of the shape:

* K padding: BLOCK_SIZE_K is halved while it pads either reduction (N or K)
  by more than 1/8 (N = 384 at BLOCK_SIZE_K 256 is two K steps, the second
  half masked: 33 % padding; measured on the H100, the 256-deep tiles ran at
  0.80-0.93x the best at M <= 64 for both bf16 and fp8, the 128-deep ones at
  0.95-1.00x).
* Pipeline depth: at most ``ceil(min(N, K) / BLOCK_SIZE_K) + 1`` stages; a
  pipeline deeper than the shorter K loop only holds shared memory (fewer
  blocks per SM) without more loads in flight (fp8 16x32x256 at N = 768 or
  704, three K steps: 4 stages beat 5 at every M <= 64 by 1-4 %).
  Except (v4) when the grid has at most 0.75 blocks per SM: a block alone on
  its SM loses no occupancy to unused stages, and w1's K loop, twice w2's
  bytes, wants them (DeepSeek-V3 at TP8, N = 256, K = 7168, M = 1, on the
  H200, fp8: 16x32x128 at 5 stages 25.5 us, at 3 stages 34.1 us).

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
#: Decode batches whose grid gives fewer blocks per SM than this (at BLOCK_SIZE_N 64) take the
#: latency-bound tile (v3, fitted on the H100 runs' M = 1 and 4 points of six shapes).
MIN_BLOCKS_PER_SM = 2
#: Decode batches with at most this many blocks per SM (same count) size their pipeline by w1's
#: K loop instead of the shorter one (v4, fitted on the H200 held-out runs of 2026-12-01).
ALONE_BLOCKS_PER_SM = 0.75
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


def _pow2_at_least(x: float, lo: int, hi: int) -> int:
    v = lo
    while v < x and v < hi:
        v *= 2
    return v


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
    alone = False  # at most one block per SM: shared memory costs no occupancy

    if per_expert <= SMALL_TOKENS:
        # Memory-bound: each active expert's weights are streamed once; the
        # smallest M tile wastes nothing. When the grid cannot give every SM
        # two blocks (there is no split-K; N is the only axis that adds
        # blocks), latency is hidden inside a block: a narrow N tile and
        # 128-deep K steps. Otherwise 16-bit takes a 64-wide N tile with a
        # 4-stage pipeline and 8-bit a 256-deep K tile (docs/moe.md,
        # "Heuristic v3: the decode end").
        bm, warps, group = 16, 4, 1
        per_sm = _blocks_per_sm(routed, shape, spec)
        alone = per_sm <= ALONE_BLOCKS_PER_SM
        if per_sm < MIN_BLOCKS_PER_SM:
            bn, bk, max_stages = 32, 128, _MAX_STAGES
        elif wide:
            bn, bk, max_stages = 64, 128, 4
        else:
            bn, bk, max_stages = 32, 256, 4
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

    while bk > 32 and max(_k_padding(bk, shape.N), _k_padding(bk, shape.K)) > MAX_K_PADDING:
        bk //= 2
    if shape.block_shape is not None and all(shape.block_shape):
        qk = shape.block_shape[1]
        while bk > 16 and qk % bk:
            bk //= 2
        bk = min(bk, qk)
    # No more pipeline stages than the shorter K loop (w2 reduces over N) has steps, plus one;
    # a block alone on its SM pays nothing for unused stages, so there w1's loop (over K, twice
    # w2's bytes) sets the depth.
    loop = shape.K if alone else min(shape.N, shape.K)
    max_stages = max(2, min(max_stages, -(-loop // bk) + 1))

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
