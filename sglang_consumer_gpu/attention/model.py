"""An analytic upper bound on the shared memory SGLang's Triton attention kernels ask for.

The plugin must pick block sizes at run time without compiling a kernel for
the GPU first, so it needs a cheap estimate that never under-counts. For the
flash-attention style kernels in SGLang (extend, dense prefill, context
prefill), Triton keeps three dot operands in shared memory at the peak: the
query tile ``[BLOCK_M, Dq]``, one key *or* value tile ``[BLOCK_N, max(Dq,
Dv)]`` (the two are not live at the same time) and the probability tile
``[BLOCK_M, BLOCK_N]`` on its way into the second dot::

    bytes = elem * (BLOCK_M * Dq + BLOCK_N * max(Dq, Dv) + BLOCK_M * BLOCK_N)

This is an upper bound, exact for many shapes. Measured with the compile-only
oracle (Triton 3.8, sm_89, bf16, num_stages=1, ``extend_attention._fwd_kernel``):
Dq=128 64x64 -> 40960 (model 40960), Dq=256 64x64 -> 73728 (73728), Dq=256
64x128 -> 114688 (114688), Dq=576 32x32 -> 71680 (75776), Dq=576 32x64 ->
106496 (114688), Dq=128 128x128 -> 65536 (98304). The oracle sweep
(``sglang-consumer-gpu check --full``) and ``tests/test_attention_model.py``
check that the model is never below the compiled kernel's number for every
launch the plugin can produce.

The model holds for one software-pipelining stage (what SGLang uses for these
kernels on CUDA); ``num_stages > 1`` multiplies the streamed K/V tile.
"""

from __future__ import annotations

from dataclasses import dataclass


def qk_tile_width(lq: int) -> tuple[int, int]:
    """``(BLOCK_DMODEL, BLOCK_DPE)`` for a query/key head dim, as SGLang's
    extend kernels tile it: MLA's 576 and 288 and DeepSeek's 192 are split
    into a power-of-two part plus a rope part; other dims are padded to the
    next power of two."""
    split = {576: (512, 64), 288: (256, 32), 192: (128, 64)}
    if lq in split:
        return split[lq]
    return next_pow2(lq), 0


def next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


@dataclass(frozen=True)
class AttentionTile:
    """One flash-attention tile shape and its launch parameters."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int = 1

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.block_m, self.block_n, self.num_warps, self.num_stages)


def attention_smem_bytes(
    block_m: int,
    block_n: int,
    dq_tile: int,
    dv_tile: int,
    elem_bytes: int = 2,
    num_stages: int = 1,
) -> int:
    """Upper bound on shared memory for one flash-attention program (see module doc).

    ``dq_tile``/``dv_tile`` are the padded widths the kernel uses
    (``BLOCK_DMODEL + BLOCK_DPE`` and ``BLOCK_DV``); ``elem_bytes`` is the size
    of the compute dtype of the dots (2 for bf16/fp16, also when the KV cache
    is fp8, because SGLang upcasts K/V tiles to the query dtype; 4 for fp32).
    """
    if min(block_m, block_n, dq_tile, dv_tile, elem_bytes, num_stages) <= 0:
        raise ValueError("tile sizes, element size and stages must be positive")
    streamed = num_stages * block_n * max(dq_tile, dv_tile)
    return elem_bytes * (block_m * dq_tile + streamed + block_m * block_n)
