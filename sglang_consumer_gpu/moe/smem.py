"""Analytic shared-memory model of SGLang's ``fused_moe_kernel`` on mma.sync GPUs.

Triton's software pipeliner on sm_80/86/89/120 keeps ``num_stages - 1`` copies
of the A tile ``[BLOCK_M, BLOCK_K]`` and the B tile ``[BLOCK_K, BLOCK_N]`` in
shared memory (one copy at ``num_stages <= 2``); after the K loop the same
memory is reused to convert the accumulator's layout for the store, which
needs at most ``BLOCK_M * BLOCK_N`` elements of the output dtype. Block-quant
scales add a few hundred bytes. So

    shared <= max((max(1, S - 1)) * (BM*BK*a + BK*BN*b) + scales, BM*BN*2)

Measured with the compile-only oracle (Triton 3.8, sm_86/sm_89/sm_120, 79
random configs over bf16, fp8 per-tensor/per-channel/block [128,128],
int8 per-channel): the estimate is never below the compiled number, equal to
it for 70 of 79, and at most ``BM*BN*2`` or ``4*(BM+BN)`` bytes above it for
the rest. Hopper (sm_90) pipelines with wgmma and keeps all ``S`` copies:
there the model is wrong on purpose, the plugin does not pick tiles for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sglang_consumer_gpu.hardware.spec import GpuSpec, pipelined_copies
from sglang_consumer_gpu.moe.shape import operand_bytes

#: Triton's defaults when a config leaves them out (SGLang's 16-bit default does).
DEFAULT_NUM_WARPS = 4
DEFAULT_NUM_STAGES = 3

_OUT_BYTES = 2  # SGLang's fused MoE writes bf16/fp16


def estimate_shared(
    config: Mapping[str, Any],
    dtype: str | None,
    block_shape: tuple[int, int] | list[int] | None = None,
    capability: tuple[int, int] = (8, 9),
) -> int:
    """Upper bound on the shared memory (bytes) one block of the kernel requests."""
    bm = int(config["BLOCK_SIZE_M"])
    bn = int(config["BLOCK_SIZE_N"])
    bk = int(config["BLOCK_SIZE_K"])
    stages = int(config.get("num_stages", DEFAULT_NUM_STAGES))
    a_bytes, b_bytes = operand_bytes(dtype)
    copies = pipelined_copies(capability, stages)
    pipe = copies * int(bm * bk * a_bytes + bk * bn * b_bytes)
    if block_shape is not None and all(block_shape):
        pipe += copies * 4 * (bm + bn)  # float32 per-row/per-column scales
    epilogue = bm * bn * _OUT_BYTES
    return max(pipe, epilogue)


def fits(config: Mapping[str, Any], dtype: str | None, spec: GpuSpec, block_shape: Any = None) -> bool:
    return estimate_shared(config, dtype, block_shape, spec.capability) <= spec.smem_per_block_optin
